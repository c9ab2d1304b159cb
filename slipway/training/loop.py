"""The core train/evaluate loop: fixed seed, CPU or CUDA, AMP, checkpoints, resume, early stop.

The same loop runs as one process, or as one process per accelerator under `torchrun`
(DistributedDataParallel; see `slipway.training.distributed` and `slipway.training.launch`).
`batch_size` is the global batch: N processes each take `batch_size / N` images of the same
global batch a single process would take, so a run gives the same model on 1 or N devices
(exactly, up to float summation order, when BatchNorm is synchronised or frozen) and a
checkpoint resumes on any process count that divides the batch.
"""

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
import torch.distributed as dist
from tqdm import tqdm

from slipway.config.training import TrainConfig
from slipway.contract.card import WEIGHTS_FILE, DatasetInfo, ModelCard, library_versions
from slipway.contract.preprocessing import Preprocessing
from slipway.contract.reference import write_reference
from slipway.data.reference import dataset_reference
from slipway.data.scan import DatasetScan, normalisation_for, scan_dataset
from slipway.errors import DataError, ModelError, SlipwayError
from slipway.training import distributed as ddp
from slipway.training.cache import shared_pixel_cache
from slipway.training.checkpoint import check_resumable, restore_rng, rng_state, save_atomic
from slipway.training.datasets import ImageDataset, PixelBatches, batch_loader, normalize_batch
from slipway.training.models import build_model

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "last.pt"


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


def _autocast(device: torch.device) -> Any:
    return torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda")


def _epoch_flips(n: int, seed: int, epoch: int) -> torch.Tensor:
    """Which training images are mirrored this epoch: drawn per image, not per batch position,
    so every rank agrees with what a single process would do."""
    generator = torch.Generator().manual_seed(seed * 1000 + epoch)
    return torch.rand(n, generator=generator) < 0.5


