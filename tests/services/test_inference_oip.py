"""The Open Inference Protocol with the clients ML engineers use: tritonclient over HTTP (binary
tensor data extension and JSON) and over gRPC, against the service under uvicorn with its gRPC
port, serving a real trained model. Every answer must equal `/v1/predict` to 1e-5.

This process talks gRPC through tritonclient's stubs only: the service's own stubs
(`slipway.oip.grpc_predict_v2_pb2`) register the same `inference.*` protobuf names and cannot be
loaded next to them, so they run in the server process alone.
"""

from __future__ import annotations

import base64
import http.client
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from PIL import Image

from slipway.contract.card import load_card
from slipway.procs import ServerProcess
from tests.services.inference_helpers import grpc_target, inference_server, metric_value

assert "slipway.oip.grpc_predict_v2_pb2" not in sys.modules, __doc__
tritonhttp = pytest.importorskip("tritonclient.http")
tritongrpc = pytest.importorskip("tritonclient.grpc")
from tritonclient.grpc import service_pb2, service_pb2_grpc  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

TOKEN = "s3cret"


@pytest.fixture(scope="module")
def server(
    trained_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    work = tmp_path_factory.mktemp("oip")
    env = {
        "SLIPWAY_MODEL_SOURCE": str(trained_model),
        "SLIPWAY_RELOAD_INTERVAL_S": "0",
        "SLIPWAY_THREADS": "1",
        "SLIPWAY_PREDICTION_LOG_PATH": str(work / "predictions.jsonl"),
    }
    with inference_server(env, work / "server.log") as proc:
        proc.wait_ready()
        yield proc


@pytest.fixture(scope="module")
def name(server: ServerProcess) -> str:
    return httpx.get(server.url + "/v1/models").json()["default"]


@pytest.fixture(scope="module")
def http_client(server: ServerProcess) -> tritonhttp.InferenceServerClient:
    return tritonhttp.InferenceServerClient(server.url.removeprefix("http://"))


@pytest.fixture(scope="module")
def grpc_client(server: ServerProcess) -> tritongrpc.InferenceServerClient:
    return tritongrpc.InferenceServerClient(grpc_target(server))


@pytest.fixture(scope="module")
def images(image_paths: list[Path]) -> list[Path]:
    return image_paths[:4]


@pytest.fixture(scope="module")
def expected(server: ServerProcess, images: list[Path]) -> tuple[list[str], np.ndarray]:
    """The classes and the [N, K] probabilities `/v1/predict` answers for `images`."""
    classes = httpx.get(server.url + "/v1/models").json()["details"][0]["classes"]
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in images]
    body = httpx.post(server.url + "/v1/predict", files=files, params={"top_k": 1000}).json()
    rows = []
    for prediction in body["predictions"]:
        scores = {s["class"]: s["probability"] for s in prediction["top_k"]}
        rows.append([scores[c] for c in classes])
    return classes, np.asarray(rows, dtype=np.float32)


def _tensor(images: list[Path], trained_model: Path) -> np.ndarray:
    card = load_card(trained_model)
    return np.stack([card.transform(Image.open(p)) for p in images])


def _pixels(images: list[Path], trained_model: Path) -> np.ndarray:
    """The transform's uint8 stage (mode and size) as [N, C, H, W]."""
    card = load_card(trained_model).transform
    arrays = [np.asarray(card.resize(Image.open(p))) for p in images]
    return np.stack([a[None] if a.ndim == 2 else a.transpose(2, 0, 1) for a in arrays])


def _http_inputs(kind: str, images: list[Path], model: Path, binary: bool) -> list:
    if kind == "image":
        files = [p.read_bytes() for p in images]
        data = files if binary else [base64.b64encode(f) for f in files]
        tensor = tritonhttp.InferInput("image", [len(files)], "BYTES")
        tensor.set_data_from_numpy(np.array(data, dtype=object), binary_data=binary)
        return [tensor]
    array = _tensor(images, model) if kind == "FP32" else _pixels(images, model)
    tensor = tritonhttp.InferInput("input", list(array.shape), kind)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return [tensor]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("kind", ["image", "FP32", "UINT8"])
