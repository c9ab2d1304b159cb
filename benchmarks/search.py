"""What parallel trials and pruning buy: a 4-trial search under kfp.local, three ways.

    python benchmarks/search.py                                  # the defaults below
    python benchmarks/search.py --per-class 100 --epochs 3 --json search.json

Scenarios, each in a fresh folder (its own MLflow database, no cache): parallelism 1 without
pruning, parallelism 2 without pruning, parallelism 2 with the median rule (warm-up 0). The
space is a grid over four learning rates, two of them too small to learn anything in a few
epochs, which pruning should stop after their first epoch. Reported: wall time of the whole
search pipeline (prepare, trials, select, evaluate, export, register), the trials' epochs run
against the epochs a search without pruning trains, and the statuses. kfp.local runs the
ParallelFor's iterations concurrently up to `parallelism`, as KFP does on a cluster.

Run it on an idle machine; on a machine with 2 cores two trials share them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from slipway.data.demo import write_demo_dataset

SCENARIOS = (("p=1, no pruning", 1, "none"), ("p=2, no pruning", 2, "none"))
SCENARIOS += (("p=2, median pruning", 2, "median"),)


def _config(data: Path, work: Path, args: argparse.Namespace, parallelism: int, rule: str) -> Any:
    from slipway.config.experiment import ExperimentConfig

    return ExperimentConfig.model_validate(
        {
            "data": {"source": str(data)},
            "model": {"name": "bench", "parity_images": 8},
            "training": {
                "arch": args.arch,
                "epochs": args.epochs,
                "batch_size": 32,
                "image_size": args.image_size,
                "max_batches_per_epoch": args.max_batches,
            },
            "tracking": {"uri": f"sqlite:///{work / 'mlflow.db'}"},
            "promotion": {"max_p95_latency_ms": 10_000.0, "min_accuracy": 0.0},
            "search": {
                "method": "grid",
                "n_trials": 4,
                "parallelism": parallelism,
                "space": {"training.lr": {"choice": [3e-3, 1e-7, 1e-3, 3e-7]}},
                "pruning": {"rule": rule, "warmup_epochs": 0, "min_trials": 1},
            },
        }
    )


def scenario(data: Path, args: argparse.Namespace, parallelism: int, rule: str) -> dict:
    from pipelines.run import run_local
    from pipelines.search import build_search_pipeline, search_arguments
    from slipway.registry.client import Registry

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config = _config(data, work, args, parallelism, rule)
        arguments = {**search_arguments(config), "checkpoint_root": str(work / "checkpoints")}
        began = time.perf_counter()
        run_local(
            arguments,
            work / "root",
            fresh=True,
            build=partial(build_search_pipeline, shape=config.search),
            log_file=work / "pipeline.log",
        )
        seconds = time.perf_counter() - began
        registry = Registry(config.tracking.uri)
        runs = registry.client.search_runs(
            [registry.experiment_id("slipway")], filter_string="tags.search = 'parent'"
        )
        metrics = runs[0].data.metrics
    return {
        "seconds": seconds,
        "epochs_run": int(metrics["trial_epochs_run"]),
        "epochs_full": int(metrics["trial_epochs_full"]),
        "pruned": int(metrics["trials_pruned"]),
        "completed": int(metrics["trials_completed"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-class", type=int, default=60, help="Demo images per class.")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-batches", type=int, default=8, help="Batches per epoch.")
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "fashion-mnist"
        write_demo_dataset(data, per_class=args.per_class, seed=0, progress=False)
        for name, parallelism, rule in SCENARIOS:
            results.append({"scenario": name, **scenario(data, args, parallelism, rule)})
            row = results[-1]
            sys.stdout.write(f"{name}: {row['seconds']:.0f} s\n")
    base = results[0]["seconds"]
    # sys.stdout, not print: kfp.local leaves print indented after a run
    out = sys.stdout.write
    out(f"\n{'scenario':<22} {'wall s':>7} {'vs p=1':>7} {'trial-epochs':>13} {'statuses':>22}\n")
    for row in results:
        epochs = f"{row['epochs_run']}/{row['epochs_full']}"
        statuses = f"{row['completed']} completed, {row['pruned']} pruned"
        out(
            f"{row['scenario']:<22} {row['seconds']:>7.0f} {base / row['seconds']:>6.2f}x "
            f"{epochs:>13} {statuses:>22}\n"
        )
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": None}, "results": results}))


if __name__ == "__main__":
    main()
