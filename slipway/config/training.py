"""`TrainConfig`: the knobs of one training run, from the experiment file to the training loop."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from slipway.config.base import Section

Architecture = Literal[
    "resnet18",
    "resnet34",
    "resnet50",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
]
ARCHITECTURES: tuple[str, ...] = Architecture.__args__  # type: ignore[attr-defined]


class TrainConfig(Section):
    """One training run; every default works on the demo data on a laptop."""

    arch: Architecture = Field("resnet18", description="torchvision architecture.")
    epochs: int = Field(3, ge=1, description="Maximum epochs; early stopping may end sooner.")
    batch_size: int = Field(128, ge=1, description="Global batch size (over all processes).")
    lr: float = Field(2e-3, gt=0, description="Peak learning rate of warm-up + cosine decay.")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay.")
    image_size: int = Field(32, ge=8, description="Square input size in pixels.")
    channels: int | None = Field(
        None, ge=1, le=3, description="Input channels; empty: 1 for grayscale data, else 3."
    )
    seed: int = Field(0, description="Seed for weights, shuffling and augmentation.")
    patience: int = Field(3, ge=1, description="Early-stop patience in epochs.")
    num_workers: int = Field(
        0, ge=0, description="DataLoader worker processes (on a cluster they need /dev/shm)."
    )
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda or cuda:N.")
    augment: bool = Field(True, description="Random horizontal flips while training.")
    weights_path: str | None = Field(None, description="Local pretrained state-dict file.")
    max_batches_per_epoch: int | None = Field(
        None, ge=1, description="Cap on batches per epoch, for smoke runs; empty: all."
    )
    cache_dir: str | None = Field(
        None,
        description="Folder of the pre-decoded uint8 pixel cache (memmap); empty: decoded "
        "pixels stay in the memory of each loading process.",
    )
    prefetch_factor: int = Field(
        4, ge=1, description="Batches each DataLoader worker prepares ahead of the device."
    )
    freeze_batchnorm: bool = Field(
        False,
        description="Keep BatchNorm statistics fixed while training: for fine-tuning with small "
        "per-device batches; makes N CPU processes train exactly like one.",
    )
    sync_batchnorm: bool = Field(
        True, description="On CUDA with several processes, normalise over the global batch."
    )