def test_http_matches_v1_predict(
    http_client, name: str, images: list[Path], expected, trained_model: Path, kind, binary
) -> None:
    classes, probs = expected
    result = http_client.infer(name, _http_inputs(kind, images, trained_model, binary))
    np.testing.assert_allclose(result.as_numpy("probabilities"), probs, atol=1e-5)
    labels = [label.decode() for label in result.as_numpy("label")]
    assert labels == [classes[i] for i in probs.argmax(axis=1)]
    assert result.as_numpy("logits").shape == probs.shape
    # No outputs named: tritonclient asks for all of them in binary (binary_data_output).
    outputs = result.get_response()["outputs"]
    assert all("binary_data_size" in o.get("parameters", {}) for o in outputs)


def test_http_requested_outputs_and_classification(
    http_client, name: str, images: list[Path], expected, trained_model: Path
) -> None:
    classes, probs = expected
    outputs = [
        tritonhttp.InferRequestedOutput("probabilities", class_count=3),
        tritonhttp.InferRequestedOutput("label", binary_data=False),
    ]
    inputs = _http_inputs("image", images, trained_model, True)
    result = http_client.infer(name, inputs, outputs=outputs)
    response = result.get_response()
    assert [o["name"] for o in response["outputs"]] == ["probabilities", "label"]
    assert "data" in response["outputs"][1]  # the JSON one
    _check_classification(result.as_numpy("probabilities"), probs, classes, 3)
    assert [label for label in result.as_numpy("label")] == [
        classes[i] for i in probs.argmax(axis=1)
    ]


def _check_classification(got: np.ndarray, probs: np.ndarray, classes: list[str], k: int):
    """Triton's classification: BYTES [N, k] of "<value>:<index>:<label>", best first."""
    assert got.shape == (len(probs), k)
    for row, want in zip(got, probs, strict=True):
        parts = [(item.decode() if isinstance(item, bytes) else item).split(":") for item in row]
        indices = [int(index) for _, index, _ in parts]
        assert indices == list(np.argsort(-want, kind="stable")[:k])
        np.testing.assert_allclose([float(v) for v, _, _ in parts], want[indices], atol=1e-5)
        assert [label for _, _, label in parts] == [classes[i] for i in indices]


