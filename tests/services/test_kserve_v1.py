"""KServe V1 routes against the service as a process: plain httpx, then KServe's own client."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from slipway.contract.card import load_card
from slipway.procs import ServerProcess
from tests.services.inference_helpers import inference_server, metric_value

TOKEN = "kserve-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROUTE = "/v1/models/{name}:predict"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kserve-v1")


@pytest.fixture(scope="module")
def server(trained_model: Path, workdir: Path) -> Iterator[ServerProcess]:
    env = {
        "SLIPWAY_MODEL_SOURCE": str(trained_model),
        "SLIPWAY_MODEL_NAME": "fashion",
        "SLIPWAY_STAGING_SOURCE": str(trained_model),
        "SLIPWAY_RELOAD_INTERVAL_S": "0",
        "SLIPWAY_THREADS": "1",
        "SLIPWAY_MAX_QUEUE": "8",
        "SLIPWAY_FAULT_INJECTION": "true",
        "SLIPWAY_AUTH_TOKEN": TOKEN,
        "SLIPWAY_PREDICTION_LOG_PATH": str(workdir / "predictions.jsonl"),
    }
    with inference_server(env, workdir / "server.log") as proc:
        proc.wait_ready()
        deadline = time.monotonic() + 60  # the staging model loads after readiness
        while httpx.get(proc.url + "/readyz").json()["models"].get("fashion-staging") is None:
            assert time.monotonic() < deadline, proc.output(2000)
            time.sleep(0.1)
        yield proc


def _post(server: ServerProcess, name: str, body: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/models/{name}:predict", json=body, headers=AUTH, timeout=60, **kwargs
    )


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode()


def test_list_and_readiness(server: ServerProcess, trained_model: Path) -> None:
    listing = httpx.get(server.url + "/v1/models", headers=AUTH).json()
    assert listing["models"] == ["fashion", "fashion-staging"]  # KServe V1: names
    assert listing["default"] == "fashion"
    assert [d["name"] for d in listing["details"]] == listing["models"]
    assert listing["details"][0]["classes"] == load_card(trained_model).classes
    for name in listing["models"]:
        ready = httpx.get(f"{server.url}/v1/models/{name}", headers=AUTH)
        assert ready.status_code == 200 and ready.json() == {"name": name, "ready": True}
    unknown = httpx.get(server.url + "/v1/models/nope", headers=AUTH)
    assert unknown.status_code == 404 and "fashion-staging" in unknown.json()["error"]


def test_every_image_form_gives_the_multipart_answer(
    server: ServerProcess, png_bytes: bytes, trained_model: Path
) -> None:
    classes = load_card(trained_model).classes
    multipart = httpx.post(
        server.url + "/v1/predict",
        files={"files": ("a.png", png_bytes, "image/png")},
        params={"top_k": len(classes)},
        headers=AUTH,
    ).json()["predictions"][0]
    expected = [
        dict((s["class"], s["probability"]) for s in multipart["top_k"])[c] for c in classes
    ]
    data = _b64(png_bytes)
    forms = [
        {"image": {"b64": data}},
        {"image": data},
        {"b64": data},
        {"data": data},
        {"data": {"b64": data}, "key": "extra keys are ignored"},
        data,
        "data:image/png;base64," + data,
    ]
    response = _post(server, "fashion", {"instances": forms})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == len(forms)
    for pred in predictions:
        assert set(pred) == {"label", "index", "confidence", "probabilities"}
        np.testing.assert_allclose(pred["probabilities"], expected, atol=1e-6)
        assert pred["label"] == classes[pred["index"]] == multipart["top_class"]
        assert pred["confidence"] == pytest.approx(max(pred["probabilities"]))
        assert sum(pred["probabilities"]) == pytest.approx(1, abs=1e-4)
    staging = _post(server, "fashion-staging", {"inputs": [data]})
    assert staging.status_code == 200
    np.testing.assert_allclose(
        staging.json()["predictions"][0]["probabilities"], expected, atol=1e-6
    )


def test_tensor_instances_match_the_image_path(
    server: ServerProcess, png_bytes: bytes, trained_model: Path
) -> None:
    tensor = load_card(trained_model).transform(Image.open(io.BytesIO(png_bytes)))
    by_image = _post(server, "fashion", {"instances": [_b64(png_bytes)]}).json()
    by_tensor = _post(server, "fashion", {"instances": [tensor.tolist(), tensor.tolist()]})
    assert by_tensor.status_code == 200, by_tensor.text
    first, second = by_tensor.json()["predictions"]
    assert first == second
    np.testing.assert_allclose(
        first["probabilities"], by_image["predictions"][0]["probabilities"], atol=1e-6
    )


def test_metrics_log_and_auth_apply(server: ServerProcess, png_bytes: bytes, workdir: Path) -> None:
    before = httpx.get(server.url + "/metrics").text
    assert _post(server, "fashion", {"instances": [_b64(png_bytes)] * 2}).status_code == 200
    after = httpx.get(server.url + "/metrics").text
    count = {"model": "fashion", "route": ROUTE, "code": "2xx"}
    total = "slipway_inference_requests_total"
    assert metric_value(after, total, **count) == metric_value(before, total, **count) + 1
    duration = "slipway_inference_request_duration_seconds_count"
    assert metric_value(after, duration, model="fashion", route=ROUTE) >= 1
    assert metric_value(after, "slipway_inference_predictions_total", model="fashion") >= 2

    log = workdir / "predictions.jsonl"
    deadline = time.monotonic() + 10
    records: list[dict[str, Any]] = []
    while time.monotonic() < deadline and len(records) < 2:
        lines = log.read_text().splitlines() if log.exists() else []
        records = [json.loads(line) for line in lines if ROUTE in line]
        time.sleep(0.1)
    assert len(records) >= 2 and {r["model"] for r in records} <= {"fashion", "fashion-staging"}

    url = f"{server.url}/v1/models/fashion"
    assert httpx.get(url).status_code == 401
    denied = httpx.post(url + ":predict", json={"instances": [_b64(png_bytes)]})
    assert denied.status_code == 401 and "token" in denied.json()["error"]


@pytest.mark.slow
def test_overload_is_shed_with_503_and_retry_after(server: ServerProcess, png_bytes: bytes) -> None:
    url = server.url
    fault = url + "/admin/fault"
    httpx.post(fault, json={"mode": "slow", "seconds": 0.4}, headers=AUTH).raise_for_status()
    body = {"instances": [_b64(png_bytes)]}

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=24)) as c:
            predict = f"{url}/v1/models/fashion:predict"
            return await asyncio.gather(
                *(c.post(predict, json=body, headers=AUTH) for _ in range(20))
            )

    try:
        responses = asyncio.run(burst())
    finally:
        httpx.post(fault, json={"mode": "off"}, headers=AUTH).raise_for_status()
    codes = [r.status_code for r in responses]
    assert set(codes) == {200, 503}, codes
    for shed in (r for r in responses if r.status_code == 503):
        assert shed.headers["Retry-After"] and "overloaded" in shed.json()["error"]
    text = httpx.get(url + "/metrics").text
    assert metric_value(
        text, "slipway_inference_rejected_total", reason="queue_full"
    ) == codes.count(503)


_KSERVE_CALLS = """
import asyncio, json, sys
import httpx
from kserve import InferenceRESTClient, RESTConfig

