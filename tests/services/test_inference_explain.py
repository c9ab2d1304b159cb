"""`POST /v1/explain`: occlusion finds the region that decides the class, costs are bounded, and
explanations are shed before predictions."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from services.inference.explain import EXPLAIN_SHED
from services.inference.metrics import EXPLAIN_ROUTE
from services.inference.settings import Settings
from slipway.contract.card import ONNX_FILE, ModelCard
from slipway.contract.preprocessing import Preprocessing
from tests.services.inference_helpers import metric_value, ready_client, settings_for

SIZE = 32
REGION = (slice(8, 16), slice(16, 24))  # rows, cols: the only pixels the model looks at


def region_model(folder: Path) -> Path:
    """A two-class ONNX model whose class-b logit is 4x the mean of REGION (normalised), so
    a bright patch there and nowhere else decides the class."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.zeros((SIZE * SIZE, 2), np.float32)
    mask = np.zeros((SIZE, SIZE), np.float32)
    mask[REGION] = 1.0
    weights[:, 1] = 4.0 * mask.ravel() / mask.sum()
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "w", "b"], ["logits"]),
        ],
        "region",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [
            numpy_helper.from_array(weights, "w"),
            numpy_helper.from_array(np.zeros(2, np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / ONNX_FILE))
    prep = Preprocessing(image_size=SIZE, channels=1, mean=(0.5,), std=(0.5,))
    ModelCard(arch="region", classes=["a", "b"], preprocessing=prep.to_dict()).save(folder)
    return folder


def region_png() -> bytes:
    pixels = np.full((SIZE, SIZE), 40, np.uint8)
    pixels[REGION] = 255
    out = io.BytesIO()
    Image.fromarray(pixels, "L").save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def region_folder(tmp_path: Path) -> Path:
    return region_model(tmp_path / "region")


def _settings(folder: Path, **extra: object) -> Settings:
    return settings_for(folder, backend="onnxruntime", precision="fp32", **extra)


def test_occlusion_highlights_the_region_that_decides_the_class(region_folder: Path) -> None:
    with ready_client(_settings(region_folder, explain_patch=4, explain_stride=4)) as client:
        response = client.post(
            EXPLAIN_ROUTE, content=region_png(), headers={"Content-Type": "image/png"}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["top_class"] == "b" and body["method"] == "occlusion"
        grid = np.array(body["grid"])
        assert grid.shape == (8, 8) and body["forwards"] == 65
        origin = np.array(body["grid_origin"])
        inside = np.zeros_like(grid, dtype=bool)
        rows = (origin >= 8) & (origin < 16)
        cols = (origin >= 16) & (origin < 24)
        inside[np.ix_(rows, cols)] = True
        assert grid[inside].min() > 0.01  # hiding any part of the region costs probability
        assert np.abs(grid[~inside]).max() < 1e-6  # hiding anything else changes nothing
        overlay = Image.open(io.BytesIO(base64.b64decode(body["overlay_png"])))
        assert overlay.format == "PNG" and overlay.size == (224, 224)

        png = client.post(
            EXPLAIN_ROUTE,
            content=region_png(),
            headers={"Content-Type": "image/png", "Accept": "image/png"},
        )
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(png.content)).size == (224, 224)

        text = client.get("/metrics").text
        assert metric_value(text, "slipway_inference_requests_total", route=EXPLAIN_ROUTE) == 2
        # The occluded copies are not traffic: one explanation is not 65 predictions.
        assert metric_value(text, "slipway_inference_predictions_total") == 0


def test_a_grid_over_the_forward_limit_is_a_400(region_folder: Path) -> None:
    with ready_client(_settings(region_folder, explain_max_forwards=50)) as client:
        response = client.post(
            EXPLAIN_ROUTE + "?patch=2&stride=1",
            content=region_png(),
            headers={"Content-Type": "image/png"},
        )
        assert response.status_code == 400
        assert "limit is 50" in response.json()["error"]
        assert (
            client.post(
                EXPLAIN_ROUTE + "?patch=64",
                content=region_png(),
                headers={"Content-Type": "image/png"},
            ).status_code
            == 400
        )
        ok = client.post(
            EXPLAIN_ROUTE + "?patch=8&stride=8",
            content=region_png(),
            headers={"Content-Type": "image/png"},
        )
        assert ok.status_code == 200 and ok.json()["forwards"] == 17


def test_explain_is_shed_before_predict(region_folder: Path) -> None:
    settings = _settings(region_folder, queue_budget_ms=100)  # explanations: 25 ms
    with ready_client(settings) as client:
        service = client.app.state.service
        worker, slot = service.worker, service.main
        headers = {"Content-Type": "image/png"}
        first = client.post(EXPLAIN_ROUTE, content=region_png(), headers=headers)
        assert first.status_code == 200, (first.text, worker.loop_lag_s, worker.image_cost_s)
        worker.image_cost_s = 0.005  # 5 ms per image through the inference thread
        worker.admit(slot, 6)  # six images being decoded: 30 ms of queue ahead
        try:
            shed = client.post(EXPLAIN_ROUTE, content=region_png(), headers=headers)
            assert shed.status_code == 503 and int(shed.headers["Retry-After"]) >= 1
            assert "budget of 25 ms" in shed.json()["error"]
            # The same queue still admits a prediction: (6 + 1) x 5 ms = 35 ms <= 100 ms.
            predicted = client.post("/v1/predict", content=region_png(), headers=headers)
            assert predicted.status_code == 200
            text = client.get("/metrics").text
            assert metric_value(text, "slipway_inference_rejected_total", reason=EXPLAIN_SHED) == 1
            assert metric_value(text, "slipway_inference_rejected_total", reason="over_budget") == 0
        finally:
            worker.release(6)


@pytest.mark.slow
def test_grad_cam_comes_with_the_torch_backend_only(trained_model: Path, png_bytes: bytes) -> None:
    headers = {"Content-Type": "image/png"}
    with ready_client(settings_for(trained_model, backend="torch")) as client:
        body = client.post(EXPLAIN_ROUTE, content=png_bytes, headers=headers).json()
        cam = np.array(body["gradcam"]["grid"])
        assert cam.ndim == 2 and cam.size >= 1 and (cam >= 0).all()  # ReLU'd
        overlay = base64.b64decode(body["gradcam"]["overlay_png"])
        assert Image.open(io.BytesIO(overlay)).size == (224, 224)
        assert np.array(body["grid"]).shape == (15, 15)  # occlusion too, the default grid
    with ready_client(settings_for(trained_model, backend="onnxruntime")) as client:
        body = client.post(EXPLAIN_ROUTE, content=png_bytes, headers=headers).json()
        assert body["gradcam"] is None and body["forwards"] == 226
