"""Every endpoint of the inference service against the real app and the real trained model."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from slipway.contract.card import load_card
from tests.services.inference_helpers import metric_value, ready_client, settings_for


@pytest.fixture(scope="module")
def client(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    log = tmp_path_factory.mktemp("predlog") / "predictions.jsonl"
    settings = settings_for(
        trained_model, staging_source=str(trained_model), prediction_log_path=str(log)
    )
    with ready_client(settings) as c:
        c.app.state.log_path = log
        yield c


@pytest.fixture(scope="module")
def name(client: TestClient) -> str:
    return client.get("/v1/models").json()["default"]


def test_liveness_and_readiness(client: TestClient, name: str) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert set(ready.json()["models"]) == {name, f"{name}-staging"}
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}


def test_models_describe_the_loaded_versions(client: TestClient, trained_model: Path) -> None:
    card = load_card(trained_model)
    body = client.get("/v1/models").json()
    assert body["default"] == card.name
    assert body["models"] == [card.name, f"{card.name}-staging"]
    main, staging = body["details"]
    assert main["name"] == card.name and staging["name"] == f"{card.name}-staging"
    assert main["classes"] == card.classes
    assert main["arch"] == card.arch
    assert main["metrics"] == card.metrics
    assert main["dataset"]["fingerprint"] == card.dataset.fingerprint
    assert main["alias"] == "local" and re.fullmatch(r"[0-9a-f]{12}", main["version"])
    assert main["input_shape"] == list(card.transform.input_shape)
    # What `auto` chose, and that it never had an INT8 model to choose from here.
    assert main["backend"] in ("onnxruntime", "openvino") and main["precision"] == "fp32"
    runtime = main["runtime"]
    assert runtime["requested"] == {"backend": "auto", "precision": "auto"}
    assert runtime["threads"] >= 1 and runtime["int8"] is None


def test_predict_with_the_image_as_the_raw_body(
    client: TestClient, image_paths: list[Path], png_bytes: bytes
) -> None:
    data = image_paths[0].read_bytes()
    raw = client.post("/v1/predict", content=data, headers={"Content-Type": "image/png"})
    assert raw.status_code == 200, raw.text
    multipart = client.post("/v1/predict", files=[("files", ("x.png", data, "image/png"))])
    got, want = raw.json()["predictions"][0], multipart.json()["predictions"][0]
    assert got["file"] == "body" and got["top_class"] == want["top_class"]
    assert got["confidence"] == pytest.approx(want["confidence"], abs=1e-6)
    bad = client.post("/v1/predict", content=b"not an image", headers={"Content-Type": "image/png"})
    assert bad.status_code == 415 and "not a decodable image" in bad.json()["error"]
    empty = client.post("/v1/predict", content=b"", headers={"Content-Type": "image/jpeg"})
    assert empty.status_code == 400
    text = client.post("/v1/predict", content=b"x", headers={"Content-Type": "text/plain"})
    assert text.status_code == 415
    unknown = client.post("/v1/predict", content=data, params={"model": "nope"},
                          headers={"Content-Type": "image/png"})  # fmt: skip
    assert unknown.status_code == 404
    # Answered, refused and failed requests all gave back the queue room they held.
    assert client.app.state.service.worker.pending == 0


def test_predict_one_and_many_files(
    client: TestClient, image_paths: list[Path], trained_model: Path
) -> None:
    classes = load_card(trained_model).classes
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in image_paths[:3]]
    response = client.post("/v1/predict", params={"top_k": 3}, files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [p["file"] for p in body["predictions"]] == [p.name for p in image_paths[:3]]
    for pred in body["predictions"]:
        scores = [s["probability"] for s in pred["top_k"]]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)
        assert pred["top_class"] == pred["top_k"][0]["class"] in classes
        assert pred["confidence"] == pytest.approx(scores[0])
        assert (pred["width"], pred["height"]) == (28, 28)
    one = client.post("/v1/predict", files=[files[0]], params={"top_k": 100}).json()
    assert len(one["predictions"][0]["top_k"]) == len(classes)
    assert sum(s["probability"] for s in one["predictions"][0]["top_k"]) == pytest.approx(1, 1e-4)


def test_staging_is_served_under_its_own_name(client: TestClient, name: str, png_bytes: bytes):
    files = [("files", ("a.png", png_bytes, "image/png"))]
    main = client.post("/v1/predict", files=files).json()
    staging = client.post("/v1/predict", files=files, params={"model": f"{name}-staging"}).json()
    assert staging["model"] == f"{name}-staging" and main["model"] == name
    # Each slot's `auto` may pick another FP32 runtime: the same answer to float tolerance.
    got, want = staging["predictions"][0]["top_k"], main["predictions"][0]["top_k"]
    assert [t["class"] for t in got][:1] == [t["class"] for t in want][:1]
    assert [t["probability"] for t in got] == pytest.approx(
        [t["probability"] for t in want], abs=1e-4
    )
    assert client.get(f"/v2/models/{name}-staging/ready").json()["ready"] is True


def test_v2_server_and_model_metadata(client: TestClient, name: str, trained_model: Path):
    card = load_card(trained_model)
    server = client.get("/v2").json()
    assert set(server) == {"name", "version", "extensions"}
    assert server["extensions"] == ["binary_tensor_data", "classification"]
    meta = client.get(f"/v2/models/{name}").json()
    details = {d["name"]: d for d in client.get("/v1/models").json()["details"]}[name]
    platforms = {"onnxruntime": "onnxruntime_onnx", "openvino": "openvino_onnx"}
    assert meta["name"] == name and meta["platform"] == platforms[details["backend"]]
    assert len(meta["versions"]) == 1
    inputs = {i["name"]: i for i in meta["inputs"]}
    assert inputs["input"] == {
        "name": "input", "datatype": "FP32", "shape": [-1, *card.transform.input_shape],
    }  # fmt: skip
    assert inputs["image"]["datatype"] == "BYTES"
    outputs = {o["name"]: o for o in meta["outputs"]}
    assert outputs["probabilities"]["shape"] == [-1, len(card.classes)]
    version = meta["versions"][0]
    assert client.get(f"/v2/models/{name}/versions/{version}").json() == meta
    assert client.get(f"/v2/models/{name}/versions/nope").status_code == 404
    assert client.get(f"/v2/models/{name}/ready").json() == {"name": name, "ready": True}


def test_v2_infer_with_image_bytes_and_fp32_tensor(
    client: TestClient, name: str, png_bytes: bytes, trained_model: Path
) -> None:
    from PIL import Image

    card = load_card(trained_model)
    encoded = base64.b64encode(png_bytes).decode()
    request = {
        "id": "req-1",
        "inputs": [{"name": "image", "shape": [2], "datatype": "BYTES", "data": [encoded] * 2}],
    }
    response = client.post(f"/v2/models/{name}/infer", json=request)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == name and body["id"] == "req-1"
    assert body["model_version"] == client.get(f"/v2/models/{name}").json()["versions"][0]
    outputs = {o["name"]: o for o in body["outputs"]}
    k = len(card.classes)
    assert outputs["probabilities"]["shape"] == [2, k]
    assert outputs["probabilities"]["datatype"] == "FP32"
    assert len(outputs["probabilities"]["data"]) == 2 * k
    assert outputs["label"] == {
        "name": "label", "shape": [2], "datatype": "BYTES",
        "data": [card.classes[int(np.argmax(outputs["probabilities"]["data"][:k]))]] * 2,
    }  # fmt: skip
    import io

    tensor = card.transform(Image.open(io.BytesIO(png_bytes)))
    fp32 = {
        "inputs": [
            {"name": "input", "shape": [1, *tensor.shape], "datatype": "FP32",
             "data": tensor.ravel().tolist()}
        ],
        "outputs": [{"name": "probabilities"}],
    }  # fmt: skip
    second = client.post(f"/v2/models/{name}/infer", json=fp32).json()
    assert [o["name"] for o in second["outputs"]] == ["probabilities"]
    assert second["id"]  # generated when the request has none
    np.testing.assert_allclose(
        second["outputs"][0]["data"], outputs["probabilities"]["data"][:k], atol=1e-6
    )
    nested = {"inputs": [{**fp32["inputs"][0], "data": tensor[None].tolist()}]}
    assert client.post(f"/v2/models/{name}/infer", json=nested).status_code == 200


def test_metrics_expose_every_family(client: TestClient, name: str, png_bytes: bytes) -> None:
    client.post("/v1/predict", files=[("files", ("a.png", png_bytes, "image/png"))])
    text = client.get("/metrics").text
    for family in (
        "slipway_inference_requests_total", "slipway_inference_request_duration_seconds_bucket",
        "slipway_inference_model_duration_seconds_bucket", "slipway_inference_batch_size_bucket",
        "slipway_inference_queue_depth", "slipway_inference_in_flight_requests",
        "slipway_inference_rejected_total", "slipway_inference_prediction_confidence_bucket",
        "slipway_inference_predictions_total", "slipway_inference_input_brightness_bucket",
        "slipway_inference_model_info", "slipway_inference_model_created_timestamp_seconds",
        "slipway_inference_ready", "slipway_inference_reloads_total",
        "slipway_inference_prediction_log_dropped_total",
        "slipway_inference_prediction_log_written_total",
        "process_cpu_seconds_total", "process_resident_memory_bytes",
    ):  # fmt: skip
        assert re.search(rf"^{family}[{{ ]", text, re.M), family
    assert metric_value(text, "slipway_inference_ready", model=name) == 1
    assert metric_value(text, "slipway_inference_model_info", model=name, alias="local") == 1
    details = {d["name"]: d for d in client.get("/v1/models").json()["details"]}[name]
    info = metric_value(
        text, "slipway_inference_model_info", model=name,
        backend=details["backend"], precision=details["precision"],
    )  # fmt: skip
    assert info == 1
    assert metric_value(text, "slipway_inference_model_created_timestamp_seconds", model=name) > 0
    ok = metric_value(
        text, "slipway_inference_requests_total", model=name, route="/v1/predict", code="2xx"
    )
    assert ok >= 1
    # Label sets exist at 0 before anything happened, so rate() has a series.
    assert 'code="5xx",model="' + name + '",route="/v2/models/{name}/infer"' in text
    assert f'slipway_inference_rejected_total{{model="{name}",reason="queue_full"}} 0.0' in text
    assert f'slipway_inference_rejected_total{{model="{name}",reason="over_budget"}} 0.0' in text


def test_prediction_log_records(client: TestClient, name: str, png_bytes: bytes) -> None:
    import time

    client.post("/v1/predict", files=[("files", ("a.png", png_bytes, "image/png"))])
    path = client.app.state.log_path
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not path.exists():
        time.sleep(0.05)
    time.sleep(0.2)
    record = json.loads(path.read_text().splitlines()[-1])
    fields = {
        "ts", "model", "variant", "version", "route", "top_class", "confidence", "latency_ms",
        "width", "height", "brightness", "contrast",
    }  # fmt: skip
    assert fields <= set(record) <= fields | {"embedding"}  # a sampled one has its embedding
    assert (record["model"], record["variant"]) in ((name, "production"),
                                                    (f"{name}-staging", "canary"))  # fmt: skip
    assert record["width"] == 28 and 0 <= record["brightness"] <= 1
    assert 0 < record["confidence"] <= 1 and record["latency_ms"] > 0


def test_page_and_offline_docs(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'src="/static/app.js"' in page.text
    assert "/v1/predict" in client.get("/static/app.js").text
    docs = client.get("/docs").text
    urls = re.findall(r"""(?:src|href)=["']([^"']+)""", docs) + re.findall(
        r"""url: ?['"]([^'"]+)""", docs
    )
    assert urls and all(u.startswith("/") for u in urls), urls
    for url in urls:
        assert client.get(url).status_code == 200, url
    assert "openapi" in client.get("/openapi.json").json()
    assert "/v2/models/{name}/infer" in client.get("/openapi.json").json()["paths"]


