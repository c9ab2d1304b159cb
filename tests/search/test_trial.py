"""Trials against a real MLflow on SQLite: a failed trial is a row, not a crash; a killed trial
resumes from its checkpoint in the same run; a finished trial is reused by its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from slipway.config.experiment import DataConfig, TrackingConfig
from slipway.config.search import SearchConfig
from slipway.registry.client import Registry
from slipway.search import pruning
from slipway.search.parent import children, finish_search, start_search
from slipway.search.selection import SearchError
from slipway.search.trial import run_trial

SEARCH = SearchConfig.model_validate(
    {"space": {"training.lr": {"choice": [3e-3]}}, "pruning": {"rule": "none"}}
)
TRAINING = {"epochs": 2, "batch_size": 32, "image_size": 16, "max_batches_per_epoch": 2}


@pytest.fixture
def prepared(demo_data: Path, tmp_path: Path) -> tuple[Path, TrackingConfig]:
    from slipway.steps import prepare

    prepare(DataConfig(source=str(demo_data)), tmp_path / "dataset")
    return tmp_path / "dataset", TrackingConfig(uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_a_failed_trial_is_recorded_and_no_winner_is_explained(
    prepared: tuple[Path, TrackingConfig], tmp_path: Path
) -> None:
    dataset, tracking = prepared
    parent, key = start_search(dataset, SEARCH, TRAINING, tracking, {})
    broken = {**TRAINING, "weights_path": str(tmp_path / "missing.pt")}
    trial = {"index": 0, "round": 0, "params": {"training.lr": 3e-3}}
    result = run_trial(dataset, trial, broken, SEARCH, tracking, parent, key, tmp_path / "ck")
    assert result["status"] == "failed" and "missing.pt" in result["reason"]
    registry = Registry(tracking.uri)
    [run] = children(registry, registry.experiment_id(tracking.experiment), parent)
    assert run.info.status == "FAILED" and run.data.tags["trial_status"] == "failed"
    with pytest.raises(SearchError, match="no trial completed"):
        finish_search([result], SEARCH, tracking, parent, 2)
    assert registry.client.get_run(parent).info.status == "FAILED"


@pytest.mark.slow
def test_a_killed_trial_resumes_and_a_finished_one_is_reused(
    prepared: tuple[Path, TrackingConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset, tracking = prepared
    parent, key = start_search(dataset, SEARCH, TRAINING, tracking, {})
    trial = {"index": 0, "round": 0, "params": {"training.lr": 3e-3}}
    args = (dataset, trial, TRAINING, SEARCH, tracking, parent, key, tmp_path / "ck")

    def killed(self: object, epoch: object) -> None:
        raise SystemExit("the pod was killed after epoch 1's checkpoint")

    with monkeypatch.context() as patch:
        patch.setattr(pruning.SiblingPruner, "__call__", killed)
        with pytest.raises(SystemExit):
            run_trial(*args)
    registry = Registry(tracking.uri)
    [first] = children(registry, registry.experiment_id(tracking.experiment), parent)

    resumed = run_trial(*args)
    assert resumed["status"] == "completed" and not resumed["reused"]
    assert resumed["mlflow_run_id"] == first.info.run_id  # the same run continues
    steps = [m.step for m in registry.client.get_metric_history(first.info.run_id, "val_loss")]
    assert sorted(steps) == [1, 2]
    assert Path(resumed["model_path"], "model.pt").is_file()

    again = run_trial(*args)
    assert again["reused"] and again["mlflow_run_id"] == first.info.run_id
    assert again["val_accuracy"] == pytest.approx(resumed["val_accuracy"])
    assert len(children(registry, registry.experiment_id(tracking.experiment), parent)) == 1