def _freeze_batchnorm(model: torch.nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


class _Run:
    """State of one training run in one process: model, loaders, optimizer and bookkeeping."""

    def __init__(
        self, scan: DatasetScan, config: TrainConfig, ctx: ddp.DistContext, ckpt_path: Path
    ) -> None:
        if config.batch_size % ctx.world_size:
            raise SlipwayError(
                f"batch_size {config.batch_size} must be divisible by the number of "
                f"processes ({ctx.world_size})"
            )
        self.scan, self.config, self.ctx, self.ckpt_path = scan, config, ctx, ckpt_path
        channels = config.channels or scan.channels
        mean, std = normalisation_for(scan, channels)
        self.prep = Preprocessing(config.image_size, channels, mean, std)
        self.device = ctx.device
        cache = None
        if config.cache_dir is not None:
            cache = shared_pixel_cache(config.cache_dir, scan, self.prep, ctx, config.num_workers)
        train_set, val_set = (
            PixelBatches(part, ImageDataset(scan.root, part, self.prep), cache)
            for part in (scan.split("train"), scan.split("val"))
        )
        self.n_train = len(train_set)
        per_rank = config.batch_size // ctx.world_size
        self.sampler = torch.utils.data.DistributedSampler(
            train_set, ctx.world_size, ctx.rank, shuffle=True, seed=config.seed
        )
        cuda = self.device.type == "cuda"
        loader_args = {"workers": config.num_workers, "pin_memory": cuda}
        loader_args["prefetch_factor"] = config.prefetch_factor
        self.train_loader = batch_loader(train_set, per_rank, self.sampler, **loader_args)
        val_positions = list(ddp.shard(len(val_set), ctx))
        self.val_loader = batch_loader(val_set, per_rank, val_positions, **loader_args)
        steps = config.max_batches_per_epoch or len(self.train_loader)
        self.steps = min(steps, len(self.train_loader))

        seed_everything(config.seed)  # the same initial weights, whatever ran before
        model = build_model(config.arch, len(scan.classes), self.prep.channels, config.weights_path)
        model.to(self.device)
        if cuda:
            model = model.to(memory_format=torch.channels_last)
        self.model = ddp.wrap_model(model, ctx, config.sync_batchnorm)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        schedule = warmup_cosine(config.epochs * self.steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cuda)
        self.best_loss, self.bad_epochs = math.inf, 0

    def restore(self, result: TrainResult) -> int:
        """Load the checkpoint on every rank, if there is one; return the first epoch to run."""
        if not self.ckpt_path.is_file():
            return 1
        state = torch.load(self.ckpt_path, map_location=self.device, weights_only=False)
        check_resumable(state, self.config.model_dump(), self.scan.fingerprint)
        _unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        result.history = [EpochResult(**h) for h in state["history"]]
        restore_rng(state["rng"], self.ctx.rank)
        self.best_loss, self.bad_epochs = state["best_loss"], state["bad_epochs"]
        result.best_epoch = state["best_epoch"]
        result.resumed_from_epoch = state["epoch"]
        if self.ctx.is_main:
            log.info("resuming after epoch %d from %s", state["epoch"], self.ckpt_path)
        if state.get("stopped"):
            result.stopped_early = True
            return self.config.epochs + 1
        return state["epoch"] + 1

    def batch(
        self, pixels: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 pixels to normalised float on the device (channels_last on CUDA)."""
        pixels = pixels.to(self.device, non_blocking=True)
        images = normalize_batch(pixels, self.prep, channels_last=self.device.type == "cuda")
        return images, labels.to(self.device, non_blocking=True)

    def train_epoch(self, epoch: int) -> tuple[float, int, float]:
        """One pass over this rank's share; returns global (mean loss, images, seconds)."""
        config, model = self.config, self.model
        self.sampler.set_epoch(epoch)
        flips = _epoch_flips(self.n_train, config.seed, epoch) if config.augment else None
        model.train()
        if config.freeze_batchnorm:
            _freeze_batchnorm(model)
        began, seen, loss_sum = time.perf_counter(), 0, 0.0
        bar = tqdm(
            total=self.steps,
            desc=f"epoch {epoch}/{config.epochs}",
            unit="batch",
            leave=False,
            disable=not self.ctx.is_main,
        )
        for step, (pixels, labels, positions) in enumerate(self.train_loader):
            if step >= self.steps:
                break
            images, labels = self.batch(pixels, labels)
            if flips is not None:
                mirror = flips[positions].to(self.device)[:, None, None, None]
                images = torch.where(mirror, images.flip(-1), images)
            self.optimizer.zero_grad(set_to_none=True)
            with _autocast(self.device):
                loss = torch.nn.functional.cross_entropy(model(images), labels)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            seen += labels.numel()
            loss_sum += loss.item() * labels.numel()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
        loss_sum, total = ddp.all_reduce_sum(self.ctx, [loss_sum, float(seen)])
        return loss_sum / max(total, 1), int(total), time.perf_counter() - began

    def evaluate(self) -> tuple[float, float]:
        """Validation loss and accuracy over all ranks' shards, each image counted once."""
        model = _unwrap(self.model)  # no DDP hooks: shards may differ in batch count
        model.eval()
        total, correct, loss_sum = 0, 0, 0.0
        with torch.inference_mode(), _autocast(self.device):
            for pixels, labels, _ in self.val_loader:
                images, labels = self.batch(pixels, labels)
                logits = model(images).float()
                loss = torch.nn.functional.cross_entropy(logits, labels, reduction="sum")
                loss_sum += loss.item()
                correct += int((logits.argmax(1) == labels).sum())
                total += labels.numel()
        loss_sum, correct, total = ddp.all_reduce_sum(
            self.ctx, [loss_sum, float(correct), float(total)]
        )
        return loss_sum / max(total, 1), correct / max(total, 1)

    def save(self, epoch: int, result: TrainResult, out: Path, improved: bool, stop: bool) -> None:
        """Weights and checkpoint from rank 0 (RNG states of every rank); others wait."""
        rng = ddp.gather_objects(self.ctx, rng_state())
        if self.ctx.is_main:
            state_dict = _unwrap(self.model).state_dict()
            if improved:
                save_atomic(state_dict, out / WEIGHTS_FILE)
            checkpoint = {
                "epoch": epoch,
                "model": state_dict,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "history": [asdict(h) for h in result.history],
                "best_loss": self.best_loss,
                "best_epoch": result.best_epoch,
                "bad_epochs": self.bad_epochs,
                "stopped": stop,
                "config": self.config.model_dump(),
                "fingerprint": self.scan.fingerprint,
                "rng": rng,
                "world_size": self.ctx.world_size,
            }
            save_atomic(checkpoint, self.ckpt_path)
        ddp.barrier(self.ctx)


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
    Under `torchrun` every process calls this; rank 0 writes the files, and every rank returns
    the same result. To start N processes from Python, use `slipway.training.launch.run_training`.
    """
    config = config or TrainConfig()
    owns_group = ddp.launched_by_torchrun() and not dist.is_initialized()
    ctx = ddp.init_distributed(config.device)
    try:
        return _train(ctx, data, out_dir, config, checkpoint_dir, on_epoch, name)
    finally:
        if owns_group:
            ddp.shutdown(ctx)


def _train(
    ctx: ddp.DistContext,
    data: str | os.PathLike[str] | DatasetScan,
    out_dir: str | os.PathLike[str],
    config: TrainConfig,
    checkpoint_dir: str | os.PathLike[str] | None,
    on_epoch: Callable[[EpochResult], None] | None,
    name: str,
) -> TrainResult:
    # Rank 0 decodes every file once; the other ranks receive its scan.
    scan = data if isinstance(data, DatasetScan) else ddp.on_main(ctx, lambda: scan_dataset(data))
    if not scan.split("train") or not scan.split("val"):
        raise DataError("the dataset needs images in both the train and val splits")
    if config.channels is None:
        config.channels = scan.channels
    out = Path(out_dir)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir else out / "checkpoints"
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    run = _Run(scan, config, ctx, ckpt_dir / CHECKPOINT_FILE)
    result = TrainResult(model_dir=out, card=None)  # type: ignore[arg-type]
    start_epoch = run.restore(result)
    if ctx.rank > 0 and start_epoch == 1:
        torch.manual_seed(config.seed + ctx.rank)  # own dropout draws; rank 0 = single process
    for epoch in range(start_epoch, config.epochs + 1):
        began = time.perf_counter()
        train_loss, seen, train_time = run.train_epoch(epoch)
        if not math.isfinite(train_loss):
            raise ModelError(f"training diverged in epoch {epoch} (loss is not finite); lower lr")
        val_loss, val_acc = run.evaluate()
        epoch_result = EpochResult(
            epoch=epoch,
            train_loss=train_loss,
            val_loss=val_loss,
            val_accuracy=val_acc,
            seconds=time.perf_counter() - began,
            images_per_second=seen / max(train_time, 1e-9),
        )
        result.history.append(epoch_result)
        if ctx.is_main:
            log.info(
                "epoch %d: train_loss %.4f val_loss %.4f val_acc %.4f (%.0f img/s)",
                epoch,
                train_loss,
                val_loss,
                val_acc,
                epoch_result.images_per_second,
            )
        improved = val_loss < run.best_loss or result.best_epoch == 0
        if improved:
            run.best_loss, run.bad_epochs, result.best_epoch = val_loss, 0, epoch
        else:
            run.bad_epochs += 1
        stop = run.bad_epochs >= config.patience
        run.save(epoch, result, out, improved, stop)
        if on_epoch is not None:
            on_epoch(epoch_result)
        if stop:
            if ctx.is_main:
                log.info("early stop: val loss did not improve for %d epochs", config.patience)
            result.stopped_early = True
            break
    return _finish(result, scan, run, name)


def _finish(result: TrainResult, scan: DatasetScan, run: _Run, name: str) -> TrainResult:
    """Model card and drift reference, written by rank 0 once all ranks are done."""
    config = run.config
    best = next(h for h in result.history if h.epoch == result.best_epoch)
    result.card = ModelCard(
        name=name,
        arch=config.arch,
        classes=scan.classes,
        preprocessing=run.prep.to_dict(),
        dataset=DatasetInfo(uri=str(scan.root), fingerprint=scan.fingerprint, counts=scan.counts()),
        training={
            **config.model_dump(),
            "best_epoch": result.best_epoch,
            "device": run.device.type,
            "world_size": run.ctx.world_size,
        },
        metrics={"val_loss": best.val_loss, "val_accuracy": best.val_accuracy},
        seed=config.seed,
        versions=library_versions(),
    )
    if run.ctx.is_main:
        result.card.save(result.model_dir)
        write_reference(result.model_dir, dataset_reference(scan))
    ddp.barrier(run.ctx)
    return result


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)
