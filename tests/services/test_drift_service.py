"""The drift monitor on real images: in process, as a real service process, and from the CLI."""

from __future__ import annotations

import json
import math
import random
import subprocess
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image, ImageOps

from services.drift.monitor import DriftMonitor
from services.drift.settings import Settings
from slipway.contract.preprocessing import image_stats
from slipway.contract.reference import prediction_reference, write_reference
from slipway.data.reference import dataset_reference
from slipway.data.scan import scan_dataset
from tests.e2e.processes import free_port, python_module, wait_for
from tests.helpers import require_tool, run_cli

FEATURES = ("brightness", "contrast", "predicted_class", "confidence")


def _probs(n: int, classes: int, seed: int, favourite: int | None = None) -> np.ndarray:
    """Softmax outputs of a confident classifier (or one stuck on `favourite`, less sure)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1, (n, classes))
    if favourite is None:
        logits[np.arange(n), rng.integers(0, classes, n)] += 3.0
    else:
        logits[:, favourite] += 1.5
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def reference_dir(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder's reference.json from the real demo images and a classifier's outputs."""
    scan = scan_dataset(demo_data, progress=False)
    folder = tmp_path_factory.mktemp("drift-model")
    write_reference(folder, dataset_reference(scan))
    write_reference(folder, prediction_reference(_probs(500, len(scan.classes), 1), scan.classes))
    return folder


def _records(demo_data: Path, shifted: bool, seed: int) -> list[dict[str, Any]]:
    """Prediction-log records for every demo image, shuffled; shifted = inverted images."""
    paths = sorted(demo_data.rglob("*.png"))
    random.Random(seed).shuffle(paths)
    classes = sorted(p.name for p in demo_data.iterdir() if p.is_dir())
    probs = _probs(len(paths), len(classes), seed, favourite=1 if shifted else None)
    out = []
    for path, p in zip(paths, probs, strict=True):
        image = Image.open(path).convert("L")
        stats = image_stats(ImageOps.invert(image) if shifted else image)
        out.append(
            {
                "ts": 0.0,
                "model": "tiny",
                "version": "1",
                "route": "/v1/predict",
                "top_class": classes[int(p.argmax())],
                "confidence": float(p.max()),
                "latency_ms": 1.0,
                **stats,
            }
        )
    return out


@pytest.fixture(scope="module")
def normal(demo_data: Path) -> list[dict[str, Any]]:
    return _records(demo_data, shifted=False, seed=2)


@pytest.fixture(scope="module")
def shifted(demo_data: Path) -> list[dict[str, Any]]:
    return _records(demo_data, shifted=True, seed=3)


def _append(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("a") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in records)


def _settings(tmp_path: Path, reference: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "prediction_log_path": tmp_path / "predictions.jsonl",
        "reference": str(reference),
        "window": 600,
        "min_records": 100,
    }
    return Settings(**(values | overrides))


def test_normal_traffic_is_clean_and_inverted_images_drift(
    tmp_path: Path, reference_dir: Path, normal: list[dict], shifted: list[dict]
) -> None:
    settings = _settings(tmp_path, reference_dir)
    monitor = DriftMonitor(json.loads((reference_dir / "reference.json").read_text()), settings)
    _append(settings.prediction_log_path, normal)
    clean = monitor.run_once()
    assert clean.window_size == 600
    assert not clean.drift, clean.to_dict()
    assert clean.features["brightness"].score < 0.1
    assert clean.features["brightness"].pvalue > 0.05

    _append(settings.prediction_log_path, shifted)
    drifted = monitor.run_once().features
    assert drifted["brightness"].detected and drifted["brightness"].score > 1.0
    assert drifted["brightness"].pvalue < 1e-6
    assert drifted["predicted_class"].detected
    assert drifted["confidence"].detected
    assert drifted["confidence"].current_mean < drifted["confidence"].reference_mean - 0.1
    # Inverting an image keeps its gray-level spread: contrast must not be flagged.
    assert not drifted["contrast"].detected, drifted["contrast"]


def test_nothing_is_judged_below_min_records_and_bad_lines_are_counted(
    tmp_path: Path, reference_dir: Path, shifted: list[dict]
) -> None:
    settings = _settings(tmp_path, reference_dir, min_records=100)
    monitor = DriftMonitor(json.loads((reference_dir / "reference.json").read_text()), settings)
    _append(settings.prediction_log_path, shifted[:99])
    with settings.prediction_log_path.open("a") as handle:
        handle.write('not json\n{"brightness": "x"}\n{"top_class": "bag"}\n')
    evaluation = monitor.run_once()
    assert (evaluation.window_size, monitor.invalid, evaluation.judged) == (99, 3, False)
    assert not evaluation.drift
    assert all(math.isnan(f.score) for f in evaluation.features.values())
    _append(settings.prediction_log_path, shifted[99:100])
    assert monitor.run_once().drift


