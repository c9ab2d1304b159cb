"""Bad input is a 4xx JSON error with a message, never a 500; good input is served without skew."""

from __future__ import annotations

import base64
import gzip
import io
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from slipway.contract.card import load_card
from slipway.training.export import onnx_session
from tests.services.inference_helpers import ROOT, metric_value, ready_client, settings_for

LIMIT = 200_000
MAX_PIXELS = 1_000_000


@pytest.fixture(scope="module")
def client(trained_model: Path) -> Iterator[TestClient]:
    settings = settings_for(trained_model, max_upload_bytes=LIMIT, max_image_pixels=MAX_PIXELS)
    with ready_client(settings) as c:
        yield c


def _png(size: tuple[int, int], mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, 128).save(buf, "PNG")
    return buf.getvalue()


def _bomb() -> bytes:
    """A PNG of a few hundred bytes whose header claims 30000 x 30000 pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 30_000, 30_000, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * 30_001 * 8, 9)
    signature = b"\x89PNG\r\n\x1a\n"
    return signature + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


BAD_FILES = {
    "zero bytes": (b"", "image/png", 400, "empty"),
    "not an image": (b"hello, this is text", "image/png", 415, "not a decodable image"),
    "truncated": (None, "image/png", 400, "truncated"),
    "too many pixels": (_png((1_500, 1_000)), "image/png", 413, "pixels"),
    "decompression bomb": (_bomb(), "image/png", 413, "pixels"),
    "wrong part type": (None, "text/plain", 415, "not an image"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_uploads_are_4xx_with_a_message(client: TestClient, png_bytes: bytes, case: str):
    payload, content_type, status, words = BAD_FILES[case]
    if payload is None:
        payload = png_bytes[: len(png_bytes) // 2] if case == "truncated" else png_bytes
    response = client.post("/v1/predict", files=[("files", ("x.png", payload, content_type))])
    assert response.status_code == status, response.text
    assert words in response.json()["error"]


def test_request_level_mistakes(client: TestClient, png_bytes: bytes) -> None:
    too_big = client.post("/v1/predict", files=[("files", ("big.png", b"\0" * (LIMIT + 1)))])
    assert too_big.status_code == 413 and "limit" in too_big.json()["error"]
    as_json = client.post("/v1/predict", json={"files": []})
    assert as_json.status_code == 415 and "multipart" in as_json.json()["error"]
    no_files = client.post("/v1/predict", files=[("other", ("a.png", png_bytes, "image/png"))])
    assert no_files.status_code == 422 and "files" in no_files.json()["error"]
    files = [("files", ("a.png", png_bytes, "image/png"))]
    bad_k = client.post("/v1/predict", params={"top_k": 0}, files=files)
    assert bad_k.status_code == 422 and "top_k" in bad_k.json()["error"]
    unknown = client.post("/v1/predict", params={"model": "nope"}, files=files)
    assert unknown.status_code == 404 and "nope" in unknown.json()["error"]
    assert client.get("/v2/models/nope").status_code == 404
    assert client.get("/no/such/path").json() == {"error": "Not Found"}


def test_streamed_upload_over_the_limit_is_413(client: TestClient, png_bytes: bytes) -> None:
    """Without Content-Length (chunked) the size is checked while the body streams in."""

    def chunks() -> Iterator[bytes]:
        boundary = b"--xyz\r\n"
        yield boundary + b'Content-Disposition: form-data; name="files"; filename="a.png"\r\n'
        yield b"Content-Type: image/png\r\n\r\n"
        for _ in range(LIMIT // 10_000 + 2):
            yield b"\0" * 10_000
        yield b"\r\n--xyz--\r\n"

    response = client.post(
        "/v1/predict",
        content=chunks(),
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert response.status_code == 413 and "limit" in response.json()["error"]


def test_empty_multipart_body_is_422(client: TestClient) -> None:
    """The body the OpenAPI document must not call valid: a multipart body with no part."""
    response = client.post(
        "/v1/predict",
        content=b"--xyz--\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert response.status_code == 422 and "files" in response.json()["error"]


def _b64(payload: bytes) -> str:
    return base64.b64encode(payload).decode()


def _kserve_cases(png: bytes, shape: tuple[int, int, int]) -> list[tuple[object, int, str]]:
    """(body, status, words in the error) for `POST /v1/models/{name}:predict`."""
    c, h, w = shape
    zeros = np.zeros(shape).tolist()
    ragged = [[[0.0] * w] * (h - 1) + [[0.0] * (w - 1)]] * c
    return [
        (b"{not json", 400, "not valid JSON"),
        (b"\xff\xfe\x00\x81", 400, "not valid JSON"),
        (b"[" * 50_000 + b"]" * 50_000, 400, "not valid JSON"),
        ([1, 2], 422, "JSON object"),
        ({}, 422, "exactly one of"),
        ({"instances": [_b64(png)], "inputs": [_b64(png)]}, 422, "exactly one of"),
        ({"instances": "abc"}, 422, "non-empty list"),
        ({"instances": []}, 422, "non-empty list"),
        ({"instances": [1]}, 422, "instances[0]"),
        ({"instances": [None]}, 422, "instances[0]"),
        ({"instances": [{"image": 5}]}, 422, "instances[0].image"),
        ({"instances": [{"image": {"b64": 5}}]}, 422, "instances[0].image"),
        ({"instances": [{"picture": _b64(png)}]}, 422, "exactly one of"),
        ({"instances": [{"image": _b64(png), "b64": _b64(png)}]}, 422, "exactly one of"),
        ({"instances": ["@@not base64@@"]}, 400, "base64"),
        ({"instances": [_b64(b"plain text")]}, 415, "not a decodable image"),
        ({"instances": [""]}, 400, "empty"),
        ({"instances": ["data:image/png;base64"]}, 400, "empty"),
        ({"instances": [_b64(png[: len(png) // 2])]}, 400, "truncated"),
        ({"instances": [_b64(_png((1_500, 1_000)))]}, 413, "pixels"),
        ({"instances": [{"b64": _b64(_bomb())}]}, 413, "pixels"),
        ({"instances": [[[[0.0]]]]}, 400, "shape"),
        ({"instances": [np.zeros((c, h + 1, w)).tolist()]}, 400, "shape"),
        ({"instances": [ragged]}, 400, "ragged"),
        ({"instances": [[[["x"] * w] * h] * c]}, 400, "numbers only"),
        ({"instances": [[[[True] * w] * h] * c]}, 400, "numbers only"),
        ({"instances": [[[[10**30] * w] * h] * c]}, 400, "numbers only"),
        ({"instances": [[[[1e39] * w] * h] * c]}, 400, "float32"),
        (b'{"instances": [' + json.dumps(zeros).replace("0.0", "NaN", 1).encode() + b"]}", 400,
         "NaN"),
        ({"instances": [zeros, _b64(png)]}, 400, "mix"),
        ({"instances": [_b64(png)] * 257}, 413, "limit"),
    ]  # fmt: skip


def test_kserve_v1_bad_requests(client: TestClient, png_bytes: bytes, trained_model: Path) -> None:
    name = client.get("/v1/models").json()["default"]
    url = f"/v1/models/{name}:predict"
    shape = load_card(trained_model).transform.input_shape
    for n, (body, status, words) in enumerate(_kserve_cases(png_bytes, shape)):
        if isinstance(body, bytes):
            response = client.post(url, content=body, headers={"Content-Type": "application/json"})
        else:
            response = client.post(url, json=body)
        error = response.json().get("error", "")
        assert (response.status_code, words in error) == (status, True), (n, error)
    wrong_type = client.post(url, content=b"{}", headers={"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415 and "application/json" in wrong_type.json()["error"]
    too_big = client.post(url, json={"instances": ["A" * LIMIT]})
    assert too_big.status_code == 413 and "limit" in too_big.json()["error"]
    assert client.post("/v1/models/nope:predict", json={"instances": [""]}).status_code == 404
    assert client.get("/v1/models/nope").status_code == 404
    assert client.get(f"/v1/models/{name}:predict").status_code == 404
    refused = client.put(url, json={})
    assert refused.status_code == 405 and refused.headers["allow"] == "POST"
    text = client.get("/metrics").text
    assert metric_value(text, "slipway_inference_requests_total", code="5xx") == 0


def test_odd_bearer_tokens_are_401(trained_model: Path) -> None:
    with ready_client(settings_for(trained_model, auth_token="s3cret")) as c:
        for value in ("Bearer s\u00e9cret", "Bearer", "Basic czNjcmV0", "Bearer  ", "s3cret"):
            response = c.get("/v1/models", headers={"Authorization": value.encode("latin-1")})
            assert response.status_code == 401, (value, response.text)
        assert c.get("/v1/models", headers={"Authorization": "Bearer  s3cret "}).status_code == 200


def _infer(client: TestClient, inputs: list[dict], **extra) -> tuple[int, str]:
    name = client.get("/v1/models").json()["default"]
    response = client.post(f"/v2/models/{name}/infer", json={"inputs": inputs, **extra})
    return response.status_code, response.json().get("error", "")


def test_v2_bad_requests(client: TestClient, trained_model: Path) -> None:
    c, h, w = load_card(trained_model).transform.input_shape
    good = {"name": "input", "shape": [1, c, h, w], "datatype": "FP32", "data": [0.0] * (c * h * w)}
    cases = [
        ([{**good, "datatype": "INT64"}], "FP32"),
        ([{**good, "shape": [1, c, h + 1, w]}], "shape"),
        ([{**good, "data": [0.0] * 5}], "do not fill"),
        ([{**good, "data": ["a"] * (c * h * w)}], "numeric"),
        ([{**good, "name": "pixels"}], "unknown input"),
        ([good, good], "exactly one input"),
        ([{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["@@not base64@@"]}],
         "base64"),
        ([{"name": "image", "shape": [1], "datatype": "BYTES",
           "data": [base64.b64encode(b"text").decode()]}], "not a decodable image"),
        ([{"name": "image", "shape": [3], "datatype": "BYTES", "data": ["AA=="]}], "shape"),
    ]  # fmt: skip
    for inputs, words in cases:
        status, error = _infer(client, inputs)
        assert 400 <= status < 500 and words in error, (inputs[0].get("name"), status, error)
    status, error = _infer(client, [good], outputs=[{"name": "embedding"}])
    assert status == 400 and "unknown output" in error
    name = client.get("/v1/models").json()["default"]
    url = f"/v2/models/{name}/infer"
    assert client.post(url, content=b"{not json").status_code == 400
    assert "inputs" in client.post(url, json={"inputs": []}).json()["error"]
    wrong_type = client.post(url, content=b"x", headers={"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415
    text = client.get("/metrics").text
    assert metric_value(text, "slipway_inference_requests_total", code="5xx") == 0


def _binary(header: dict, *chunks: bytes) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(header).encode()
    return head + b"".join(chunks), {"Inference-Header-Content-Length": str(len(head))}


def test_v2_bad_binary_and_encoded_bodies(client: TestClient, trained_model: Path) -> None:
    """The binary tensor data extension and body encodings: every mistake a 4xx, never a 500."""
    c, h, w = load_card(trained_model).transform.input_shape
    size = 4 * c * h * w
    fp32 = {"name": "input", "shape": [1, c, h, w], "datatype": "FP32"}
    sized = {**fp32, "parameters": {"binary_data_size": size}}
    name = client.get("/v1/models").json()["default"]
    url = f"/v2/models/{name}/infer"
    json_type = {"Content-Type": "application/json"}
    cases = [
        (b'{"inputs": [\xff]}', json_type, 400, "not valid UTF-8"),
        ("{}".encode("utf-16"), json_type, 400, "not valid UTF-8"),
        (b"[" * 100_000, json_type, 400, "nested too deeply"),
        (*_binary({"inputs": [fp32]}), 400, "has no data"),
        (*_binary({"inputs": [{**sized, "data": [0.0]}]}, b"\0" * size), 400, "both data"),
        (*_binary({"inputs": [sized]}, b"\0" * (size - 4)), 400, "more than"),
        (*_binary({"inputs": [{**sized, "shape": [2, c, h, w]}]}, b"\0" * size), 400,
         "do not match FP32 shape"),
        (*_binary({"inputs": [{**fp32, "parameters": {"binary_data_size": "12"}}]}), 400,
         "binary_data_size must be a non-negative integer"),
        (*_binary({"inputs": [{**fp32, "parameters": {"binary_data_size": -4}}]}), 400,
         "binary_data_size must be a non-negative integer"),
        (*_binary({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                               "parameters": {"binary_data_size": 6}}]}, b"\x09\0\0\0ab"),
         400, "announces 9 bytes"),
        (*_binary({"inputs": [sized], "parameters": {"binary_data_output": "yes"}},
                  b"\0" * size), 400, "binary_data_output must be true or false"),
        (*_binary({"inputs": [sized], "outputs": [{"name": "label", "parameters":
                   {"binary_data": 1}}]}, b"\0" * size), 400, "binary_data must be true"),
        (*_binary({"inputs": [sized], "outputs": [{"name": "logits", "parameters":
                   {"classification": 0}}]}, b"\0" * size), 400, "positive integer"),
        (*_binary({"inputs": [sized], "outputs": [{"name": "logits"}, {"name": "logits"}]},
                  b"\0" * size), 400, "requested twice"),
        (*_binary({"inputs": [{**sized, "datatype": "UINT8", "parameters":
                   {"binary_data_size": size // 4}}]}, b"\0" * (size // 4 - 1)), 400, "more"),
        (b'{"inputs": []}', {"Inference-Header-Content-Length": "x"}, 400, "non-negative"),
        (gzip.compress(b"\0" * (LIMIT * 2)), {**json_type, "Content-Encoding": "gzip"}, 413,
         "inflated"),
        (gzip.compress(b"{")[:-4], {**json_type, "Content-Encoding": "gzip"}, 400, "truncated"),
    ]  # fmt: skip
    for body, headers, status, words in cases:
        response = client.post(url, content=body, headers=headers)
        assert response.status_code == status, (body[:80], response.text)
        assert words in response.json()["error"], (body[:80], response.json())
    text = client.get("/metrics").text
    assert metric_value(text, "slipway_inference_requests_total", code="5xx") == 0


def test_v2_binary_and_gzip_bodies_are_served(client: TestClient, trained_model: Path) -> None:
    card = load_card(trained_model)
    c, h, w = card.transform.input_shape
    pixels = np.full((1, c, h, w), 128, dtype=np.uint8)
    header = {
        "inputs": [{"name": "input", "shape": [1, c, h, w], "datatype": "UINT8",
                    "parameters": {"binary_data_size": pixels.size}}],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}},
                    {"name": "label"}],
    }  # fmt: skip
    name = client.get("/v1/models").json()["default"]
    url = f"/v2/models/{name}/infer"
    body, headers = _binary(header, pixels.tobytes())
    response = client.post(url, content=body, headers=headers)
    assert response.status_code == 200, response.text
    length = int(response.headers["Inference-Header-Content-Length"])
    answer = json.loads(response.content[:length])
    probs = np.frombuffer(response.content[length:], dtype="<f4")
    assert answer["outputs"][0]["parameters"]["binary_data_size"] == probs.nbytes
    assert answer["outputs"][1]["data"] == [card.classes[int(probs.argmax())]]
    # UINT8 pixels are normalised as the card's transform does: the FP32 tensor agrees.
    tensor = (pixels.astype(np.float32) / 255.0 - np.float32(card.transform.mean[0])) / np.float32(
        card.transform.std[0]
    )
    fp32 = {"name": "input", "shape": [1, c, h, w], "datatype": "FP32"}
    as_json = {
        "inputs": [{**fp32, "data": tensor.ravel().tolist()}],
        "outputs": [{"name": "probabilities"}],
    }
    zipped = client.post(
        url,
        content=gzip.compress(json.dumps(as_json).encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert zipped.status_code == 200 and "application/json" in zipped.headers["content-type"]
    np.testing.assert_allclose(zipped.json()["outputs"][0]["data"], probs, atol=1e-6)


def test_served_input_equals_the_card_transform_and_onnx_output(
    client: TestClient, image_paths: list[Path], trained_model: Path
) -> None:
    """No train/serve skew: the tensor the model sees is `card.transform(image)` exactly."""
    card = load_card(trained_model)
    service = client.app.state.service
    backend = service.main.current.backend
    seen: list[np.ndarray] = []
    original = backend.infer  # what the batcher calls while embeddings are captured

    def recording_infer(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        seen.append(batch.copy())
        return original(batch)

    assert service.worker.embeddings
    backend.infer = recording_infer
    try:
        paths = image_paths[:4]
        files = [("files", (p.name, p.read_bytes(), "image/png")) for p in paths]
        body = client.post("/v1/predict", files=files, params={"top_k": 100}).json()
    finally:
        del backend.infer
    served = np.concatenate(seen)
    expected = np.stack([card.transform(Image.open(p)) for p in paths])
    assert served.dtype == np.float32 and np.array_equal(served, expected)
    logits = onnx_session(trained_model / "model.onnx").run(["logits"], {"input": expected})[0]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    for row, pred in zip(probs, body["predictions"], strict=True):
        got = {s["class"]: s["probability"] for s in pred["top_k"]}
        np.testing.assert_allclose([got[c] for c in card.classes], row, atol=1e-5)


def test_torch_backend_matches_onnxruntime(trained_model: Path, png_bytes: bytes) -> None:
    files = [("files", ("a.png", png_bytes, "image/png"))]
    answers = []
    for backend in ("onnxruntime", "torch"):
        with ready_client(settings_for(trained_model, backend=backend)) as c:
            top = c.post("/v1/predict", files=files, params={"top_k": 100}).json()
            answers.append({s["class"]: s["probability"] for s in top["predictions"][0]["top_k"]})
            platform = c.get(f"/v2/models/{top['model']}").json()["platform"]
            assert (
                platform
                == {"onnxruntime": "onnxruntime_onnx", "torch": "pytorch_torchscript"}[backend]
            )
    for cls, prob in answers[0].items():
        assert answers[1][cls] == pytest.approx(prob, abs=1e-4)


def test_onnxruntime_serving_never_imports_torch(
    trained_model: Path, png_bytes: bytes, tmp_path: Path
) -> None:
    """The CPU serving image has no torch: block it and serve a prediction."""
    script = textwrap.dedent(
        f"""
        import sys
        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith(("torch.", "torchvision")):
                    raise ImportError("torch is blocked in this test")
        sys.meta_path.insert(0, NoTorch())
        from tests.services.inference_helpers import ready_client, settings_for
        png = open(sys.argv[1], "rb").read()
        with ready_client(settings_for({str(trained_model)!r})) as c:
            r = c.post("/v1/predict", files=[("files", ("a.png", png, "image/png"))])
            assert r.status_code == 200, r.text
        assert "torch" not in sys.modules
        print("served", r.json()["predictions"][0]["top_class"])
        """
    )
    sample = tmp_path / "a.png"
    sample.write_bytes(png_bytes)
    out = subprocess.run(
        [sys.executable, "-c", script, str(sample)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("served ")


def test_small_uploads_are_prepared_on_the_loop_large_ones_on_a_thread(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import services.inference.service as service_module
    from services.inference.images import pixel_count

    threaded: list[object] = []
    real = service_module.run_in_threadpool

    async def counting(fn: object, *args: object) -> object:
        threaded.append(fn)
        return await real(fn, *args)

    monkeypatch.setattr(service_module, "run_in_threadpool", counting)
    small, large = _png((28, 28)), _png((500, 400))  # a uniform gray: the same model input
    limit = client.app.state.settings.inline_decode_max_pixels
    assert pixel_count([("s", small)]) <= limit < pixel_count([("l", large)]) == 200_000
    assert pixel_count([("s", small), ("junk", b"not an image")]) == 28 * 28
    answers = []
    for payload in (small, large):
        response = client.post("/v1/predict", files=[("files", ("x.png", payload, "image/png"))])
        assert response.status_code == 200, response.text
        answers.append(response.json()["predictions"][0])
    assert [getattr(fn, "__name__", "") for fn in threaded] == ["prepare_many"]  # the large one
    assert answers[0]["top_class"] == answers[1]["top_class"]
    assert answers[0]["confidence"] == pytest.approx(answers[1]["confidence"], abs=1e-6)