url, headers, body = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])


async def calls():
    client = InferenceRESTClient(RESTConfig(protocol="v1", timeout=60))
    async with client:
        ready = await client.is_model_ready(url, "fashion", headers=headers)
        answer = await client.infer(url, body, model_name="fashion", headers=headers)
        try:
            await client.infer(url, body, model_name="nope", headers=headers)
        except httpx.HTTPStatusError as exc:
            unknown = str(exc)
        try:
            await client.infer(url, {"instances": [1]}, model_name="fashion", headers=headers)
        except httpx.HTTPStatusError as exc:
            bad = str(exc)
    return [ready, answer, unknown, bad]


print(json.dumps(asyncio.run(calls())))
"""


def test_kserve_rest_client_speaks_v1(server: ServerProcess, png_bytes: bytes) -> None:
    """KServe's own client (`kserve.InferenceRESTClient`, protocol v1) against the service.

    In a process of its own: kserve's generated gRPC stubs and tritonclient's (imported by
    other tests of this session) register the same protobuf symbols and cannot share one.
    """
    if importlib.util.find_spec("kserve") is None:
        pytest.skip("the kserve package (dev extra) is not installed")
    body = {"instances": [{"image": {"b64": _b64(png_bytes)}}]}
    argv = [sys.executable, "-c", _KSERVE_CALLS, server.url, json.dumps(AUTH), json.dumps(body)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    ready, answer, unknown, bad = json.loads(done.stdout.strip().splitlines()[-1])
    assert ready is True
    (prediction,) = answer["predictions"]
    assert prediction["confidence"] == pytest.approx(max(prediction["probabilities"]))
    assert "unknown model 'nope'" in unknown and "404" in unknown
    assert "instances[0]" in bad and "422" in bad