def test_state_file_resumes_offsets_and_window_after_a_restart(
    tmp_path: Path, reference_dir: Path, normal: list[dict]
) -> None:
    settings = _settings(tmp_path, reference_dir, state_path=tmp_path / "state.json")
    reference = json.loads((reference_dir / "reference.json").read_text())
    _append(settings.prediction_log_path, normal[:300])
    DriftMonitor(reference, settings).run_once()
    _append(settings.prediction_log_path, normal[300:350])
    restarted = DriftMonitor(reference, settings)
    assert (len(restarted.window), restarted.records_read) == (300, 300)
    assert restarted.poll() == 50
    assert restarted.records_read == 350


def test_a_glob_reads_one_log_per_replica_in_time_order_and_resumes(
    tmp_path: Path, reference_dir: Path, normal: list[dict], shifted: list[dict]
) -> None:
    settings = _settings(
        tmp_path, reference_dir, window=100, min_records=100, state_path=tmp_path / "state.json"
    )
    settings.prediction_log_path = tmp_path / "replica-*.jsonl"
    reference = json.loads((reference_dir / "reference.json").read_text())
    stamped = [dict(r, ts=float(i)) for i, r in enumerate(normal[:100] + shifted[:100])]
    _append(tmp_path / "replica-a.jsonl", stamped[0::2])  # both replicas write old and new
    _append(tmp_path / "replica-b.jsonl", stamped[1::2])
    _append(tmp_path / "replica-a.jsonl.1", [dict(normal[0], ts=-1.0)])  # a's older history
    monitor = DriftMonitor(reference, settings)
    evaluation = monitor.run_once()
    assert sorted(Path(p).name for p in monitor.readers) == ["replica-a.jsonl", "replica-b.jsonl"]
    assert (monitor.records_read, monitor.invalid) == (201, 0)
    assert evaluation.features["brightness"].detected, "the window holds the newest 100: shifted"
    _append(tmp_path / "replica-b.jsonl", normal[100:110])
    _append(tmp_path / "replica-c.jsonl", normal[110:115])
    restarted = DriftMonitor(reference, settings)
    assert restarted.poll() == 15


def test_a_replaced_replicas_log_is_finished_then_forgotten(
    tmp_path: Path, reference_dir: Path, normal: list[dict]
) -> None:
    """As the chart lays out the claim: `<pod>.jsonl` per pod and the state file beside them."""
    settings = _settings(tmp_path, reference_dir, state_path=tmp_path / "drift-state.json")
    settings.prediction_log_path = tmp_path / "*.jsonl"
    reference = json.loads((reference_dir / "reference.json").read_text())
    _append(tmp_path / "pod-a.jsonl", normal[:10])
    _append(tmp_path / "pod-b.jsonl", normal[10:20])
    monitor = DriftMonitor(reference, settings)
    assert monitor.poll() == 20
    monitor.save_state()
    # pod-a rotates and is deleted before it writes a new file: its last lines are still read.
    (tmp_path / "pod-a.jsonl").rename(tmp_path / "pod-a.jsonl.1")
    _append(tmp_path / "pod-a.jsonl.1", normal[20:25])
    assert monitor.poll() == 5
    assert sorted(Path(p).name for p in monitor.readers) == ["pod-a.jsonl", "pod-b.jsonl"]
    (tmp_path / "pod-a.jsonl.1").unlink()
    _append(tmp_path / "pod-b.jsonl", normal[25:30])
    assert monitor.poll() == 5
    assert [Path(p).name for p in monitor.readers] == ["pod-b.jsonl"]
    monitor.save_state()
    state = json.loads(settings.state_path.read_text())
    assert [Path(p).name for p in state["positions"]] == ["pod-b.jsonl"]
    assert (monitor.records_read, monitor.invalid) == (30, 0)


def _metric(text: str, name: str, feature: str | None = None) -> float:
    label = f'{{feature="{feature}"}}' if feature else ""
    for line in text.splitlines():
        if line.startswith(f"{name}{label} "):
            return float(line.split()[-1])
    raise AssertionError(f"{name}{label} not in /metrics")


