"""The canary over gRPC (tritonclient against the service process), and a candidate that leaves
the registry: when its alias is deleted every request goes back to production, without errors.

This process talks gRPC through tritonclient's stubs only (see test_inference_oip.py).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from services.inference.variants import VARIANT_HEADER, sticky_share
from slipway.procs import ServerProcess
from tests.helpers import eventually
from tests.services.inference_helpers import (
    grpc_target,
    inference_server,
    metric_value,
    ready_client,
    register_model,
    settings_for,
)

assert "slipway.oip.grpc_predict_v2_pb2" not in sys.modules
tritongrpc = pytest.importorskip("tritonclient.grpc")

KEY = "x-slipway-client-key"
WEIGHT = 0.5


@pytest.fixture(scope="module")
def candidate(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("candidate") / "model"
    shutil.copytree(trained_model, target, ignore=shutil.ignore_patterns("checkpoints", "*.pt"))
    card = json.loads((target / "model_card.json").read_text())
    card["preprocessing"]["mean"] = [0.6]
    (target / "model_card.json").write_text(json.dumps(card))
    return target


@pytest.fixture(scope="module")
def server(
    trained_model: Path, candidate: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    work = tmp_path_factory.mktemp("canary-grpc")
    env = {
        "SLIPWAY_MODEL_SOURCE": str(trained_model),
        "SLIPWAY_STAGING_SOURCE": str(candidate),
        "SLIPWAY_CANARY_MODE": "canary",
        "SLIPWAY_CANARY_WEIGHT": str(WEIGHT),
        "SLIPWAY_RELOAD_INTERVAL_S": "0",
        "SLIPWAY_THREADS": "1",
    }
    with inference_server(env, work / "server.log") as proc:
        proc.wait_ready()
        eventually(lambda: None not in httpx.get(proc.url + "/readyz").json()["models"].values())
        yield proc


def test_grpc_model_infer_honours_the_canary_and_the_client_key(
    server: ServerProcess, image_paths: list[Path]
) -> None:
    models = httpx.get(server.url + "/v1/models").json()
    name = models["default"]
    versions = {d["name"]: d["version"] for d in models["details"]}
    client = tritongrpc.InferenceServerClient(grpc_target(server))
    image = tritongrpc.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array([image_paths[0].read_bytes()], dtype=object))
    keys = [f"user-{n}" for n in range(50)]
    expected = {k: f"{name}-staging" if sticky_share(k) < WEIGHT else name for k in keys}
    for key in keys:
        result = client.infer(name, [image], headers={KEY: key}).get_response()
        assert (result.model_name, result.model_version) == (expected[key], versions[expected[key]])
    # A pinned version is never split; the staging model by name is the canary.
    canary_key = next(k for k, v in expected.items() if v != name)
    pinned = client.infer(name, [image], model_version=versions[name], headers={KEY: canary_key})
    assert pinned.get_response().model_name == name

    text = httpx.get(server.url + "/metrics").text
    to_canary = sum(v != name for v in expected.values())
    labels = {"route": "grpc", "code": "2xx"}
    staged = metric_value(text, "slipway_inference_requests_total", model=f"{name}-staging",
                          variant="canary", **labels)  # fmt: skip
    assert staged == to_canary
    production = metric_value(text, "slipway_inference_requests_total", model=name,
                              variant="production", **labels)  # fmt: skip
    assert production == len(keys) - to_canary + 1
    assert metric_value(text, "slipway_inference_canary_weight", model=name) == WEIGHT


@pytest.mark.slow
def test_deleting_the_staging_alias_sends_everything_to_production(
    trained_model: Path, candidate: Path, tmp_path: Path, png_bytes: bytes
) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    name = "fashion"
    register_model(uri, name, trained_model, "production")
    staged = register_model(uri, name, candidate, "staging")
    settings = settings_for(
        f"models:/{name}@production",
        staging_source=f"models:/{name}@staging",
        mlflow_tracking_uri=uri,
        model_cache_dir=str(tmp_path / "cache"),
        reload_interval_s=0.2,
        canary_mode="canary",
        canary_weight=1.0,
    )

    def variant(client: TestClient) -> str:
        answer = client.post(
            "/v1/predict", content=png_bytes, headers={"Content-Type": "image/png"}
        )
        assert answer.status_code == 200, answer.text
        return answer.headers[VARIANT_HEADER]

    def weight(client: TestClient) -> float:
        text = client.get("/metrics").text
        return metric_value(text, "slipway_inference_canary_weight", model=name)

    with ready_client(settings) as client:
        assert {variant(client) for _ in range(5)} == {"canary"}
        assert weight(client) == 1.0
        MlflowClient(uri, uri).delete_registered_model_alias(name, "staging")  # rolled back
        eventually(lambda: weight(client) == 0.0, 20)
        assert {variant(client) for _ in range(5)} == {"production"}
        text = client.get("/metrics").text
        assert metric_value(text, "slipway_inference_requests_total", code="5xx") == 0
        MlflowClient(uri, uri).set_registered_model_alias(name, "staging", staged)
        eventually(lambda: weight(client) == 1.0, 20)
        assert variant(client) == "canary"
