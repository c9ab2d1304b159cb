"""One call that trains on 1 device, N devices of this node, or N nodes of a Kubernetes cluster.

`run_training` is the entry point for the CLI and the pipeline's train step:

- 1 device: `slipway.training.loop.train` in this process;
- `gpus_per_node` > 1 on this node:
  `torchrun --standalone --nproc-per-node N -m slipway.training.launch`
  as a subprocess whose output is streamed through;
- a `TrainJobSpec`: a Kubeflow Trainer `TrainJob` (or Training Operator `PyTorchJob`) that runs
  the same `torchrun -m slipway.training.launch` command on `nodes` pods, applied and waited on.

In every case the result is read back from the model folder, so the caller gets the same
`TrainResult` whichever way the work ran. `python -m slipway.training.launch` is the
per-process entry point torchrun starts.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from collections import deque
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from slipway.config.training import TrainConfig
from slipway.errors import SlipwayError

if TYPE_CHECKING:
    from slipway.data.scan import DatasetScan
    from slipway.training.loop import TrainResult
    from slipway.training.trainjob import TrainJobSpec

log = logging.getLogger(__name__)

RESULT_FILE = "train-result.json"
MANIFEST_FILE = "dataset-manifest.json"


class LaunchError(SlipwayError):
    """The training processes failed; the message carries the end of their output."""


def worker_args(
    data: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: TrainConfig,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    manifest: str | os.PathLike[str] | None = None,
    name: str | None = None,
) -> list[str]:
    """Arguments of `python -m slipway.training.launch` for one run (locally and in TrainJobs)."""
    args = ["--data", os.fspath(data), "--out", os.fspath(out_dir)]
    args += ["--config", config.model_dump_json()]
    if checkpoint_dir is not None:
        args += ["--checkpoint-dir", os.fspath(checkpoint_dir)]
    if manifest is not None:
        args += ["--manifest", os.fspath(manifest)]
    if name is not None:
        args += ["--name", name]
    return args


def torchrun_command(nproc_per_node: int, args: list[str]) -> list[str]:
    """`torchrun --standalone` for one node, with this interpreter (same environment)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc_per_node}",
        "-m",
        "slipway.training.launch",
        *args,
    ]


def run_training(
    data: str | os.PathLike[str] | DatasetScan,
    out_dir: str | os.PathLike[str],
    config: TrainConfig | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    gpus_per_node: int = 1,
    nodes: int = 1,
    trainjob: TrainJobSpec | None = None,
    name: str = "slipway-classifier",
) -> TrainResult:
    """Train on `nodes` x `gpus_per_node` processes and return the result from the model folder.

    Args:
        data: ImageFolder path or URI, or a `DatasetScan` already made (not scanned again).
        out_dir: model folder to write; it resumes from its checkpoint like `train`.
        config: training knobs; `batch_size` is the global batch over all processes.
        checkpoint_dir: where checkpoints go (default OUT/checkpoints).
        gpus_per_node: processes per node, one per GPU. On a machine without CUDA, N > 1
            runs N CPU processes with the gloo backend (for tests and small jobs).
        nodes: pods to run on; more than one needs `trainjob`.
        trainjob: run on Kubernetes instead of this machine. `data`, `out_dir` and
            `checkpoint_dir` must then be paths on the shared volume the spec mounts, and this
            process must see that volume at the same path to read the result.
        name: model name written into the card.
    """
    from slipway.training.loop import train

    config = config or TrainConfig()
    if gpus_per_node < 1 or nodes < 1:
        raise SlipwayError("gpus_per_node and nodes must be at least 1")
    if nodes > 1 and trainjob is None:
        raise SlipwayError("training on more than one node needs a TrainJobSpec (cluster run)")
    if config.batch_size % (gpus_per_node * nodes):
        raise SlipwayError(
            f"batch_size {config.batch_size} must be divisible by the number of processes "
            f"({nodes} node(s) x {gpus_per_node})"
        )
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir else Path(out_dir) / "checkpoints"
    if trainjob is None and gpus_per_node == 1:
        return train(data, out_dir, config, checkpoint_dir, name=name)  # type: ignore[arg-type]
    manifest = None
    if _is_scan(data):
        # Every process reads the split prepare_dataset made, not a fresh scan of the folder.
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        manifest = ckpt_dir / MANIFEST_FILE
        data.save(manifest)  # type: ignore[union-attr]
        data = data.root  # type: ignore[union-attr]
    args = worker_args(data, out_dir, config, checkpoint_dir, manifest, name)  # type: ignore[arg-type]
    if trainjob is not None:
        from slipway.training.trainjob import run_trainjob

        run_trainjob(trainjob, args, nodes=nodes, gpus_per_node=gpus_per_node)
    else:
        _check_devices(config, gpus_per_node)
        run_torchrun(torchrun_command(gpus_per_node, args))
    return read_result(out_dir, ckpt_dir)


