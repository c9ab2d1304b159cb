"""One search trial: the training step as an MLflow child run, with pruning, reuse and resume.

The trial's folder is CHECKPOINT_ROOT/search/<trial key>, on the volume that outlives pods: its
checkpoint lets a killed trial resume, and its `model/` stays after the trial so the winner can
be picked up by the steps after the search. A rerun of the same search finds a trial that
already completed (or was pruned) by its key in MLflow and returns that result without
training. A trial that fails is recorded as failed and returned, not raised: one bad trial does
not end the search.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from slipway.config.experiment import TrackingConfig
from slipway.config.search import SearchConfig
from slipway.registry.client import Registry
from slipway.registry.tracking import RUN_ID_FILE, log_metrics
from slipway.search.pruning import SiblingPruner, TrialPrunedError
from slipway.search.space import trial_key, trial_training
from slipway.steps import load_dataset, train_step

log = logging.getLogger(__name__)

STATUS_TAG = "trial_status"
KEY_TAG = "trial_key"
SEARCH_TAG = "search_key"
PARENT_TAG = "mlflow.parentRunId"
FINISHED = ("completed", "pruned")
LATENCY_METRIC = "cpu_latency_b1_p95_ms"


def trial_dir(checkpoint_root: str | Path, key: str) -> Path:
    return Path(checkpoint_root) / "search" / key


def torch_latency_ms(model_dir: Path, repeats: int = 30) -> float:
    """p95 of a batch-1 forward on the CPU with torch (what the latency budget compares)."""
    import numpy as np
    import torch

    from slipway.contract.card import load_card
    from slipway.training.models import load_trained

    prep = load_card(model_dir).transform
    model = load_trained(model_dir)
    image = torch.zeros(1, prep.channels, prep.image_size, prep.image_size)
    times = []
    with torch.inference_mode():
        for i in range(repeats + 3):
            began = time.perf_counter()
            model(image)
            if i >= 3:
                times.append((time.perf_counter() - began) * 1000)
    return float(np.percentile(times, 95))


def find_finished(registry: Registry, experiment_id: str, parent: str, key: str) -> Any | None:
    """The child run of `parent` with this trial key that completed or was pruned, if any."""
    runs = registry.client.search_runs(
        [experiment_id],
        filter_string=f"tags.{PARENT_TAG} = '{parent}' and tags.{KEY_TAG} = '{key}'",
    )
    return next((r for r in runs if r.data.tags.get(STATUS_TAG) in FINISHED), None)


def _result_of(run: Any, base: dict[str, Any], model_path: str) -> dict[str, Any]:
    metrics, tags = run.data.metrics, run.data.tags
    return {
        **base,
        "status": tags[STATUS_TAG],
        "mlflow_run_id": run.info.run_id,
        "val_accuracy": metrics.get("trial_val_accuracy"),
        "val_loss": metrics.get("trial_val_loss"),
        "epochs_run": int(metrics.get("trial_epochs_run", 0)),
        "latency_ms": metrics.get(LATENCY_METRIC),
        "model_path": model_path if tags[STATUS_TAG] == "completed" else "",
        "reason": tags.get("trial_reason", ""),
        "reused": True,
    }


def run_trial(
    dataset_dir: str | Path,
    trial: dict[str, Any],
    training: dict[str, Any],
    search: SearchConfig,
    tracking: TrackingConfig,
    parent_run_id: str,
    skey: str,
    checkpoint_root: str | Path,
    gpus: int = 1,
    record: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train one trial (or reuse its finished run); the result row of the trials table."""
    config = trial_training(training, trial["params"])
    fingerprint = load_dataset(dataset_dir).fingerprint
    key = trial_key(config, fingerprint)
    work = trial_dir(checkpoint_root, key)
    base = {"index": int(trial["index"]), "round": int(trial.get("round", 0))}
    base.update({"params": trial["params"], "key": key})
    registry = Registry(tracking.uri)
    experiment_id = registry.experiment_id(tracking.experiment)
    done = find_finished(registry, experiment_id, parent_run_id, key)
    if done is not None and (
        done.data.tags[STATUS_TAG] == "pruned" or (work / "model" / "model.pt").is_file()
    ):
        log.info("trial %s: reusing finished run %s", key, done.info.run_id)
        return _result_of(done, base, str(work / "model"))

    work.mkdir(parents=True, exist_ok=True)
    pruner = SiblingPruner(
        registry.client,
        lambda: (work / RUN_ID_FILE).read_text().strip(),
        parent_run_id,
        experiment_id,
        search.objective,
        search.maximize,
        search.pruning,
        last_epoch=config.epochs,
    )
    tags = {PARENT_TAG: parent_run_id, KEY_TAG: key, SEARCH_TAG: skey, STATUS_TAG: "running"}
    tags["trial_index"] = str(base["index"])
    result: dict[str, Any] = {**base, "reused": False, "model_path": "", "reason": ""}
    try:
        info = train_step(
            dataset_dir,
            work / "output",
            config,
            work_dir=work,
            tracking=tracking,
            run_name=f"trial-{base['index']}-{key[:8]}",
            run_tags=tags,
            record=record,
            gpus=gpus,
            keep_work_dir=True,
            on_epoch=pruner,
        )
    except TrialPrunedError as pruned:
        run_id = (work / RUN_ID_FILE).read_text().strip()
        result.update(status="pruned", mlflow_run_id=run_id, reason=pruned.reason)
        result.update(epochs_run=pruned.epoch, **_at_epoch(registry, run_id, pruned.epoch))
        result["latency_ms"] = None
        registry.client.set_terminated(run_id, status="KILLED")
        shutil.rmtree(work, ignore_errors=True)
    except Exception as exc:
        log.exception("trial %s failed", key)
        run_file = work / RUN_ID_FILE
        run_id = run_file.read_text().strip() if run_file.is_file() else ""
        result.update(status="failed", mlflow_run_id=run_id, reason=f"{type(exc).__name__}: {exc}")
        result.update(epochs_run=0, val_accuracy=None, val_loss=None, latency_ms=None)
    else:
        shutil.rmtree(work / "checkpoints", ignore_errors=True)
        shutil.rmtree(work / "output", ignore_errors=True)
        result.update(status="completed", mlflow_run_id=info["mlflow_run_id"])
        result.update(val_accuracy=info["val_accuracy"], val_loss=info["val_loss"])
        result.update(epochs_run=info["epochs_run"], model_path=str(work / "model"))
        result["latency_ms"] = _latency(work / "model", result)
    if result.get("mlflow_run_id"):
        _record(registry, result)
    return result