def test_binary_response_on_the_wire(server: ServerProcess, name: str, images: list[Path]):
    """The extension as written: header length, JSON, then the raw tensors in output order."""
    png = images[0].read_bytes()
    raw = len(png).to_bytes(4, "little") + png
    header = {
        "inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw)}}],
        "outputs": [{"name": "label", "parameters": {"binary_data": True}},
                    {"name": "probabilities", "parameters": {"binary_data": True}}],
    }  # fmt: skip
    head = json.dumps(header).encode()
    response = httpx.post(
        f"{server.url}/v2/models/{name}/infer",
        content=head + raw,
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    length = int(response.headers["Inference-Header-Content-Length"])
    body = json.loads(response.content[:length])
    (label, probs) = body["outputs"]
    rest = response.content[length:]
    size = label["parameters"]["binary_data_size"]
    text = rest[4:size]
    assert int.from_bytes(rest[:4], "little") == len(text) and text.decode().isprintable()
    values = np.frombuffer(rest[size:], dtype="<f4")
    assert values.size == probs["shape"][1] == len(rest[size:]) // 4
    assert values.sum() == pytest.approx(1.0, abs=1e-5)


def test_grpc_matches_v1_predict(
    grpc_client, name: str, images: list[Path], expected, trained_model: Path
) -> None:
    classes, probs = expected
    assert grpc_client.is_server_live() and grpc_client.is_server_ready()
    assert grpc_client.is_model_ready(name)
    meta = grpc_client.get_server_metadata(as_json=True)
    assert set(meta["extensions"]) >= {"binary_tensor_data", "classification"}
    model = grpc_client.get_model_metadata(name, as_json=True)
    assert {i["name"]: i["datatype"] for i in model["inputs"]} == {
        "input": "FP32",
        "image": "BYTES",
    }
    image = tritongrpc.InferInput("image", [len(images)], "BYTES")
    image.set_data_from_numpy(np.array([p.read_bytes() for p in images], dtype=object))
    array = _tensor(images, trained_model)
    tensor = tritongrpc.InferInput("input", list(array.shape), "FP32")
    tensor.set_data_from_numpy(array)
    for inputs in ([image], [tensor]):
        result = grpc_client.infer(name, inputs, request_id="grpc-1")
        np.testing.assert_allclose(result.as_numpy("probabilities"), probs, atol=1e-5)
        labels = [label.decode() for label in result.as_numpy("label")]
        assert labels == [classes[i] for i in probs.argmax(axis=1)]
        assert result.get_response().id == "grpc-1"
    outputs = [tritongrpc.InferRequestedOutput("logits", class_count=2)]
    result = grpc_client.infer(name, [image], outputs=outputs)
    assert [o.name for o in result.get_response().outputs] == ["logits"]
    logits = grpc_client.infer(name, [image]).as_numpy("logits")
    top = result.as_numpy("logits")
    for row, want in zip(top, logits, strict=True):
        index = int(row[0].decode().split(":")[1])
        assert index == int(np.argmax(want)) and row[0].decode().endswith(classes[index])


def _stub(server: ServerProcess) -> service_pb2_grpc.GRPCInferenceServiceStub:
    return service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(grpc_target(server)))


def test_grpc_typed_contents_as_kserve_sends_them(
    server: ServerProcess, name: str, images: list[Path], expected, trained_model: Path
) -> None:
    """Inputs in `contents` (fp32_contents, bytes_contents) instead of raw_input_contents."""
    _, probs = expected
    stub = _stub(server)
    array = _tensor(images, trained_model)
    fp32 = service_pb2.ModelInferRequest(model_name=name)
    tensor = fp32.inputs.add(name="input", datatype="FP32", shape=list(array.shape))
    tensor.contents.fp32_contents.extend(array.ravel().tolist())
    files = service_pb2.ModelInferRequest(model_name=name)
    tensor = files.inputs.add(name="image", datatype="BYTES", shape=[len(images)])
    tensor.contents.bytes_contents.extend(p.read_bytes() for p in images)
    for request in (fp32, files):
        reply = stub.ModelInfer(request)
        index = [o.name for o in reply.outputs].index("probabilities")
        got = np.frombuffer(reply.raw_output_contents[index], dtype="<f4").reshape(probs.shape)
        np.testing.assert_allclose(got, probs, atol=1e-5)


