from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from slipway.config.training import TrainConfig
from slipway.contract.card import load_card
from slipway.errors import ModelError
from slipway.training.loop import train

pytestmark = pytest.mark.slow


def test_trained_model_beats_chance_clearly(trained_model: Path) -> None:
    card = load_card(trained_model)
    report = json.loads((trained_model / "report.json").read_text())
    # 10 balanced classes: chance is 0.10.
    assert report["accuracy"] > 0.5
    assert card.metrics["test_accuracy"] == pytest.approx(report["accuracy"])
    assert card.dataset.fingerprint == report["dataset_fingerprint"]
    assert card.versions["torch"]
    assert (trained_model / "report.md").read_text().startswith("# Evaluation on the test split")


class _KilledError(Exception):
    pass


def _kill_after(epoch: int):
    def on_epoch(result) -> None:
        if result.epoch == epoch:
            raise _KilledError

    return on_epoch


def test_killed_run_resumes_exactly_where_it_stopped(demo_data: Path, tmp_path: Path) -> None:
    config = TrainConfig(
        arch="mobilenet_v3_small", epochs=2, batch_size=64, max_batches_per_epoch=3
    )
    with pytest.raises(_KilledError):
        train(demo_data, tmp_path / "m", config, on_epoch=_kill_after(1))
    resumed = train(demo_data, tmp_path / "m", config)
    assert resumed.resumed_from_epoch == 1
    assert [h.epoch for h in resumed.history] == [1, 2]

    fresh = train(demo_data, tmp_path / "fresh", config)
    assert fresh.resumed_from_epoch == 0
    assert resumed.history[1].train_loss == pytest.approx(fresh.history[1].train_loss, rel=1e-4)
    assert resumed.history[1].val_loss == pytest.approx(fresh.history[1].val_loss, rel=1e-4)


def test_more_epochs_extend_a_finished_run(demo_data: Path, tmp_path: Path) -> None:
    config = TrainConfig(
        arch="mobilenet_v3_small", epochs=1, batch_size=64, max_batches_per_epoch=2
    )
    first = train(demo_data, tmp_path / "m", config)
    config.epochs = 2
    second = train(demo_data, tmp_path / "m", config)
    assert second.resumed_from_epoch == 1
    assert second.history[0] == first.history[0] and len(second.history) == 2


def test_a_different_run_refuses_the_checkpoint(demo_data: Path, tmp_path: Path) -> None:
    config = TrainConfig(
        arch="mobilenet_v3_small", epochs=1, batch_size=64, max_batches_per_epoch=1
    )
    train(demo_data, tmp_path / "m", config)
    with pytest.raises(ModelError, match="lr"):
        train(demo_data, tmp_path / "m", TrainConfig(**{**config.__dict__, "lr": 0.1}))
    shutil.rmtree(tmp_path / "m" / "checkpoints")
    train(demo_data, tmp_path / "m", TrainConfig(**{**config.__dict__, "lr": 0.1}))


def test_early_stopping_records_the_stop(demo_data: Path, tmp_path: Path) -> None:
    config = TrainConfig(
        arch="mobilenet_v3_small",
        epochs=4,
        batch_size=64,
        lr=5.0,
        patience=1,
        max_batches_per_epoch=1,
    )
    result = train(demo_data, tmp_path / "m", config)
    assert result.stopped_early
    assert len(result.history) < 4
    again = train(demo_data, tmp_path / "m", config)
    assert again.stopped_early and len(again.history) == len(result.history)


def test_model_folder_carries_drift_reference(trained_model: Path) -> None:
    from slipway.contract.reference import load_reference

    ref = load_reference(trained_model)
    card = load_card(trained_model)
    assert ref["fingerprint"] == card.dataset.fingerprint
    assert sum(ref["brightness"]["counts"]) == card.dataset.counts["train"]
    assert 0.0 < ref["confidence"]["mean"] <= 1.0
    assert sum(ref["predicted_class_frequencies"].values()) == pytest.approx(1.0)