def _latency(model_dir: Path, result: dict[str, Any]) -> float | None:
    """The trial's CPU latency; a trial whose model cannot be measured cannot win."""
    try:
        return torch_latency_ms(model_dir)
    except Exception as exc:
        log.exception("measuring %s failed", model_dir)
        result.update(status="failed", reason=f"latency: {type(exc).__name__}: {exc}")
        return None


def _at_epoch(registry: Registry, run_id: str, epoch: int) -> dict[str, float | None]:
    values: dict[str, float | None] = {}
    for key in ("val_accuracy", "val_loss"):
        history = registry.client.get_metric_history(run_id, key)
        values[key] = next((m.value for m in history if m.step == epoch), None)
    return values


def _record(registry: Registry, result: dict[str, Any]) -> None:
    """The trial's outcome on its child run: final metrics and status tags."""
    run_id = result["mlflow_run_id"]
    metrics = {
        "trial_val_accuracy": result.get("val_accuracy"),
        "trial_val_loss": result.get("val_loss"),
        "trial_epochs_run": result.get("epochs_run"),
        LATENCY_METRIC: result.get("latency_ms"),
    }
    log_metrics(registry, run_id, {k: v for k, v in metrics.items() if v is not None})
    registry.client.set_tag(run_id, STATUS_TAG, result["status"])
    if result["reason"]:
        registry.client.set_tag(run_id, "trial_reason", result["reason"][:5000])
    if result["status"] == "failed":
        registry.client.set_terminated(run_id, status="FAILED")
