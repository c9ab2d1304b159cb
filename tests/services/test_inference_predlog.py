"""The prediction log: rotation by size, nothing lost on close, overflow counted not hidden."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client import generate_latest

from services.inference.metrics import Metrics
from services.inference.predlog import PredictionLog
from tests.services.inference_helpers import metric_value


def _record(n: int) -> dict:
    return {"ts": float(n), "model": "m", "version": "1", "route": "/v1/predict",
            "top_class": "a", "confidence": 0.5, "latency_ms": 1.0, "width": 28, "height": 28,
            "brightness": 0.5, "contrast": 0.1}  # fmt: skip


def test_rotates_by_size_and_keeps_every_record_in_order(tmp_path: Path) -> None:
    metrics = Metrics()
    path = tmp_path / "logs" / "predictions.jsonl"
    log = PredictionLog(path, metrics, max_bytes=2048, backups=3)
    log.start()
    for n in range(40):
        log.write(_record(n))
    log.close()
    files = [path.with_name(f"{path.name}.{i}") for i in (3, 2, 1)] + [path]
    assert all(f.is_file() for f in files[1:])
    assert all(f.stat().st_size <= 2048 for f in files if f.exists())
    kept = [json.loads(line)["ts"] for f in files if f.exists() for line in f.read_text().split()]
    assert kept == sorted(kept) and kept[-1] == 39.0  # oldest dropped by rotation, newest kept
    assert not path.with_name(f"{path.name}.4").exists()
    text = generate_latest(metrics.registry).decode()
    assert metric_value(text, "slipway_inference_prediction_log_written_total") == 40


def test_overflow_is_counted_and_writes_never_block(tmp_path: Path) -> None:
    metrics = Metrics()
    log = PredictionLog(tmp_path / "p.jsonl", metrics, buffer=5)
    for n in range(12):  # the writer is not started yet, so the buffer fills
        log.write(_record(n))
    log.start()
    log.close()
    log.write(_record(99))  # after close: counted as dropped, not an error
    text = generate_latest(metrics.registry).decode()
    assert metric_value(text, "slipway_inference_prediction_log_dropped_total") == 8
    assert metric_value(text, "slipway_inference_prediction_log_written_total") == 5
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 5
