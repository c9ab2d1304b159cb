"""The five training-pipeline steps as plain functions over folders.

Each KFP component in `components/` is a few lines around one of these, so the steps can be
tested and reused without KFP, and the components stay thin. Inputs are folders (artifact paths),
outputs are folders plus a dict of metadata for the artifact.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slipway.config.experiment import DataConfig, ModelConfig, TrackingConfig
from slipway.config.promotion import PromotionPolicy
from slipway.config.training import TrainConfig
from slipway.data.scan import DatasetScan, SplitFractions, scan_dataset
from slipway.errors import DataError
from slipway.registry.client import Registry
from slipway.registry.lineage import split_fingerprint
from slipway.registry.ref import ModelRef, RefKind

if TYPE_CHECKING:
    from slipway.training.trainjob import TrainJobSpec

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
DATASET_REFERENCE_FILE = "reference.json"
REJECTED_FILE = "rejected.json"
REJECTED_IN_METADATA = 20


def prepare(data: DataConfig, out_dir: str | Path) -> dict[str, Any]:
    """Validate a dataset and write manifest.json, reference.json and rejected.json.

    The manifest points at the source (local path, PVC path, or fsspec URI) and pins every file
    by content hash; the fingerprint over those hashes is the dataset's identity in lineage.
    A dataset with more unusable files than `max_rejected_fraction` fails here, not mid-training.
    """
    from slipway.data.reference import dataset_reference

    source = data.source
    if "://" not in source:
        source = str(Path(source).expanduser().resolve())
    scan = scan_dataset(source, SplitFractions(val=data.val_fraction, test=data.test_fraction))
    max_rejected_fraction = data.max_rejected_fraction
    counts = scan.counts()
    seen = counts["total"] + counts["rejected"]
    if counts["rejected"] > max_rejected_fraction * seen:
        first = scan.rejected[0]
        raise DataError(
            f"{counts['rejected']} of {seen} files are unusable (more than "
            f"{max_rejected_fraction:.0%}); first: {first.path}: {first.reason}"
        )
    empty = [name for name in ("train", "val", "test") if counts[name] == 0]
    if empty:
        raise DataError(f"the {', '.join(empty)} split(s) are empty; the dataset is too small")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scan.save(out / MANIFEST_FILE)
    reference = {**dataset_reference(scan), "channel_stats": scan.stats}
    (out / DATASET_REFERENCE_FILE).write_text(json.dumps(reference))
    (out / REJECTED_FILE).write_text(json.dumps([asdict(r) for r in scan.rejected], indent=1))
    return {
        "source_uri": source,
        "fingerprint": scan.fingerprint,
        "test_split_fingerprint": split_fingerprint(scan),
        "classes": scan.classes,
        "num_classes": len(scan.classes),
        "channels": scan.channels,
        **{f"{key}_images": value for key, value in counts.items() if key != "rejected"},
        "rejected_files": counts["rejected"],
        "rejected": [f"{r.path}: {r.reason}" for r in scan.rejected[:REJECTED_IN_METADATA]],
    }


def load_dataset(dataset_dir: str | Path) -> DatasetScan:
    """The scan written by `prepare` (no image is decoded again)."""
    path = Path(dataset_dir) / MANIFEST_FILE
    if not path.is_file():
        raise DataError(f"{dataset_dir} is not a prepared dataset (no {MANIFEST_FILE})")
    return DatasetScan.load(path)


def train_step(
    dataset_dir: str | Path,
    model_dir: str | Path,
    config: TrainConfig,
    work_dir: str | Path,
    tracking: TrackingConfig,
    run_name: str,
    run_tags: dict[str, str],
    record: dict[str, Any] | None = None,
    gpus: int = 1,
    keep_work_dir: bool = False,
    nodes: int = 1,
    trainjob: TrainJobSpec | None = None,
    on_epoch: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Train into `work_dir` (on a volume that outlives the pod), then copy to `model_dir`.

    Checkpoint, best weights and the MLflow run id all live in `work_dir`, so a retried task with
    the same `work_dir` resumes the same epochs and the same MLflow run. With `gpus` > 1 the
    epochs run under torchrun (`slipway.training.launch`); with `nodes` > 1 they run as a Kubeflow
    TrainJob/PyTorchJob described by `trainjob` (data and `work_dir` on its shared volume). In
    both cases the curves are logged when training returns. The training config and the other
    sections in `record` are logged as the run's params and as `experiment.yaml`. `on_epoch`
    (one process only) sees each epoch after it is logged; an exception it raises ends the
    training after that epoch's checkpoint (how a search trial is pruned).
    """
    from slipway.registry.tracking import (
        RUN_ID_FILE,
        EpochLogger,
        log_dataset,
        log_experiment,
        log_params,
        start_or_resume_run,
    )
    from slipway.training.loop import train

    scan = load_dataset(dataset_dir)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    registry = Registry(tracking.uri)
    run_id = start_or_resume_run(
        registry, run_name, run_tags, work / RUN_ID_FILE, tracking.experiment
    )
    log_experiment(registry, run_id, {**(record or {}), "training": config.model_dump()})
    log_params(registry, run_id, {"dataset_fingerprint": scan.fingerprint})
    logger = EpochLogger(registry, run_id)

    def after_epoch(epoch: Any) -> None:
        logger(epoch)
        if on_epoch is not None:
            on_epoch(epoch)

    try:
        if gpus > 1 or nodes > 1:
            from slipway.training.launch import run_training

            result = run_training(
                scan,
                work / "model",
                config,
                work / "checkpoints",
                gpus_per_node=gpus,
                nodes=nodes,
                trainjob=trainjob,
            )
        else:
            result = train(
                scan,
                work / "model",
                config,
                checkpoint_dir=work / "checkpoints",
                on_epoch=after_epoch,
            )
    except BaseException:
        registry.client.set_terminated(run_id, status="FAILED")
        raise
    logger.backfill(result.history)
    log_dataset(registry.client, run_id, result.card.dataset, "training")
    shutil.copytree(work / "model", model_dir, dirs_exist_ok=True)
    registry.client.set_terminated(run_id, status="FINISHED")
    if not keep_work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "mlflow_run_id": run_id,
        "arch": config.arch,
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "resumed_from_epoch": result.resumed_from_epoch,
        "stopped_early": result.stopped_early,
        "val_accuracy": result.card.metrics["val_accuracy"],
        "val_loss": result.card.metrics["val_loss"],
        "dataset_fingerprint": scan.fingerprint,
    }