def _is_scan(data: object) -> bool:
    from slipway.data.scan import DatasetScan

    return isinstance(data, DatasetScan)


def _check_devices(config: TrainConfig, gpus_per_node: int) -> None:
    import torch

    wants_cuda = config.device.startswith("cuda") or (
        config.device == "auto" and torch.cuda.is_available()
    )
    if wants_cuda and torch.cuda.device_count() < gpus_per_node:
        raise SlipwayError(
            f"{gpus_per_node} processes asked for, but this node has "
            f"{torch.cuda.device_count()} CUDA device(s)"
        )
    if not wants_cuda:
        log.warning("no CUDA device: running %d CPU processes with gloo", gpus_per_node)


def run_torchrun(command: list[str], env: dict[str, str] | None = None) -> None:
    """Run torchrun, pass its output through as it comes, and fail with its last lines."""
    log.info("starting: %s", " ".join(command[:8]) + " ...")
    tail: deque[str] = deque(maxlen=200)
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
    ) as proc:
        assert proc.stdout is not None
        pending = b""
        for chunk in iter(lambda: proc.stdout.read1(65536), b""):  # type: ignore[union-attr]
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            pending += chunk
            *lines, pending = pending.split(b"\n")
            tail.extend(line.decode(errors="replace").rstrip("\r") for line in lines)
        code = proc.wait()
    if code != 0:
        ours = [line for line in tail if line.startswith("error: ")]
        errors = ours or [line for line in tail if "Error" in line]
        last = errors[-1] if errors else (tail[-1] if tail else "no output")
        raise LaunchError(f"torchrun exited with status {code}: {last.strip()}")


def write_result(result: TrainResult, checkpoint_dir: Path) -> None:
    """What `read_result` reads back: the run's history beside its checkpoint."""
    data = {
        "model_dir": str(result.model_dir),
        "history": [asdict(h) for h in result.history],
        "best_epoch": result.best_epoch,
        "resumed_from_epoch": result.resumed_from_epoch,
        "stopped_early": result.stopped_early,
    }
    tmp = checkpoint_dir / f"{RESULT_FILE}.tmp"
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, checkpoint_dir / RESULT_FILE)


def read_result(
    out_dir: str | os.PathLike[str], checkpoint_dir: str | os.PathLike[str]
) -> TrainResult:
    """The `TrainResult` of a run that finished in other processes or pods."""
    from slipway.contract.card import load_card
    from slipway.training.loop import EpochResult, TrainResult

    path = Path(checkpoint_dir) / RESULT_FILE
    if not path.is_file():
        raise LaunchError(
            f"training finished but {path} is not visible here; the model folder must be on "
            "storage this process can read (the same volume at the same path)"
        )
    data = json.loads(path.read_text())
    return TrainResult(
        model_dir=Path(out_dir),
        card=load_card(out_dir),
        history=[EpochResult(**h) for h in data["history"]],
        best_epoch=data["best_epoch"],
        resumed_from_epoch=data["resumed_from_epoch"],
        stopped_early=data["stopped_early"],
    )


def _config_from_json(text: str) -> TrainConfig:
    from pydantic import ValidationError

    from slipway.config.experiment import describe_errors

    try:
        return TrainConfig.model_validate_json(text)
    except ValidationError as exc:
        raise SlipwayError(describe_errors(exc, "--config")) from None


def main(argv: list[str] | None = None) -> int:
    """Per-process entry point under torchrun: train, and let rank 0 record the result."""
    parser = argparse.ArgumentParser(prog="python -m slipway.training.launch", description=__doc__)
    parser.add_argument("--data", required=True, help="ImageFolder path or URI")
    parser.add_argument("--out", required=True, help="model folder")
    parser.add_argument("--config", default="{}", help="TrainConfig as JSON")
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument("--manifest", default=None, help="dataset manifest JSON (skips scan)")
    parser.add_argument("--name", default="slipway-classifier")
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    level = logging.INFO if rank == 0 else logging.WARNING
    logging.basicConfig(level=level, format=f"[rank {rank}] %(levelname)s %(name)s: %(message)s")
    from slipway.data.scan import DatasetScan
    from slipway.training.loop import train

    try:
        config = _config_from_json(args.config)
        data = DatasetScan.load(args.manifest) if args.manifest else args.data
        result = train(data, args.out, config, args.checkpoint_dir, name=args.name)
    except SlipwayError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201 - the one line torchrun shows
        return 2
    if rank == 0:
        ckpt_dir = (
            Path(args.checkpoint_dir) if args.checkpoint_dir else Path(args.out) / "checkpoints"
        )
        write_result(result, ckpt_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
