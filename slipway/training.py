"""The core train/evaluate loop: fixed seed, CPU or CUDA, AMP, checkpoints, resume, early stop."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from slipway.card import WEIGHTS_FILE, DatasetInfo, ModelCard, library_versions
from slipway.data import DatasetScan, normalisation_for, scan_dataset
from slipway.datasets import ImageDataset
from slipway.errors import DataError, ModelError
from slipway.models import build_model
from slipway.preprocessing import Preprocessing
from slipway.reference import dataset_reference, write_reference

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "last.pt"
# Fields that must match for a checkpoint to be resumed rather than refused.
_IDENTITY = ("arch", "image_size", "channels", "batch_size", "seed", "lr", "weight_decay")


@dataclass
class TrainConfig:
    """Knobs of one training run; all have defaults that work on the demo data on a laptop."""

    arch: str = "resnet18"
    epochs: int = 3
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    image_size: int = 32
    channels: int | None = None
    seed: int = 0
    patience: int = 3
    num_workers: int = 0
    device: str = "auto"
    augment: bool = True
    weights_path: str | None = None
    max_batches_per_epoch: int | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs and batch_size must be >= 1 and lr > 0")


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    seconds: float
    images_per_second: float


@dataclass
class TrainResult:
    model_dir: Path
    card: ModelCard
    history: list[EpochResult] = field(default_factory=list)
    best_epoch: int = 0
    resumed_from_epoch: int = 0
    stopped_early: bool = False


def pick_device(device: str = "auto") -> torch.device:
    """CUDA when available (or asked for), else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def warmup_cosine(total_steps: int, warmup_fraction: float = 0.1) -> Callable[[int], float]:
    """LR factor: linear warm-up, then cosine decay to zero at `total_steps`.

    The total comes from the current config, so a resumed run asked for more epochs stretches
    the remaining schedule instead of failing.
    """
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def _loader(
    dataset: ImageDataset, config: TrainConfig, shuffle: bool, device: torch.device
) -> torch.utils.data.DataLoader:
    workers = config.num_workers
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=shuffle,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(config.seed),
    )