def evaluate_step(
    dataset_dir: str | Path,
    model_in: str | Path,
    model_out: str | Path,
    tracking: TrackingConfig,
    run_id: str,
) -> dict[str, Any]:
    """Evaluate a copy of the model folder on the test split; log it all to the MLflow run."""
    from slipway.registry.tracking import log_evaluation
    from slipway.training.evaluation import evaluate

    shutil.copytree(model_in, model_out, dirs_exist_ok=True)
    report = evaluate(model_out, load_dataset(dataset_dir), "test")
    if run_id:
        with tempfile.TemporaryDirectory() as tmp:
            log_evaluation(Registry(tracking.uri), run_id, report, Path(model_out), Path(tmp))
    return report


def export_step(
    dataset_dir: str | Path,
    model_in: str | Path,
    model_out: str | Path,
    model: ModelConfig,
    tracking: TrackingConfig,
    run_id: str,
) -> dict[str, Any]:
    """Export ONNX + TorchScript from a copy of the folder; parity on real test images; latency.

    With `model.int8.enabled`, also the INT8 model, its parity on the test split and its gate;
    the figures go to the card and the MLflow run, the gate's verdict as run tags.
    """
    from slipway.registry.tracking import log_metrics
    from slipway.training.export import export_model
    from slipway.training.parity import parity_inputs

    shutil.copytree(model_in, model_out, dirs_exist_ok=True)
    scan = load_dataset(dataset_dir)
    inputs = parity_inputs(model_out, scan, model.parity_images)
    info = export_model(
        model_out,
        inputs,
        tolerance=model.parity_tolerance,
        batch_sizes=(1, model.latency_batch_size),
        scan=scan,
        int8=model.int8,
    )
    if run_id:
        registry = Registry(tracking.uri)
        numbers = {k: v for k, v in info.items() if isinstance(v, int | float)}
        log_metrics(registry, run_id, numbers)
        if "int8" in info:
            registry.client.set_tag(run_id, "int8_servable", str(info["int8"]["servable"]))
            registry.client.set_tag(run_id, "int8_reason", info["int8"]["reason"])
        registry.client.set_tag(run_id, "serve_precision", info["serve_precision"])
    return info


def version_tags(
    model_dir: str | Path, scan: DatasetScan, lineage: dict[str, str]
) -> dict[str, str]:
    """Lineage of a model folder as registry version tags (metrics and params live on the
    logged model and the run)."""
    from slipway.contract.card import load_card

    card = load_card(model_dir)
    return {
        "dataset_fingerprint": card.dataset.fingerprint,
        "test_split_fingerprint": split_fingerprint(scan),
        "dataset_uri": card.dataset.uri,
        "arch": card.arch,
        "classes": json.dumps(card.classes),
        **{key: value for key, value in lineage.items()},
    }


def example_image(scan: DatasetScan) -> bytes | None:
    """The bytes of the first test image: the registered model's input example."""
    from slipway.data.storage import open_root

    samples = scan.split("test")
    if not samples:
        return None
    try:
        fs, root = open_root(scan.root)
        with fs.open(f"{root}/{samples[0].path}", "rb") as handle:
            return handle.read()
    except OSError as exc:
        log.warning("no input example (%s); a blank image stands in", exc)
        return None


def register_step(
    dataset_dir: str | Path,
    model_dir: str | Path,
    model_name: str,
    tracking: TrackingConfig,
    run_id: str,
    lineage: dict[str, str],
    policy: PromotionPolicy,
) -> dict[str, Any]:
    """Log the folder as an MLflow model of the run, register it as a new version (alias
    staging), then run the promotion gate."""
    from slipway.promotion.gate import gate

    scan = load_dataset(dataset_dir)
    registry = Registry(tracking.uri)
    if not run_id:
        run_id = registry.client.create_run(registry.experiment_id(tracking.experiment)).info.run_id
    tags = {**version_tags(model_dir, scan, lineage), "mlflow_run_id": run_id}
    version = registry.register(model_name, model_dir, run_id, tags, example_image(scan))
    decision = gate(registry, model_name, version, model_dir, scan, policy)
    registered = ModelRef(RefKind.VERSION, name=model_name, version=version)
    registry.client.set_tag(run_id, "registered_version", str(registered))
    registry.client.set_tag(run_id, "promotion_decision", decision.label)
    return {
        "model_name": model_name,
        "version": version,
        "model_uri": str(registered),
        "decision": decision.label,
        "reason": decision.reason,
        "production_version": decision.production_version,
        "production_accuracy": decision.production_accuracy,
    }
