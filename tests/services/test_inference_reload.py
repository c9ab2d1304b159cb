"""Readiness and hot reload: from the MLflow registry (SQLite) and from a local folder; versions
registered in the previous format (a folder of run artifacts) still load."""

from __future__ import annotations

import gc
import json
import shutil
import time
import weakref
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.inference import create_app
from tests.helpers import eventually
from tests.services.inference_helpers import (
    metric_value,
    ready_client,
    register_folder_version,
    register_model,
    settings_for,
    wait_ready,
)

NAME = "fashion-mnist"


def _version(client: TestClient) -> str:
    return client.get("/v1/models").json()["details"][0].get("version", "")


def _predict(client: TestClient, png: bytes) -> dict:
    response = client.post("/v1/predict", files=[("files", ("a.png", png, "image/png"))])
    assert response.status_code == 200, response.text
    return response.json()


def _broken_copy(model_dir: Path, target: Path) -> Path:
    shutil.copytree(model_dir, target, ignore=shutil.ignore_patterns("checkpoints", "*.pt"))
    (target / "model.onnx").write_bytes(b"this is not an onnx file")
    return target


@pytest.mark.slow
def test_registry_alias_readiness_reload_and_refusal(
    trained_model: Path, tmp_path: Path, png_bytes: bytes
) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    settings = settings_for(
        f"models:/{NAME}@production",
        mlflow_tracking_uri=uri,
        model_cache_dir=str(tmp_path / "cache"),
        reload_interval_s=0.3,
    )
    register_model(uri, NAME, trained_model, "staging")  # no production alias yet
    with TestClient(create_app(settings)) as client:
        # Not ready while the alias does not exist; liveness never depends on the model.
        assert client.get("/healthz").status_code == 200
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503 and not_ready.headers["Retry-After"]
        assert client.get("/v2/health/ready").status_code == 503
        early = client.post("/v1/predict", files=[("files", ("a.png", png_bytes, "image/png"))])
        assert early.status_code == 503 and "not ready" in early.json()["error"]

        first = register_model(uri, NAME, trained_model, "production")
        wait_ready(client)
        assert _version(client) == first
        assert _predict(client, png_bytes)["version"] == first
        about = client.get("/v1/models").json()["details"][0]
        assert about["name"] == NAME and about["alias"] == "production"

        second = register_model(uri, NAME, trained_model, "production")
        eventually(lambda: _version(client) == second)
        assert _predict(client, png_bytes)["version"] == second
        text = client.get("/metrics").text
        assert metric_value(text, "slipway_inference_reloads_total", result="success") == 1
        assert metric_value(text, "slipway_inference_model_info", version=second) == 1
        assert f'version="{first}"' not in text  # the old version's info series is gone

        broken = _broken_copy(trained_model, tmp_path / "broken")
        third = register_model(uri, NAME, broken, "production")

        def refused() -> bool:
            text = client.get("/metrics").text
            return metric_value(text, "slipway_inference_reloads_total", result="failure") == 1

        eventually(refused)
        assert _version(client) == second  # the old version keeps serving
        assert _predict(client, png_bytes)["version"] == second
        time.sleep(1.0)  # a refused version is not retried on every poll
        text = client.get("/metrics").text
        assert metric_value(text, "slipway_inference_reloads_total", result="failure") == 1
        assert third not in {_version(client)}


def test_local_folder_reloads_when_its_files_change(model_copy: Path, png_bytes: bytes) -> None:
    settings = settings_for(model_copy, reload_interval_s=0.2)
    with ready_client(settings) as client:
        before = _version(client)
        first = weakref.ref(client.app.state.service.main.current)
        card_path = model_copy / "model_card.json"
        card = json.loads(card_path.read_text())
        card["metrics"]["note"] = 1.0
        card_path.write_text(json.dumps(card))
        eventually(lambda: _version(client) not in ("", before), timeout=30)
        after = _version(client)
        assert client.get("/v1/models").json()["details"][0]["metrics"]["note"] == 1.0
        assert first() is None  # the swapped-out version was not kept by the frozen heap
        assert _predict(client, png_bytes)["version"] == after

        (model_copy / "model.onnx").write_bytes(b"garbage")

        def refused() -> bool:
            text = client.get("/metrics").text
            return metric_value(text, "slipway_inference_reloads_total", result="failure") >= 1

        eventually(refused, timeout=30)
        assert _version(client) == after
        assert _predict(client, png_bytes)["version"] == after
        # What a live version holds stays out of full collections while it serves.
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0  # handed back to the collector on shutdown


def test_two_registries_never_share_a_cached_version(trained_model: Path, tmp_path: Path) -> None:
    """A fresh registry's "version 1" is not mistaken for another registry's cached one."""
    from services.inference.source import ModelSource
    from slipway.contract.card import load_card

    other = tmp_path / "other"
    shutil.copytree(trained_model, other, ignore=shutil.ignore_patterns("checkpoints", "*.pt"))
    card = json.loads((other / "model_card.json").read_text())
    card["metrics"]["marker"] = 42.0
    (other / "model_card.json").write_text(json.dumps(card))
    cache = tmp_path / "cache"
    fetched = []
    for n, folder in enumerate((trained_model, other)):
        uri = f"sqlite:///{tmp_path}/mlflow{n}.db"
        assert register_folder_version(uri, NAME, folder, "production", tmp_path / f"a{n}") == "1"
        source = ModelSource(f"models:/{NAME}@production", uri, str(cache))
        fetched.append(source.fetch(source.resolve()))
    assert fetched[0] != fetched[1]
    assert "marker" not in load_card(fetched[0]).metrics
    assert load_card(fetched[1]).metrics["marker"] == 42.0


def test_previous_format_versions_load_or_say_how_to_re_register(
    trained_model: Path, tmp_path: Path, png_bytes: bytes
) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    old = register_folder_version(uri, NAME, trained_model, "production", tmp_path / "a")
    settings = settings_for(
        f"models:/{NAME}/{old}", mlflow_tracking_uri=uri, model_cache_dir=str(tmp_path / "c")
    )
    with ready_client(settings) as client:
        assert _predict(client, png_bytes)["version"] == old
        assert client.get("/v1/models").json()["details"][0]["alias"] == "pinned"

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no model here")
    bad = register_folder_version(uri, NAME, empty, "broken", tmp_path / "b")
    source = f"models:/{NAME}/{bad}"
    settings = settings_for(source, mlflow_tracking_uri=uri, model_cache_dir=str(tmp_path / "c"))
    with TestClient(create_app(settings)) as client:
        eventually(lambda: "re-register" in client.get("/readyz").text)
        error = client.post("/v1/predict", files=[("files", ("a.png", png_bytes, "image/png"))])
        assert error.status_code == 503
        message = error.json()["error"]
        assert f"{source} holds neither an MLmodel nor a model_card.json" in message
        assert "`slipway registry register FOLDER --name NAME`" in message
        assert "\n" not in message