def test_grpc_bad_requests_are_invalid_argument_not_internal(
    server: ServerProcess, name: str, images: list[Path]
) -> None:
    stub = _stub(server)
    png = images[0].read_bytes()

    def request(**tensor) -> service_pb2.ModelInferRequest:
        message = service_pb2.ModelInferRequest(model_name=name)
        message.inputs.add(**tensor)
        return message

    wrong_size = request(name="input", datatype="FP32", shape=[1, 1, 32, 32])
    wrong_size.raw_input_contents.append(b"\0" * 100)
    cut_short = request(name="image", datatype="BYTES", shape=[1])
    cut_short.raw_input_contents.append((len(png) + 10).to_bytes(4, "little") + png)
    too_many = request(name="image", datatype="BYTES", shape=[1])
    too_many.raw_input_contents.extend([b"", b""])
    not_image = request(name="image", datatype="BYTES", shape=[1])
    not_image.raw_input_contents.append((4).to_bytes(4, "little") + b"text")
    no_data = request(name="image", datatype="BYTES", shape=[1])
    typed = request(name="input", datatype="FP32", shape=[1, 2])
    typed.inputs[0].contents.fp32_contents.extend([0.5])
    odd_type = request(name="input", datatype="BF16", shape=[1])
    odd_type.raw_input_contents.append(b"\0\0")
    negative = request(name="input", datatype="FP32", shape=[-1, 1, 32, 32])
    negative.raw_input_contents.append(b"")
    classify_label = request(name="image", datatype="BYTES", shape=[1])
    classify_label.raw_input_contents.append(len(png).to_bytes(4, "little") + png)
    classify_label.outputs.add(name="label").parameters["classification"].int64_param = 2
    cases = {
        "wrong_size": (wrong_size, "bytes do not match"),
        "cut_short": (cut_short, "announces"),
        "too_many": (too_many, "raw_input_contents for 1 inputs"),
        "not_image": (not_image, "not a decodable image"),
        "no_data": (no_data, "do not fill"),
        "typed": (typed, "do not fill"),
        "odd_type": (odd_type, "unknown datatype"),
        "negative": (negative, "non-negative"),
        "classify_label": (classify_label, "classification applies"),
    }
    for case, (message, words) in cases.items():
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(message)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (case, caught.value)
        assert words in caught.value.details(), (case, caught.value.details())
    huge = request(name="image", datatype="BYTES", shape=[1])  # over MAX_UPLOAD_BYTES (10 MiB)
    huge.raw_input_contents.append(b"\0" * (11 * 1024 * 1024))
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(huge)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    channel = grpc.insecure_channel(grpc_target(server))
    for method in ("ModelInfer", "ModelMetadata"):
        raw = channel.unary_unary(f"/inference.GRPCInferenceService/{method}")
        with pytest.raises(grpc.RpcError) as caught:
            raw(b"\x0a\x02\xff\xfe")  # field 1, a string, as invalid UTF-8
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value
        assert f"not a valid inference.{method}Request" in caught.value.details()
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelInfer(service_pb2.ModelInferRequest(model_name="nope"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND and "nope" in caught.value.details()
    with pytest.raises(grpc.RpcError) as caught:
        stub.ModelMetadata(service_pb2.ModelMetadataRequest(name=name, version="v0"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    text = httpx.get(server.url + "/metrics").text
    assert metric_value(text, "slipway_inference_requests_total", route="grpc", code="5xx") == 0
    assert metric_value(text, "slipway_inference_requests_total", route="grpc", code="4xx") >= 10


def test_http_bad_bodies_are_4xx_and_the_connection_stays_usable(
    server: ServerProcess, name: str, images: list[Path]
) -> None:
    """What tritonclient users hit: a 500 on binary bodies that closed the connection."""
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    head = json.dumps(
        {"inputs": [{"name": "input", "shape": [1, 1, 32, 32], "datatype": "FP32",
                     "parameters": {"binary_data_size": 100}}]}
    ).encode()  # fmt: skip
    length = {"Inference-Header-Content-Length": str(len(head))}
    json_type = {"Content-Type": "application/json"}
    cases = [
        (b'\xff\xfe{"inputs": []}', json_type, 400, "UTF-8"),
        (b"\x89PNG\r\n\x1a\n\0\0", json_type, 400, "UTF-8"),
        (b'{"inputs": []}', {"Inference-Header-Content-Length": "999"}, 400, "past the end"),
        (b'{"inputs": []}', {"Inference-Header-Content-Length": "-1"}, 400, "non-negative"),
        (head + b"\0" * 100, length, 400, "do not match"),
        (head + b"\0" * 10, length, 400, "more than"),
        (head + b"\0" * 200, length, 400, "belong to no tensor"),
        (b"\0" * 64, {"Content-Type": "application/octet-stream"}, 415, "Inference-Header"),
        (b"{}", {**json_type, "Content-Encoding": "br"}, 415, "Content-Encoding"),
        (b"not gzip", {**json_type, "Content-Encoding": "gzip"}, 400, "gzip"),
    ]
    socket_used = None
    for body, headers, status, words in cases:
        connection.request("POST", f"/v2/models/{name}/infer", body=body, headers=headers)
        response = connection.getresponse()
        error = json.loads(response.read())["error"]
        assert (response.status, words in error) == (status, True), (body[:40], error)
        assert response.getheader("connection") != "close"
        socket_used = socket_used or connection.sock
        assert connection.sock is socket_used  # the same connection, never reopened
    png = images[0].read_bytes()
    good = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                        "data": [base64.b64encode(png).decode()]}]}  # fmt: skip
    connection.request("POST", f"/v2/models/{name}/infer", body=json.dumps(good))
    response = connection.getresponse()
    assert response.status == 200 and json.loads(response.read())["outputs"]
    assert connection.sock is socket_used
    text = httpx.get(server.url + "/metrics").text
    assert metric_value(text, "slipway_inference_requests_total", code="5xx") == 0


def test_grpc_calls_reach_the_metrics_and_the_prediction_log(
    server: ServerProcess, grpc_client, http_client, name: str, images: list[Path]
) -> None:
    image = tritongrpc.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array([images[0].read_bytes()], dtype=object))
    grpc_client.infer(name, [image])
    http_client.infer(name, _http_inputs("image", images[:1], Path(), True))
    text = httpx.get(server.url + "/metrics").text
    ok = metric_value(text, "slipway_inference_requests_total", route="grpc", code="2xx")
    assert ok >= 1
    assert metric_value(text, "slipway_inference_request_duration_seconds_count", route="grpc") >= 1
    log = Path(server.env["SLIPWAY_PREDICTION_LOG_PATH"])
    routes = [json.loads(line)["route"] for line in log.read_text().splitlines()]
    assert "grpc" in routes and "/v2/models/{name}/infer" in routes


