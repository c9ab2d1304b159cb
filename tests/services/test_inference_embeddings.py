"""Every backend returns the embedding with the logits; the per-version windows and gauges."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.inference.backends import load_backend
from services.inference.embeddings import EmbeddingWindows
from services.inference.metrics import Metrics
from slipway.contract.card import load_card
from slipway.embedding.projection import load_projection
from tests.services.inference_helpers import metric_value, settings_for

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino", "torch"])
def test_every_backend_returns_logits_and_the_same_embedding(
    trained_model: Path, backend: str
) -> None:
    shape = load_card(trained_model).transform.input_shape
    batch = np.random.default_rng(0).standard_normal((3, *shape)).astype(np.float32)
    expected = load_backend("onnxruntime", trained_model, "cpu", 1).infer(batch)
    runtime = load_backend(backend, trained_model, "cpu", 1)
    logits, embedding = runtime.infer(batch)
    assert embedding is not None and embedding.shape == (3, 512)
    np.testing.assert_allclose(embedding, expected[1], atol=1e-4)
    np.testing.assert_allclose(logits, expected[0], atol=1e-4)
    np.testing.assert_allclose(runtime.forward(batch), logits, atol=1e-6)  # logits unchanged


def test_windows_sample_test_and_forget_replaced_versions(trained_model: Path) -> None:
    projection = load_projection(trained_model)
    assert projection is not None
    metrics = Metrics()
    settings = settings_for(
        trained_model, embedding_sample_rate=1.0, embedding_window=60, embedding_min_samples=40
    )
    windows = EmbeddingWindows(settings, metrics)
    rng = np.random.default_rng(0)
    far = projection.mean + 50 * rng.standard_normal((60, projection.features)).astype(np.float32)
    for vector in far:
        assert windows.add("m", "1", projection, vector) is not None
    (result,) = windows.evaluate().values()
    assert result.p_value < 0.01 and result.n_current == 60
    text = metrics_text(metrics)
    assert (
        metric_value(text, "slipway_inference_embedding_drift", version="1", stat="p_value") < 0.01
    )
    assert metric_value(text, "slipway_inference_embedding_window_size", version="1") == 60
    # A new version starts an empty window; the old version's series disappear.
    windows.add("m", "2", projection, far[0])
    text = metrics_text(metrics)
    assert 'version="1"' not in text
    assert windows.evaluate() == {}  # too few samples of version 2 to test


def test_sampling_keeps_about_the_configured_share(trained_model: Path) -> None:
    projection = load_projection(trained_model)
    settings = settings_for(trained_model, embedding_sample_rate=0.1)
    windows = EmbeddingWindows(settings, Metrics())
    vector = np.zeros(512, np.float32)
    kept = sum(windows.add("m", "1", projection, vector) is not None for _ in range(2000))
    assert 140 <= kept <= 260


def metrics_text(metrics: Metrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()


def test_sampled_requests_log_their_projected_embedding(
    trained_model: Path, png_bytes: bytes, tmp_path: Path
) -> None:
    import json

    from tests.services.inference_helpers import ready_client

    log_path = tmp_path / "predictions.jsonl"
    settings = settings_for(
        trained_model, embedding_sample_rate=1.0, prediction_log_path=str(log_path)
    )
    with ready_client(settings) as client:
        response = client.post(
            "/v1/predict", content=png_bytes, headers={"Content-Type": "image/png"}
        )
        assert response.status_code == 200
        service = client.app.state.service
    record = json.loads(log_path.read_text().splitlines()[-1])
    projection = load_projection(trained_model)
    assert projection is not None and len(record["embedding"]) == projection.dims
    window = service.embeddings._windows[record["model"]]
    np.testing.assert_allclose(record["embedding"], window.values[-1], atol=1e-4)
