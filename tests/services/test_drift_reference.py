"""Finding the reference: a file, a model folder, or a registered model in a real MLflow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from services.drift.reference import ReferenceError, resolve_reference

REFERENCE = {
    "classes": ["a", "b"],
    "brightness": {"edges": [0, 0.5, 1], "counts": [3, 1], "mean": 0.3, "values": [0.1, 0.2]},
    "contrast": {"edges": [0, 0.5, 1], "counts": [2, 2], "mean": 0.5, "values": [0.4, 0.6]},
    "confidence": {"edges": [0, 0.5, 1], "counts": [1, 3], "mean": 0.8, "values": [0.7, 0.9]},
    "predicted_class_frequencies": {"a": 0.25, "b": 0.75},
}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    target = tmp_path / "model"
    target.mkdir()
    (target / "reference.json").write_text(json.dumps(REFERENCE))
    (target / "model_card.json").write_text("{}")
    return target


def test_file_and_folder_give_the_same_reference(folder: Path) -> None:
    assert resolve_reference(str(folder)) == resolve_reference(str(folder / "reference.json"))
    assert resolve_reference(str(folder))["predicted_class_frequencies"]["b"] == 0.75


def test_missing_or_incomplete_references_are_refused(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ReferenceError, match="no reference given"):
        resolve_reference("")
    with pytest.raises(ReferenceError, match="reference not found"):
        resolve_reference(str(tmp_path / "nowhere"))
    (folder / "reference.json").write_text(json.dumps({"brightness": {}}))
    with pytest.raises(ReferenceError, match="lacks contrast, confidence"):
        resolve_reference(str(folder))


def _register(client: Any, experiment: str, folder: Path) -> str:
    run = client.create_run(experiment)
    client.log_artifacts(run.info.run_id, str(folder), "model")
    version = client.create_model_version(
        "fashion", source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    client.set_registered_model_alias("fashion", "production", version.version)
    return str(version.version)


def test_registry_alias_resolves_through_mlflow_and_is_followed(
    folder: Path, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    from services.drift.app import State
    from services.drift.settings import Settings

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    experiment = client.create_experiment("drift", artifact_location=str(tmp_path / "artifacts"))
    client.create_registered_model("fashion")
    _register(client, experiment, folder)

    assert resolve_reference("models:/fashion@production", uri) == REFERENCE
    with pytest.raises(ReferenceError, match=r"cannot resolve models:/fashion@canary: .*canary"):
        resolve_reference("models:/fashion@canary", uri)

    settings = Settings(
        reference="models:/fashion@production",
        mlflow_tracking_uri=uri,
        prediction_log_path=tmp_path / "predictions.jsonl",
        reference_refresh_s=1e-6,
    )
    state = State(settings)
    pinned = State(settings.model_copy(update={"reference": "models:/fashion/1"}))
    newest = State(settings.model_copy(update={"reference": "models:/fashion"}))
    for each in (state, pinned, newest):
        each.cycle()
        assert each.monitor is not None and each.monitor.reference == REFERENCE
    newer = dict(REFERENCE, predicted_class_frequencies={"a": 0.9, "b": 0.1})
    (folder / "reference.json").write_text(json.dumps(newer))
    assert _register(client, experiment, folder) == "2"
    for each in (state, pinned, newest):
        each.cycle()
    assert state.monitor.reference == newer, "the monitor must follow the moved alias"
    assert newest.monitor.reference == newer, "models:/NAME follows the newest version"
    assert pinned.monitor.reference == REFERENCE, "a pinned version keeps its own reference"
