"""The process group under `torchrun`: who this process is, and the few collectives training needs.

Training runs as one process per accelerator when started by `torchrun` (or by Kubeflow Trainer,
which starts `torchrun` on every node), and as a plain single process otherwise. Everything
rank-dependent goes through a `DistContext`, so the training loop reads the same in both cases.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)
T = TypeVar("T")

# Rank 0 may decode a whole dataset into the pixel cache while the others wait in a barrier;
# the default collective timeout (10 minutes for NCCL) is too short for that.
GROUP_TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job: global rank, rank on its node, and job size."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        """True when a process group is up (more than one process, or launched by torchrun)."""
        return dist.is_available() and dist.is_initialized()

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs progress and writes checkpoints, model card and reference."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True inside a process started by torchrun (or anything that sets its environment)."""
    if dist.is_available() and dist.is_torchelastic_launched():
        return True
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: str = "auto") -> DistContext:
    """Join the process group when launched by torchrun; otherwise describe a single process.

    Each rank takes the CUDA device of its `LOCAL_RANK`, and the backend follows the device:
    NCCL on CUDA, gloo on CPU. Calling it again returns the context of the group already up.
    """
    if not launched_by_torchrun():
        return DistContext(device=_pick(device, 0))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    world_size = int(os.environ["WORLD_SIZE"])
    target = _pick(device, local_rank)
    if target.type == "cuda":
        torch.cuda.set_device(target)
    if not dist.is_initialized():
        backend = "nccl" if target.type == "cuda" else "gloo"
        dist.init_process_group(
            backend=backend,
            timeout=GROUP_TIMEOUT,
            device_id=target if target.type == "cuda" else None,
        )
        log.info("rank %d/%d (local %d) joined with %s", rank, world_size, local_rank, backend)
    return DistContext(rank=rank, local_rank=local_rank, world_size=world_size, device=target)


def _pick(device: str, local_rank: int) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(device)


def shutdown(ctx: DistContext) -> None:
    """Leave the process group, so torchrun sees a clean exit on every rank."""
    if ctx.enabled:
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (no-op for a single process)."""
    if ctx.enabled:
        if ctx.device.type == "cuda":
            dist.barrier(device_ids=[ctx.device.index])
        else:
            dist.barrier()


def all_reduce_sum(ctx: DistContext, values: list[float]) -> list[float]:
    """Sum a few numbers over all ranks (validation counts, loss sums) in float64."""
    if not ctx.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def gather_objects(ctx: DistContext, obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank (used for per-rank RNG states)."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def shard(n: int, ctx: DistContext) -> Iterator[int]:
    """This rank's share of `range(n)` without padding, for evaluation that counts each once."""
    return iter(range(ctx.rank, n, ctx.world_size))


def wrap_model(model: torch.nn.Module, ctx: DistContext, sync_batchnorm: bool) -> torch.nn.Module:
    """DistributedDataParallel around `model` when more than one process trains.

    With `sync_batchnorm` on CUDA, BatchNorm layers become SyncBatchNorm, so N ranks of B/N
    images normalise like one process of B images. PyTorch has no SyncBatchNorm on CPU; there
    each rank normalises its own share (use `freeze_batchnorm` for exact equivalence).
    """
    if not ctx.enabled or ctx.world_size == 1:
        return model
    if sync_batchnorm and ctx.device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def on_main(ctx: DistContext, fn: Callable[[], T]) -> T:
    """`fn()` computed by rank 0 only and sent to every rank; its exception too, raised on all."""
    if not ctx.enabled:
        return fn()
    box: list[Any] = [None]
    if ctx.is_main:
        try:
            box[0] = (True, fn())
        except Exception as exc:  # every rank must leave the broadcast, then all raise
            box[0] = (False, exc)
    dist.broadcast_object_list(box, src=0)
    ok, value = box[0]
    if not ok:
        raise value
    return value