def test_service_process_serves_gauges_summary_and_report_and_resumes(
    tmp_path: Path, reference_dir: Path, normal: list[dict], shifted: list[dict]
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "predictions.jsonl"
    env = {
        "SLIPWAY_DRIFT_PREDICTION_LOG_PATH": str(log),
        "SLIPWAY_DRIFT_REFERENCE": str(reference_dir),
        "SLIPWAY_DRIFT_WINDOW": "600",
        "SLIPWAY_DRIFT_MIN_RECORDS": "100",
        "SLIPWAY_DRIFT_INTERVAL_S": "0.2",
        "SLIPWAY_DRIFT_STATE_PATH": str(tmp_path / "state.json"),
        "SLIPWAY_DRIFT_PORT": str(port),
    }
    with python_module("drift", "services.drift", tmp_path, env, url) as process:
        process.wait_ready()
        metrics = httpx.get(url + "/metrics").text
        for feature in FEATURES:
            assert math.isnan(_metric(metrics, "slipway_drift_score", feature))
            assert _metric(metrics, "slipway_drift_detected", feature) == 0
            assert _metric(metrics, "slipway_drift_threshold", feature) == 0.2
        for feature in ("brightness", "contrast"):
            assert math.isnan(_metric(metrics, "slipway_drift_pvalue", feature))

        _append(log, normal)
        summary = wait_for(
            "600 normal records in the window",
            lambda: (s := httpx.get(url + "/v1/drift").json())["window_size"] == 600 and s,
            30,
        )
        assert summary["drift_detected"] is False, summary
        _append(log, shifted[:400])
        wait_for(
            "brightness drift on /metrics",
            lambda: (
                _metric(httpx.get(url + "/metrics").text, "slipway_drift_detected", "brightness")
                == 1
            ),
            30,
        )
        page = httpx.get(url + "/report")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.text.count("<svg") == 4 and "drift detected" in page.text
        assert "<script" not in page.text and 'src="http' not in page.text
        assert "DRIFT" in page.text
        read = _metric(httpx.get(url + "/metrics").text, "slipway_drift_records_read_total")
        assert read == 1000
        fetched = run_cli("drift", "report", "--url", url, "--out", str(tmp_path / "live.html"))
        assert fetched.returncode == 0, fetched.stderr
        assert (tmp_path / "live.html").read_text().count("<svg") == 4

    _append(log, shifted[400:450])
    with python_module("drift-restarted", "services.drift", tmp_path, env, url) as process:
        process.wait_ready()
        summary = wait_for(
            "the restarted monitor to read the 50 new records",
            lambda: (s := httpx.get(url + "/v1/drift").json())["records_read"] == 1050 and s,
            30,
        )
        assert summary["window_size"] == 600


def test_missing_reference_keeps_it_alive_but_not_ready(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        "SLIPWAY_DRIFT_REFERENCE": str(tmp_path / "nowhere"),
        "SLIPWAY_DRIFT_PORT": str(port),
        "SLIPWAY_DRIFT_INTERVAL_S": "0.2",
    }
    with python_module("drift-noref", "services.drift", tmp_path, env, url) as process:
        process.wait_ready("/healthz")
        ready = wait_for(
            "a 503 naming the missing reference",
            lambda: (
                (r := httpx.get(url + "/readyz")).status_code == 503
                and "reference not found" in r.text
                and r
            ),
            30,
        )
        assert ready.headers["retry-after"]
        assert httpx.get(url + "/v1/drift").status_code == 503


def test_cli_check_and_report(
    tmp_path: Path, reference_dir: Path, normal: list[dict], shifted: list[dict]
) -> None:
    log = tmp_path / "predictions.jsonl"
    _append(log, normal)
    common = ["--reference", str(reference_dir), "--log", str(log)]
    clean = run_cli("drift", "check", *common)
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout)["drift_detected"] is False
    _append(log, shifted)
    assert run_cli("drift", "check", *common, "--window", "600").returncode == 1
    out = tmp_path / "report.html"
    written = run_cli("drift", "report", *common, "--window", "600", "--out", str(out))
    assert written.returncode == 0, written.stderr
    assert out.read_text().count("<svg") == 4
    missing = run_cli("drift", "check", "--reference", str(reference_dir), "--log", "/nope")
    assert missing.returncode == 2
    assert "prediction log not found" in missing.stderr and "Traceback" not in missing.stderr
    pods = tmp_path / "pods"
    pods.mkdir()
    _append(pods / "pod-a.jsonl", normal[:300])
    _append(pods / "pod-b.jsonl", normal[300:])
    every = ["--reference", str(reference_dir), "--window", "600"]
    both = run_cli("drift", "check", *every, "--log", str(pods / "*.jsonl"))
    assert both.returncode == 0, both.stderr
    assert json.loads(both.stdout)["window_size"] == 600
    nothing = run_cli("drift", "check", *every, "--log", str(pods / "*.log"))
    assert nothing.returncode == 2 and "prediction log not found" in nothing.stderr


def test_report_opens_in_a_browser_with_both_histograms(
    tmp_path: Path, reference_dir: Path, normal: list[dict], shifted: list[dict]
) -> None:
    chromium = require_tool("chromium")
    from services.drift.report import CURRENT_COLOR, REFERENCE_COLOR, render_report

    settings = _settings(tmp_path, reference_dir)
    monitor = DriftMonitor(json.loads((reference_dir / "reference.json").read_text()), settings)
    _append(settings.prediction_log_path, normal[:300] + shifted[:300])
    page = tmp_path / "report.html"
    page.write_text(render_report(monitor, monitor.run_once()))
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--window-size=1280,1400",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    for color in (REFERENCE_COLOR, CURRENT_COLOR):
        rgb = np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)])
        drawn = int((np.abs(pixels - rgb).sum(axis=1) < 30).sum())
        assert drawn > 2000, f"the screenshot shows almost no {color} bars ({drawn} pixels)"
