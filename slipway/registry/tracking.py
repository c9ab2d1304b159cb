"""MLflow run logging for the training pipeline: params, per-epoch curves, evaluation, export.

One MLflow run follows one model through train -> evaluate -> export -> register. The train step
keeps the run id next to its checkpoint, so a restarted pod continues the same run (and its
curves) instead of opening a second one.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from slipway.contract.card import DatasetInfo
from slipway.registry.client import DEFAULT_EXPERIMENT, Registry

log = logging.getLogger(__name__)

EPOCH_METRICS = ("train_loss", "val_loss", "val_accuracy", "images_per_second")
RUN_ID_FILE = "mlflow_run_id"
EXPERIMENT_FILE = "experiment.yaml"
# MLflow stores a dataset digest in 36 characters; the full fingerprint goes in the profile.
DIGEST_CHARS = 32


def start_or_resume_run(
    registry: Registry,
    run_name: str,
    tags: dict[str, str],
    resume_file: Path | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
) -> str:
    """Open a run, or reopen the one whose id `resume_file` holds (a retried task)."""
    client = registry.client
    if resume_file is not None and resume_file.is_file():
        run_id = resume_file.read_text().strip()
        try:
            client.get_run(run_id)
        except Exception:  # the run was deleted or the store replaced: start a new one
            log.warning("MLflow run %s from %s not found; starting a new run", run_id, resume_file)
        else:
            client.update_run(run_id, status="RUNNING")
            log.info("continuing MLflow run %s", run_id)
            return run_id
    run = client.create_run(registry.experiment_id(experiment), run_name=run_name, tags=tags)
    if resume_file is not None:
        resume_file.write_text(run.info.run_id)
    return run.info.run_id


def log_params(registry: Registry, run_id: str, params: dict[str, Any]) -> None:
    """Log params once; a resumed run already has them with the same values."""
    from mlflow.entities import Param

    existing = registry.client.get_run(run_id).data.params
    fresh = [Param(k, str(v)) for k, v in params.items() if k not in existing]
    if fresh:
        registry.client.log_batch(run_id, params=fresh)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"training": {"lr": 0.002}} -> {"training.lr": 0.002}: the keys `--set` takes."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def log_experiment(registry: Registry, run_id: str, sections: dict[str, Any]) -> None:
    """The resolved experiment config on the run: one param per key, and `experiment.yaml`."""
    import yaml

    log_params(registry, run_id, flatten(sections))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / EXPERIMENT_FILE
        path.write_text(yaml.safe_dump(sections, sort_keys=False))
        registry.client.log_artifact(run_id, str(path))


def log_metrics(
    registry: Registry, run_id: str, metrics: dict[str, float], step: int | None = None
) -> None:
    """Log finite numeric metrics in one call."""
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    batch = [
        Metric(key, float(value), stamp, step or 0)
        for key, value in metrics.items()
        if isinstance(value, int | float) and value == value
    ]
    if batch:
        registry.client.log_batch(run_id, metrics=batch)


def safe_key(name: str) -> str:
    """Class names may hold characters MLflow refuses in metric keys."""
    return re.sub(r"[^\w\-. ]", "_", name)


class EpochLogger:
    """`on_epoch` callback for `slipway.training.loop.train`: streams the learning curves."""

    def __init__(self, registry: Registry, run_id: str) -> None:
        self.registry = registry
        self.run_id = run_id

    def __call__(self, epoch: Any) -> None:
        values = {key: getattr(epoch, key) for key in EPOCH_METRICS}
        log_metrics(self.registry, self.run_id, values, step=epoch.epoch)

    def backfill(self, history: list[Any]) -> int:
        """Log epochs a killed process finished but did not report; returns how many."""
        logged = {m.step for m in self.registry.client.get_metric_history(self.run_id, "val_loss")}
        missing = [h for h in history if h.epoch not in logged]
        for epoch in missing:
            self(epoch)
        return len(missing)


def confusion_matrix_png(report: dict[str, Any], path: Path) -> Path:
    """Render the report's confusion matrix (rows true, columns predicted) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    matrix = np.asarray(report["confusion_matrix"])
    classes = report["classes"]
    size = max(4.0, 0.6 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {report['accuracy']:.4f} on {report['n']} test images")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, col), value in np.ndenumerate(matrix):
        color = "white" if value > threshold else "black"
        ax.text(col, row, str(value), ha="center", va="center", color=color, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def log_evaluation(
    registry: Registry, run_id: str, report: dict[str, Any], model_dir: Path, workdir: Path
) -> None:
    """Test metrics, per-class precision/recall, the report and the confusion-matrix PNG."""
    metrics = {
        "test_accuracy": report["accuracy"],
        "test_macro_f1": report["macro_f1"],
        "test_ece": report["ece"],
        "test_nll": report["nll"],
    }
    for name, row in report["per_class"].items():
        metrics[f"test_precision/{safe_key(name)}"] = row["precision"]
        metrics[f"test_recall/{safe_key(name)}"] = row["recall"]
    log_metrics(registry, run_id, metrics)
    png = confusion_matrix_png(report, workdir / "confusion_matrix.png")
    registry.client.log_artifact(run_id, str(png), "evaluation")
    for name in ("report.md", "report.json"):
        if (model_dir / name).is_file():
            registry.client.log_artifact(run_id, str(model_dir / name), "evaluation")


def dataset_name(dataset: DatasetInfo) -> str:
    """The dataset's name in MLflow: its folder name (`fashion-mnist`), else "dataset"."""
    return dataset.uri.rstrip("/").rsplit("/", 1)[-1] or "dataset"


def dataset_digest(dataset: DatasetInfo) -> str:
    return dataset.fingerprint[:DIGEST_CHARS]


def dataset_entity(dataset: DatasetInfo) -> Any:
    """The dataset of a model card as an MLflow dataset: fingerprint as digest, source, counts."""
    from mlflow.entities import Dataset
    from mlflow.types import ColSpec, Schema

    uri = dataset.uri
    scheme = uri.split("://", 1)[0] if "://" in uri else "local"
    schema = Schema([ColSpec("binary", "image"), ColSpec("string", "label")])
    counts = dict(dataset.counts)
    profile = {"num_rows": counts.get("total", sum(counts.values())), **counts}
    return Dataset(
        name=dataset_name(dataset),
        digest=dataset_digest(dataset),
        source_type="local" if scheme == "file" else scheme,
        source=json.dumps({"uri": uri}),
        schema=json.dumps({"mlflow_colspec": schema.to_dict()}),
        profile=json.dumps({**profile, "fingerprint": dataset.fingerprint}),
    )


def log_dataset(client: Any, run_id: str, dataset: DatasetInfo, context: str = "training") -> None:
    """Record the dataset as an input of the run (logging the same one again changes nothing)."""
    from mlflow.entities import DatasetInput, InputTag

    if not dataset.fingerprint:
        return
    tags = [InputTag("mlflow.data.context", context)]
    client.log_inputs(run_id, datasets=[DatasetInput(dataset_entity(dataset), tags=tags)])
