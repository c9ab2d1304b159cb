"""`slipway data demo`, `slipway train`, `slipway evaluate`, `slipway export`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from slipway.cli.experiment import (
    Arch,
    ConfigFile,
    Data,
    Epochs,
    GpusPerNode,
    ImageSize,
    Sets,
    resolve,
)
from slipway.errors import DataError

data_app = typer.Typer(
    help="Datasets: write the offline demo set, inspect a folder.", no_args_is_help=True
)


@data_app.command("demo")
def data_demo(
    out: Annotated[Path, typer.Option(help="Folder to write the ImageFolder dataset to.")],
    per_class: Annotated[int, typer.Option(min=1, help="Images per class.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed that picks the images.")] = 0,
    source: Annotated[
        Path | None, typer.Option(help="Folder with Fashion-MNIST IDX files (default: Debian's).")
    ] = None,
) -> None:
    """Write Fashion-MNIST as PNG files, one folder per class, fully offline."""
    from slipway.data.demo import write_demo_dataset

    counts = write_demo_dataset(out, per_class=per_class, seed=seed, source=source)
    typer.echo(f"wrote {sum(counts.values())} images in {len(counts)} classes to {out}")


@data_app.command("inspect")
def data_inspect(
    data: Annotated[str, typer.Argument(help="ImageFolder path or fsspec URI.")],
    manifest: Annotated[
        Path | None, typer.Option(help="Write the full manifest JSON here.")
    ] = None,
) -> None:
    """Validate every image and print counts, fingerprint and rejected files."""
    from slipway.data.scan import scan_dataset

    scan = scan_dataset(data)
    typer.echo(
        json.dumps(
            {"classes": scan.classes, "fingerprint": scan.fingerprint, "counts": scan.counts()},
            indent=2,
        )
    )
    for item in scan.rejected[:20]:
        typer.echo(f"rejected {item.path}: {item.reason}")
    if manifest:
        scan.save(manifest)


def _require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise DataError(f"{what} folder not found: {path}")


def train_cmd(
    out: Annotated[
        Path, typer.Option(help="Model folder to write (resumes if it has a checkpoint).")
    ],
    config: ConfigFile = None,
    sets: Sets = None,
    data: Data = None,
    arch: Arch = None,
    epochs: Epochs = None,
    image_size: ImageSize = None,
    gpus_per_node: GpusPerNode = None,
) -> None:
    """Train a classifier on this machine and write a self-describing model folder.

    Reads the experiment's `data` and `training` sections (and `cluster.gpus_per_node`: more
    than one trains with torchrun on this node).
    """
    experiment = resolve(locals())
    source = Path(experiment.data.source).expanduser()
    _require_dir(source, "dataset")
    from slipway.training.launch import run_training

    training = experiment.training
    result = run_training(source, out, training, gpus_per_node=experiment.cluster.gpus_per_node)
    last = result.history[-1]
    typer.echo(
        f"trained {training.arch} for {last.epoch} epoch(s), best epoch {result.best_epoch}, "
        f"val accuracy {result.card.metrics['val_accuracy']:.4f}; model in {out}"
    )


def evaluate_cmd(
    model: Annotated[Path, typer.Option(help="Model folder written by `slipway train`.")],
    data: Annotated[Path, typer.Option(help="The ImageFolder dataset.")],
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
) -> None:
    """Evaluate on one split; writes report.json and report.md into the model folder."""
    _require_dir(model, "model")
    _require_dir(data, "dataset")
    if split not in ("train", "val", "test"):
        raise DataError("split must be train, val or test")
    from slipway.training.evaluation import REPORT_MD, evaluate

    report = evaluate(model, data, split)
    typer.echo(
        f"{split}: accuracy {report['accuracy']:.4f}, macro-F1 {report['macro_f1']:.4f}, "
        f"ECE {report['ece']:.4f} on {report['n']} images"
    )
    typer.echo(f"report: {model / REPORT_MD}")


def export_cmd(
    model: Annotated[Path, typer.Option(help="Model folder written by `slipway train`.")],
    data: Annotated[Path, typer.Option(help="Dataset whose test images check parity.")],
    images: Annotated[int, typer.Option(min=1, help="Test images for the parity check.")] = 64,
    tolerance: Annotated[float, typer.Option(help="Max abs logit difference allowed.")] = 1e-3,
    int8: Annotated[
        bool,
        typer.Option(
            help="Also write model.int8.onnx, compare it with FP32 on the test split and gate it "
            "(the defaults of the experiment's model.int8 section)."
        ),
    ] = True,
) -> None:
    """Export ONNX + TorchScript, check parity against eager torch, measure latency."""
    _require_dir(model, "model")
    _require_dir(data, "dataset")
    from slipway.config.export import Int8Config
    from slipway.data.scan import scan_dataset
    from slipway.training.export import export_model
    from slipway.training.parity import parity_inputs

    scan = scan_dataset(data, progress=False)
    info = export_model(
        model,
        parity_inputs(model, scan, images),
        tolerance=tolerance,
        scan=scan,
        int8=Int8Config(enabled=int8),
    )
    typer.echo(json.dumps(info, indent=2))


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
    app.command("train")(train_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.command("export")(export_cmd)
