"""Embedding drift, live: a shift the pixel statistics cannot see fires the embedding alert.

The real service, drift monitor, Prometheus and Alertmanager with the chart's rules. Normal
traffic (every demo image) keeps the embedding test quiet. Then only two of the ten classes are
served, each image's gray levels mapped onto those of a normal image, so the brightness and
contrast of the shifted traffic are the normal ones: the drift monitor's brightness and contrast
tests stay below their thresholds while the MMD test of the embeddings fires
InferenceEmbeddingDrift.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.e2e.processes import wait_for
from tests.e2e.scenario import drift_summary, logged_predictions
from tests.e2e.stack import DRIFT_JOB, INFERENCE_JOB, MODEL_NAME, Stack, monitoring_stack
from tests.e2e.traffic import Payload, Traffic

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

WINDOW = 200  # embeddings per version the service tests
SERVICE_ENV = {
    "SLIPWAY_EMBEDDING_SAMPLE_RATE": "1",
    "SLIPWAY_EMBEDDING_WINDOW": str(WINDOW),
    "SLIPWAY_EMBEDDING_MIN_SAMPLES": str(WINDOW),
    "SLIPWAY_EMBEDDING_DRIFT_INTERVAL_S": "1",
}
RULE_PARAMS: dict[str, Any] = {
    "rateWindow": "10s",
    "driftFor": "2s",
    "embeddingDriftFor": "2s",
    "noReadyFor": "1m",
    "driftMonitorDownFor": "1m",
}
P_VALUE = "slipway_inference_embedding_drift"
SHIFT_CLASSES = (1, 8)  # two of the ten class folders, in sorted order
TIMEOUT = 90.0


def _gray(body: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body)).convert("L"), dtype=np.float64)


def restyle(body: bytes, like: bytes) -> bytes:
    """`body`'s picture with the mean and standard deviation of `like`'s gray levels."""
    pixels, target = _gray(body), _gray(like)
    for _ in range(40):  # clipping moves the statistics; repeated rounds converge
        spread = pixels.std() or 1.0
        pixels = np.clip((pixels - pixels.mean()) / spread * target.std() + target.mean(), 0, 255)
    out = io.BytesIO()
    Image.fromarray(pixels.round().astype(np.uint8), "L").save(out, format="PNG")
    return out.getvalue()


def two_class_traffic(demo_data: Path, normal: list[Payload]) -> list[Payload]:
    """One request per normal one: the n-th shows an image of the two classes with the n-th
    normal image's brightness and contrast, so both traffics have the same pixel statistics."""
    folders = sorted(d for d in demo_data.iterdir() if d.is_dir())
    files = sorted(f for i in SHIFT_CLASSES for f in folders[i].rglob("*.png"))
    return [
        (f"two-{n}.png", restyle(files[n % len(files)].read_bytes(), like[1]), "image/png")
        for n, like in enumerate(normal)
    ]


def _gauge(stack: Stack, stat: str) -> float | None:
    result = stack.query(f'min({P_VALUE}{{job="{INFERENCE_JOB}", stat="{stat}"}})')
    return float(result[0]["value"][1]) if result else None


def _settled_window(stack: Stack) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        summary = drift_summary(stack)
        logged = logged_predictions(stack)
        return summary if summary["records_read"] >= logged and summary["judged"] else None

    return wait_for("the drift monitor to judge the window", done, TIMEOUT)


def _firing(stack: Stack) -> list[dict[str, Any]]:
    alerts = stack.active_alerts("InferenceEmbeddingDrift")
    return [a for a in alerts if a["state"] == "firing"]


def _service_p_value(stack: Stack) -> float:
    text = httpx.get(stack.inference + "/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(P_VALUE + "{") and 'stat="p_value"' in line:
            return float(line.split()[-1])
    raise AssertionError("no embedding p-value exported yet")


@pytest.fixture(scope="module")
def stack(
    trained_model: Path, demo_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, Traffic, list[Payload]]]:
    work = tmp_path_factory.mktemp("embedding-drift")
    with monitoring_stack(trained_model, work, RULE_PARAMS, SERVICE_ENV) as live:
        traffic = Traffic(demo_data, live.inference)
        yield live, traffic, two_class_traffic(demo_data, traffic.normal)


def test_a_shift_the_pixel_statistics_miss_fires_the_embedding_alert(
    stack: tuple[Stack, Traffic, list[Payload]],
) -> None:
    live, traffic, shifted = stack
    # Normal traffic: every demo image once.
    report = traffic.normal_batch(len(traffic.normal))
    assert report.ok == report.requests, report.summary()
    normal = _settled_window(live)
    wait_for("the embedding test of normal traffic", lambda: _gauge(live, "p_value"), TIMEOUT)
    normal_p = _service_p_value(live)
    assert normal_p >= 0.01, f"normal traffic judged drifted: p = {normal_p}"
    assert not normal["features"]["brightness"]["detected"]
    assert live.active_alerts("InferenceEmbeddingDrift") == []
    # The drift monitor runs the same test on the embeddings the service logged.
    assert normal["embedding"]["points"] == len(traffic.normal)
    assert not normal["embedding"]["detected"], normal["embedding"]

    # Two classes only, restyled to the normal brightness and contrast; as many requests as
    # the drift monitor's window holds, so it judges only shifted traffic.
    report = traffic.send(shifted)
    assert report.ok == report.requests, report.summary()
    judged = _settled_window(live)
    (alert,) = wait_for("InferenceEmbeddingDrift to fire", lambda: _firing(live), TIMEOUT)
    assert alert["labels"]["model"] == MODEL_NAME and alert["labels"]["version"]
    assert _service_p_value(live) < 0.01
    assert (_gauge(live, "mmd") or 0) > 0
    # The pixel statistics do not see it: brightness and contrast stay under their thresholds,
    # in the monitor's own verdict and in the gauges Prometheus scraped.
    for feature in ("brightness", "contrast"):
        result = judged["features"][feature]
        assert not result["detected"], (feature, result)
        assert result["score"] < result["threshold"], (feature, result)
        detected = live.query(f'slipway_drift_detected{{job="{DRIFT_JOB}", feature="{feature}"}}')
        assert detected and float(detected[0]["value"][1]) == 0, (feature, detected)
    # ... and so does the drift monitor, from the log, in its summary and its report.
    assert judged["embedding"]["detected"] and judged["embedding"]["p_value"] < 0.01
    page = httpx.get(live.drift + "/report", timeout=10, trust_env=False).text
    assert "Embedding drift" in page and "DRIFT" in page.split("Embedding drift")[1]
    print(
        f"\nembedding p-value normal {normal_p:.3f} -> shifted {_service_p_value(live):.4f}; "
        f"brightness PSI {judged['features']['brightness']['score']:.3f}, "
        f"contrast PSI {judged['features']['contrast']['score']:.3f}, "
        f"KS p {judged['features']['brightness']['pvalue']:.3f} / "
        f"{judged['features']['contrast']['pvalue']:.3f}"
    )