@pytest.mark.slow
def test_auth_token_over_grpc_and_rest(trained_model: Path, tmp_path: Path) -> None:
    env = {
        "SLIPWAY_MODEL_SOURCE": str(trained_model),
        "SLIPWAY_RELOAD_INTERVAL_S": "0",
        "SLIPWAY_THREADS": "1",
        "SLIPWAY_AUTH_TOKEN": TOKEN,
    }
    with inference_server(env, tmp_path / "auth.log") as proc:
        proc.wait_ready()
        client = tritongrpc.InferenceServerClient(grpc_target(proc))
        assert client.is_server_live() and client.is_server_ready()  # probes stay open
        name = httpx.get(proc.url + "/v1/models", headers={"Authorization": f"Bearer {TOKEN}"})
        model = name.json()["default"]
        for call in (
            lambda headers: client.get_model_metadata(model, headers=headers),
            lambda headers: client.is_model_ready(model, headers=headers),
            lambda headers: client.get_server_metadata(headers=headers),
        ):
            for wrong in (None, {"authorization": "Bearer nope"}):
                with pytest.raises(InferenceServerException) as caught:
                    call(wrong)
                assert "UNAUTHENTICATED" in str(caught.value.status())
            call({"authorization": f"Bearer {TOKEN}"})
        image = tritongrpc.InferInput("input", [1, 1, 32, 32], "FP32")
        image.set_data_from_numpy(np.zeros((1, 1, 32, 32), np.float32))
        with pytest.raises(InferenceServerException) as caught:
            client.infer(model, [image])
        assert "bearer token" in caught.value.message()
        headers = {"authorization": f"Bearer {TOKEN}"}
        assert client.infer(model, [image], headers=headers).as_numpy("label").shape == (1,)
        rest = tritonhttp.InferenceServerClient(proc.url.removeprefix("http://"))
        with pytest.raises(InferenceServerException) as caught:
            rest.get_model_metadata(model)
        assert "401" in str(caught.value.status()) or "bearer" in str(caught.value).lower()
        text = httpx.get(proc.url + "/metrics").text
        assert metric_value(text, "slipway_inference_requests_total", route="grpc", code="4xx")
