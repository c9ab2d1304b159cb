"""What kfp.local costs: the training pipeline vs the same work called directly in one process.

Both sides do the same work on the same data with the same settings: scan + validate, train,
evaluate on the test split, export ONNX/TorchScript with the parity check and latency. The
pipeline side adds what a pipeline brings: one process per step (importing torch and MLflow each
time), artifact copies between steps, MLflow logging and the registry with its gate.

    python benchmarks/pipeline.py                                   # the `make run` setting
    python benchmarks/pipeline.py --per-class 100 --epochs 1 --json pipeline.json

Run it on an idle machine; the first MLflow database creation is part of the pipeline's time.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from slipway.data.demo import write_demo_dataset


def _experiment(data: Path, work: Path, args: argparse.Namespace) -> Any:
    """One experiment for both ways of running it."""
    from slipway.config.experiment import load_experiment

    overrides = [
        f"data.source={data}",
        f"training.arch={args.arch}",
        f"training.epochs={args.epochs}",
        f"training.image_size={args.image_size}",
        f"training.max_batches_per_epoch={args.max_batches or 'null'}",
        f"tracking.uri=sqlite:///{work / 'mlflow.db'}",
        "promotion.min_accuracy=0",
    ]
    return load_experiment(None, overrides)


def direct(data: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The core functions back to back, in this process."""
    from slipway.data.scan import scan_dataset
    from slipway.training.evaluation import evaluate
    from slipway.training.export import export_model
    from slipway.training.loop import train
    from slipway.training.parity import parity_inputs

    began = time.perf_counter()
    scan = scan_dataset(data)
    train(scan, work / "model", _experiment(data, work, args).training)
    report = evaluate(work / "model", scan, "test")
    info = export_model(work / "model", parity_inputs(work / "model", scan, 64))
    return {
        "seconds": time.perf_counter() - began,
        "test_accuracy": report["accuracy"],
        "onnx_max_abs_diff": info["onnx_max_abs_diff"],
        "latency_b1_p95_ms": info["latency_b1_p95_ms"],
        "latency_b8_p95_ms": info["latency_b8_p95_ms"],
    }


def pipeline(data: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The same through `slipway pipeline run --local` (kfp.local, MLflow on SQLite)."""
    from pipelines.run import run_local
    from pipelines.training import run_arguments
    from slipway.registry.client import Registry

    experiment = _experiment(data, work, args)
    params = {**run_arguments(experiment), "checkpoint_root": str(work / "checkpoints")}
    out = run_local(params, work / "root", log_file=work / "pipeline.log")
    metrics = Registry(experiment.tracking.uri).describe(f"slipway-classifier/{out['version']}")[
        "metrics"
    ]
    return {
        "seconds": out["seconds"],
        "test_accuracy": metrics["test_accuracy"],
        "onnx_max_abs_diff": metrics["onnx_max_abs_diff"],
        "latency_b1_p95_ms": metrics["latency_b1_p95_ms"],
        "latency_b8_p95_ms": metrics["latency_b8_p95_ms"],
        "decision": out["decision"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=1000, help="demo images per class")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--max-batches", type=int, default=0, help="cap per epoch (0: all)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="slipway-bench-") as tmp:
        root = Path(tmp)
        write_demo_dataset(root / "data", per_class=args.per_class, seed=0)
        results = {
            "direct": direct(root / "data", root / "direct", args),
            "pipeline": pipeline(root / "data", root / "pipeline", args),
        }
    overhead = results["pipeline"]["seconds"] - results["direct"]["seconds"]
    results["overhead_seconds"] = overhead
    results["settings"] = vars(args) | {"json": str(args.json) if args.json else None}
    header = ("seconds", "test acc", "onnx diff", "b1 p95 ms", "b8 p95 ms")
    print(f"{'':10}{header[0]:>9}{header[1]:>10}" + "".join(f"{h:>11}" for h in header[2:]))
    for name in ("direct", "pipeline"):
        row = results[name]
        print(
            f"{name:10}{row['seconds']:9.1f}{row['test_accuracy']:10.4f}"
            f"{row['onnx_max_abs_diff']:11.2e}{row['latency_b1_p95_ms']:11.2f}"
            f"{row['latency_b8_p95_ms']:11.2f}"
        )
    ratio = results["pipeline"]["seconds"] / max(results["direct"]["seconds"], 1e-9)
    print(f"kfp.local overhead: {overhead:.1f} s ({ratio:.2f}x the direct time)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
