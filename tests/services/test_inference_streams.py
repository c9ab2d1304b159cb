"""Batches in flight on OpenVINO's streams: a deep queue is shared out between them, a lone
request runs on every thread, and every answer matches the one-stream forward."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import generate_latest

from services.inference.backends import OpenVinoBackend, Running
from services.inference.batching import STREAMS_MAX_LAG_S, InferenceWorker
from services.inference.metrics import Metrics
from services.inference.model import ModelSlot, load_version
from services.inference.runtime import RuntimeOptions, streams_for
from services.inference.source import ModelSource
from tests.services.inference_helpers import metric_value

pytest.importorskip("openvino")


class Recording:
    """The real backend, with the size of every batch it started on a stream or ran whole."""

    def __init__(self, backend: OpenVinoBackend) -> None:
        self.backend = backend
        self.started: list[int] = []
        self.whole: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    def start(self, batch: np.ndarray, done: Callable[[], None]) -> Running:
        self.started.append(len(batch))
        return self.backend.start(batch, done)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        self.whole.append(len(batch))
        return self.backend.forward(batch)


@pytest.fixture
def slot(trained_model: Path) -> ModelSlot:
    source = ModelSource(str(trained_model))
    slot = ModelSlot("tiny", source)
    options = RuntimeOptions(backend="openvino", precision="fp32", threads=2, streams=2)
    model = load_version(source, source.resolve(), "tiny", options)
    model.warm(16)
    assert model.about()["runtime"]["streams"] == 2
    model.backend = Recording(model.backend)  # type: ignore[arg-type]
    slot.swap(model)
    return slot


def _inputs(slot: ModelSlot, count: int) -> list[np.ndarray]:
    shape = slot.current.transform.input_shape
    rng = np.random.default_rng(1)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(count)]


def _predict(worker: InferenceWorker, slot: ModelSlot, arrays: list[np.ndarray]) -> list:
    """Queue one request per array while the thread is held by a call, then let it go; each
    request's prediction, or its error."""
    gate = threading.Event()

    async def scenario() -> list:
        held = asyncio.ensure_future(worker.call(gate.wait))
        await asyncio.sleep(0.05)  # the thread is inside the call now
        tasks = []
        for array in arrays:
            worker.admit(slot, 1)
            tasks.append(asyncio.ensure_future(worker.submit(slot, [array])))
        await asyncio.sleep(0.05)  # every request is queued
        gate.set()
        await held
        results = await asyncio.gather(*tasks, return_exceptions=True)
        return [r if isinstance(r, Exception) else r[0] for r in results]

    worker.start()
    try:
        return asyncio.run(scenario())
    finally:
        worker.close(10)


def test_a_deep_queue_is_shared_between_streams_and_answered_alike(slot: ModelSlot) -> None:
    metrics = Metrics()
    worker = InferenceWorker(metrics, max_batch=16, max_wait_s=0.0)
    arrays = _inputs(slot, 16)
    predictions = _predict(worker, slot, arrays)
    backend = slot.current.backend
    # Sixteen queued, two streams free: the first batch takes half and runs on a stream.
    assert backend.started[0] == 8
    assert sum(backend.started) + sum(backend.whole) == 16
    expected = backend.backend.forward(np.stack(arrays))
    got = np.stack([p.logits for p in predictions])
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.stack([p.probs for p in predictions]).sum(axis=1), 1.0, atol=1e-5)
    assert all(p.model is slot.current for p in predictions)
    assert not worker._thread.is_alive() and not worker._flights and worker._running == 0
    assert worker.image_cost_s > 0
    text = generate_latest(metrics.registry).decode()
    assert metric_value(text, "slipway_inference_batch_size_sum", model="tiny") == 16
    assert metric_value(text, "slipway_inference_model_duration_seconds_count", model="tiny") == (
        len(backend.started) + len(backend.whole)
    )


def test_a_lone_request_runs_on_every_thread(slot: ModelSlot) -> None:
    worker = InferenceWorker(Metrics(), max_batch=16, max_wait_s=0.0)
    [prediction] = _predict(worker, slot, _inputs(slot, 1))
    backend = slot.current.backend
    assert backend.started == [] and backend.whole == [1]
    assert prediction.logits.shape == (len(slot.current.classes),)


def test_a_batch_that_fails_on_its_stream_fails_alone(slot: ModelSlot) -> None:
    worker = InferenceWorker(Metrics(), max_batch=16, max_wait_s=0.0)
    backend = slot.current.backend
    real_start = backend.start
    calls = []

    def start_once_broken(batch: np.ndarray, done: Callable[[], None]) -> Running:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("stream refused the batch")
        return real_start(batch, done)

    backend.start = start_once_broken
    results = _predict(worker, slot, _inputs(slot, 4))
    failed = [r for r in results if isinstance(r, Exception)]
    assert calls[0] == 2 and len(failed) == 2  # the first half failed, with a clear message
    assert all("stream refused the batch" in str(e) for e in failed)
    assert all(r.logits.shape == (len(slot.current.classes),) for r in results[2:])
    assert worker._running == 0 and not worker._flights


def test_while_the_event_loop_is_late_one_batch_runs_at_a_time(slot: ModelSlot) -> None:
    worker = InferenceWorker(Metrics(), max_batch=16, max_wait_s=0.0)
    worker.loop_lag_s = 10 * STREAMS_MAX_LAG_S  # as LoopLag reports an overloaded loop
    predictions = _predict(worker, slot, _inputs(slot, 16))
    backend = slot.current.backend
    assert backend.started == [] and backend.whole == [16]
    assert len(predictions) == 16


def test_auto_streams_serve_fp32_on_streams_and_int8_one_batch_at_a_time() -> None:
    assert streams_for("auto", "fp32") == 0  # the throughput hint's number
    assert streams_for("auto", "int8") == 1
    assert streams_for(3, "int8") == 3 and streams_for(1, "fp32") == 1