def run_epoch_eval(
    model: torch.nn.Module, loader: torch.utils.data.DataLoader, device: torch.device
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` over `loader`."""
    model.eval()
    total, correct, loss_sum = 0, 0, 0.0
    with torch.inference_mode(), _autocast(device):
        for images, labels in loader:
            images, labels = _to_device(images, labels, device)
            logits = model(images).float()
            loss_sum += torch.nn.functional.cross_entropy(logits, labels, reduction="sum").item()
            correct += int((logits.argmax(1) == labels).sum())
            total += labels.numel()
    return loss_sum / max(total, 1), correct / max(total, 1)


def _to_device(
    images: torch.Tensor, labels: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    images = images.to(device, non_blocking=True)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    return images, labels.to(device, non_blocking=True)


def _autocast(device: torch.device) -> Any:
    return torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda")


def _augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = torch.rand(images.shape[0], generator=generator) < 0.5
    return torch.where(flip.to(images.device)[:, None, None, None], images.flip(-1), images)


def _save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _check_resumable(state: dict[str, Any], config: TrainConfig, scan: DatasetScan) -> None:
    saved = state["config"]
    changed = [k for k in _IDENTITY if saved.get(k) != asdict(config).get(k)]
    if state.get("fingerprint") != scan.fingerprint:
        changed.append("dataset fingerprint")
    if changed:
        raise ModelError(
            f"the checkpoint was written by a different run ({', '.join(changed)} differ); "
            "use another output folder or delete the checkpoint to start over"
        )


def train(
    data: str | os.PathLike[str] | DatasetScan,
    out_dir: str | os.PathLike[str],
    config: TrainConfig | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    on_epoch: Callable[[EpochResult], None] | None = None,
    name: str = "slipway-classifier",
) -> TrainResult:
    """Train a classifier on an ImageFolder and write a self-describing model folder.

    A checkpoint is written after every epoch to `checkpoint_dir` (default OUT/checkpoints); if
    one exists, training resumes after its epoch, so a killed or retried run does not start over.
    """
    config = config or TrainConfig()
    scan = data if isinstance(data, DatasetScan) else scan_dataset(data)
    train_samples, val_samples = scan.split("train"), scan.split("val")
    if not train_samples or not val_samples:
        raise DataError("the dataset needs images in both the train and val splits")
    if config.channels is None:
        config.channels = scan.channels
    mean, std = normalisation_for(scan, config.channels)
    prep = Preprocessing(config.image_size, config.channels, mean, std)
    device = pick_device(config.device)
    seed_everything(config.seed)
    out = Path(out_dir)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir else out / "checkpoints"
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = ckpt_dir / CHECKPOINT_FILE

    model = build_model(config.arch, len(scan.classes), config.channels, config.weights_path)
    model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    train_loader = _loader(ImageDataset(scan.root, train_samples, prep), config, True, device)
    val_loader = _loader(ImageDataset(scan.root, val_samples, prep), config, False, device)
    steps = config.max_batches_per_epoch or len(train_loader)
    steps = min(steps, len(train_loader))
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(config.epochs * steps))
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")

    result = TrainResult(model_dir=out, card=None)  # type: ignore[arg-type]
    best_loss, bad_epochs, start_epoch = math.inf, 0, 1
    if ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        _check_resumable(state, config, scan)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        result.history = [EpochResult(**h) for h in state["history"]]
        _restore_rng(state["rng"])
        best_loss, bad_epochs = state["best_loss"], state["bad_epochs"]
        result.best_epoch = state["best_epoch"]
        start_epoch = state["epoch"] + 1
        result.resumed_from_epoch = state["epoch"]
        log.info("resuming after epoch %d from %s", state["epoch"], ckpt_path)
        if state.get("stopped"):
            start_epoch = config.epochs + 1
            result.stopped_early = True

    aug_gen = torch.Generator().manual_seed(config.seed + 1)
    for epoch in range(start_epoch, config.epochs + 1):
        train_loader.generator.manual_seed(config.seed + epoch)
        aug_gen.manual_seed(config.seed * 1000 + epoch)
        model.train()
        began, seen, loss_sum = time.perf_counter(), 0, 0.0
        bar = tqdm(total=steps, desc=f"epoch {epoch}/{config.epochs}", unit="batch", leave=False)
        for step, (images, labels) in enumerate(train_loader):
            if step >= steps:
                break
            images, labels = _to_device(images, labels, device)
            if config.augment:
                images = _augment(images, aug_gen)
            optimizer.zero_grad(set_to_none=True)
            with _autocast(device):
                loss = torch.nn.functional.cross_entropy(model(images), labels)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            seen += labels.numel()
            loss_sum += loss.item() * labels.numel()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
        train_time = time.perf_counter() - began
        if not math.isfinite(loss_sum):
            raise ModelError(f"training diverged in epoch {epoch} (loss is not finite); lower lr")
        val_loss, val_acc = run_epoch_eval(model, val_loader, device)
        epoch_result = EpochResult(
            epoch=epoch,
            train_loss=loss_sum / max(seen, 1),
            val_loss=val_loss,
            val_accuracy=val_acc,
            seconds=time.perf_counter() - began,
            images_per_second=seen / max(train_time, 1e-9),
        )
        result.history.append(epoch_result)
        log.info(
            "epoch %d: train_loss %.4f val_loss %.4f val_acc %.4f (%.0f img/s)",
            epoch,
            epoch_result.train_loss,
            val_loss,
            val_acc,
            epoch_result.images_per_second,
        )
        if val_loss < best_loss or result.best_epoch == 0:
            best_loss, bad_epochs, result.best_epoch = val_loss, 0, epoch
            _save_atomic(_unwrap(model).state_dict(), out / WEIGHTS_FILE)
        else:
            bad_epochs += 1
        stop = bad_epochs >= config.patience
        _save_atomic(
            {
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "history": [asdict(h) for h in result.history],
                "best_loss": best_loss,
                "best_epoch": result.best_epoch,
                "bad_epochs": bad_epochs,
                "stopped": stop,
                "config": asdict(config),
                "fingerprint": scan.fingerprint,
                "rng": _rng_state(),
            },
            ckpt_path,
        )
        if on_epoch is not None:
            on_epoch(epoch_result)
        if stop:
            log.info("early stop: val loss did not improve for %d epochs", config.patience)
            result.stopped_early = True
            break

    best = next(h for h in result.history if h.epoch == result.best_epoch)
    result.card = ModelCard(
        name=name,
        arch=config.arch,
        classes=scan.classes,
        preprocessing=prep.to_dict(),
        dataset=DatasetInfo(uri=str(scan.root), fingerprint=scan.fingerprint, counts=scan.counts()),
        training={**asdict(config), "best_epoch": result.best_epoch, "device": device.type},
        metrics={"val_loss": best.val_loss, "val_accuracy": best.val_accuracy},
        seed=config.seed,
        versions=library_versions(),
    )
    result.card.save(out)
    write_reference(out, dataset_reference(scan))
    return result


def _rng_state() -> dict[str, Any]:
    """Global RNG states (dropout draws from them), so a resumed run repeats a fresh one."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)