def test_auth_token_guards_the_api_but_not_probes(trained_model: Path, png_bytes: bytes) -> None:
    with ready_client(settings_for(trained_model, auth_token="s3cret")) as c:
        files = [("files", ("a.png", png_bytes, "image/png"))]
        denied = c.post("/v1/predict", files=files)
        assert denied.status_code == 401 and "token" in denied.json()["error"]
        assert c.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = c.post("/v1/predict", files=files, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        name = ok.json()["model"]
        assert c.post(f"/v2/models/{name}/infer", json={}).status_code == 401
        foreign = {"Authorization": b"Bearer s3cr\xc3\xa9t"}  # not ASCII: still a 401, not a 500
        assert c.post(f"/v2/models/{name}/infer", json={}, headers=foreign).status_code == 401
        for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/metrics"):
            assert c.get(path).status_code == 200, path


def test_cors_origins(trained_model: Path) -> None:
    settings = settings_for(trained_model, cors_origins="http://allowed.test")
    with ready_client(settings) as c:
        preflight = {"Origin": "http://allowed.test", "Access-Control-Request-Method": "POST"}
        ok = c.options("/v1/predict", headers=preflight)
        assert ok.headers.get("access-control-allow-origin") == "http://allowed.test"
        other = c.options("/v1/predict", headers={**preflight, "Origin": "http://evil.test"})
        assert "access-control-allow-origin" not in other.headers


def test_a_missing_staging_model_does_not_block_readiness(
    trained_model: Path, tmp_path: Path, png_bytes: bytes
) -> None:
    settings = settings_for(trained_model, staging_source=str(tmp_path / "nowhere"))
    with ready_client(settings, all_models=False) as c:
        name = c.get("/v1/models").json()["default"]
        models = {m["name"]: m for m in c.get("/v1/models").json()["details"]}
        assert models[f"{name}-staging"]["ready"] is False
        staging = c.get(f"/v2/models/{name}-staging/ready")
        assert staging.status_code == 503 and staging.json()["ready"] is False
        files = [("files", ("a.png", png_bytes, "image/png"))]
        refused = c.post("/v1/predict", files=files, params={"model": f"{name}-staging"})
        assert (
            refused.status_code == 503 and "not a slipway model folder" in refused.json()["error"]
        )
        assert c.post("/v1/predict", files=files).status_code == 200
        text = c.get("/metrics").text
        assert metric_value(text, "slipway_inference_ready", model=f"{name}-staging") == 0
        assert metric_value(text, "slipway_inference_ready", model=name) == 1


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_openapi_documents_v2_infer_and_every_ref_resolves(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    refs = set(_refs(document))
    assert "#/components/schemas/InferenceRequest" in refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        node = document
        for part in ref[2:].split("/"):
            assert part in node, f"unresolvable {ref}"
            node = node[part]
    for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        operation = document["paths"][path]["post"]
        body = operation["requestBody"]["content"]
        assert set(body) == {"application/json", "application/octet-stream"}
        headers = [p["name"] for p in operation["parameters"] if p["in"] == "header"]
        assert headers == ["Inference-Header-Content-Length"]
        ok = operation["responses"]["200"]
        assert set(ok["content"]) == {"application/json", "application/octet-stream"}
        assert "Inference-Header-Content-Length" in ok["headers"]
        assert {"400", "404", "413", "415", "503"} <= set(operation["responses"])
    request = document["components"]["schemas"]["InferenceRequest"]
    inputs = request["properties"]["inputs"]["items"]["$ref"].rsplit("/", 1)[1]
    tensor = document["components"]["schemas"][inputs]
    assert set(tensor["required"]) == {"name", "shape", "datatype"}  # data may be binary
