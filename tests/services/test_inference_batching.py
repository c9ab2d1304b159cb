"""The batcher with the real exported model: batches form, the queue is bounded, drain refuses."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import generate_latest

from services.inference.batching import ANSWER_SHARE, InferenceWorker
from services.inference.errors import UnavailableError
from services.inference.metrics import Metrics
from services.inference.model import ModelSlot, load_version
from services.inference.queued import QueuedImage, judge
from services.inference.runtime import RuntimeOptions
from services.inference.source import ModelSource
from tests.services.inference_helpers import metric_value


@pytest.fixture(scope="module")
def slot(trained_model: Path) -> ModelSlot:
    source = ModelSource(str(trained_model))
    slot = ModelSlot("tiny", source)
    options = RuntimeOptions(backend="onnxruntime", precision="fp32", threads=1)
    slot.swap(load_version(source, source.resolve(), "tiny", options))
    return slot


def _inputs(slot: ModelSlot, count: int) -> list[np.ndarray]:
    shape = slot.current.transform.input_shape
    rng = np.random.default_rng(0)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(count)]


def _text(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_requests_on_their_way_are_batched_together(slot: ModelSlot) -> None:
    metrics = Metrics()
    worker = InferenceWorker(metrics, max_batch=8, max_wait_s=5.0, max_queue=16)
    worker.start()
    arrays = _inputs(slot, 8)

    async def scenario() -> list:
        for _ in arrays:  # eight requests admitted, still "decoding"
            worker.admit(slot, 1)
        results = await asyncio.gather(*(worker.submit(slot, [a]) for a in arrays))
        return [r[0] for r in results]

    try:
        predictions = asyncio.run(scenario())
    finally:
        worker.close(10)
    text = _text(metrics)
    # One forward of all eight: the full batch closed it, not the 5 s wait.
    assert metric_value(text, "slipway_inference_batch_size_count", model="tiny") == 1
    assert metric_value(text, "slipway_inference_batch_size_sum", model="tiny") == 8
    expected = slot.current.backend.forward(np.stack(arrays))
    got = np.stack([p.logits for p in predictions])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert all(p.model is slot.current for p in predictions)


def test_queue_is_bounded_and_release_returns_room(slot: ModelSlot) -> None:
    metrics = Metrics()
    worker = InferenceWorker(metrics, max_queue=4)
    worker.admit(slot, 3)
    with pytest.raises(UnavailableError) as refused:
        worker.admit(slot, 2)
    assert refused.value.reason == "queue_full" and refused.value.headers["Retry-After"]
    worker.release(3)
    worker.admit(slot, 4)
    text = _text(metrics)
    assert metric_value(text, "slipway_inference_rejected_total", reason="queue_full") == 1


def test_closing_finishes_queued_work_and_refuses_new(slot: ModelSlot) -> None:
    metrics = Metrics()
    worker = InferenceWorker(metrics, max_batch=2, max_wait_s=0.0)
    worker.start()
    arrays = _inputs(slot, 6)

    async def scenario() -> list:
        worker.admit(slot, len(arrays))
        pending = asyncio.ensure_future(worker.submit(slot, arrays))
        await asyncio.sleep(0)
        await asyncio.to_thread(worker.close, 30)
        return await pending

    predictions = asyncio.run(scenario())
    assert len(predictions) == 6
    with pytest.raises(UnavailableError) as refused:
        worker.admit(slot, 1)
    assert refused.value.reason == "draining"
    text = _text(metrics)
    assert metric_value(text, "slipway_inference_rejected_total", reason="draining") == 1
    assert metric_value(text, "slipway_inference_batch_size_sum", model="tiny") == 6


def test_admission_refuses_what_would_wait_past_the_budget(slot: ModelSlot) -> None:
    metrics = Metrics()
    worker = InferenceWorker(metrics, max_queue=1000, budget_s=0.1)
    worker.admit(slot, 50)  # no cost measured yet: only the count bound applies
    worker.release(50)
    worker.image_cost_s = 0.01  # 10 ms of model time per image
    reserve = ANSWER_SHARE * 0.1  # the answer's way back: 10 ms of the budget
    worker.admit(slot, 5)  # 5 x 10 ms + 10 ms = 60 ms expected
    with pytest.raises(UnavailableError) as refused:
        worker.admit(slot, 6)  # (5 + 6) x 10 ms + 10 ms = 120 ms > 100 ms
    assert refused.value.reason == "over_budget"
    assert int(refused.value.headers["Retry-After"]) >= 1
    assert worker.expected_wait_s(1) == pytest.approx(0.06 + reserve)
    worker.admit(slot, 3)  # 8 x 10 ms + 10 ms: within the budget
    text = _text(metrics)
    assert metric_value(text, "slipway_inference_rejected_total", reason="over_budget") == 1
    assert metric_value(text, "slipway_inference_rejected_total", reason="queue_full") == 0


def test_the_cost_per_image_is_learned_from_forwards(slot: ModelSlot) -> None:
    worker = InferenceWorker(Metrics(), max_batch=4, max_wait_s=0.0, budget_s=1.0)
    worker.start()
    arrays = _inputs(slot, 4)

    async def scenario() -> None:
        worker.admit(slot, len(arrays))
        await worker.submit(slot, arrays)

    try:
        asyncio.run(scenario())
    finally:
        worker.close(10)
    assert worker.image_cost_s > 0
    assert worker.expected_wait_s(3) == pytest.approx(3 * worker.image_cost_s + ANSWER_SHARE)


def test_an_image_that_would_be_answered_past_its_deadline_is_refused_not_served_late(
    slot: ModelSlot,
) -> None:
    metrics = Metrics()
    worker = InferenceWorker(metrics, max_batch=4, max_wait_s=0.0, budget_s=0.2)
    worker.image_cost_s = 0.01
    worker.start()
    arrays = _inputs(slot, 2)

    async def scenario() -> tuple[BaseException | None, list]:
        now = time.monotonic()
        worker.admit(slot, 2)
        late = worker.submit(slot, arrays[:1], deadline=worker.deadline(now - 0.5))
        due = worker.submit(slot, arrays[1:], deadline=worker.deadline(now))
        results = await asyncio.gather(late, due, return_exceptions=True)
        return results[0], results[1]

    try:
        refused, answered = asyncio.run(scenario())
    finally:
        worker.close(10)
    assert isinstance(refused, UnavailableError) and refused.reason == "late"
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
    assert "budget of 200 ms" in str(refused)
    assert len(answered) == 1 and answered[0].logits.shape == (len(slot.current.classes),)
    text = _text(metrics)
    assert metric_value(text, "slipway_inference_rejected_total", reason="late") == 1
    assert metric_value(text, "slipway_inference_batch_size_sum", model="tiny") == 1
    assert worker.deadline(10.0) == pytest.approx(10.2)
    assert InferenceWorker(metrics).deadline(10.0) == float("inf")  # no budget, no deadline


def test_a_batch_too_big_for_the_deadline_runs_what_fits_and_keeps_the_rest(
    slot: ModelSlot,
) -> None:
    metrics = Metrics()
    worker = InferenceWorker(metrics, max_batch=8, max_wait_s=0.0, budget_s=0.2)
    worker.start()
    arrays = _inputs(slot, 8)

    async def scenario() -> list:
        worker.admit(slot, len(arrays))  # admitted while the cost was unknown
        # Now 30 ms per image and 20 ms for the answer: five or six fit in the budget, not eight.
        worker.image_cost_s = 0.03
        return await worker.submit(slot, arrays, deadline=worker.deadline(time.monotonic()))

    try:
        predictions = asyncio.run(scenario())
    finally:
        worker.close(10)
    assert len(predictions) == 8
    text = _text(metrics)
    assert metric_value(text, "slipway_inference_rejected_total", reason="late") == 0
    assert metric_value(text, "slipway_inference_batch_size_count", model="tiny") == 2
    assert metric_value(text, "slipway_inference_batch_size_sum", model="tiny") == 8
    assert metric_value(text, "slipway_inference_batch_size_bucket", model="tiny", le="4.0") == 1
    assert worker.pending == 0 and worker._running == 0


def test_held_room_counts_in_the_wait_and_becomes_the_reservation(slot: ModelSlot) -> None:
    metrics = Metrics()
    worker = InferenceWorker(metrics, budget_s=0.1)
    worker.image_cost_s = 0.017  # 17 ms per image and 10 ms for the answer: five fit
    holds = [worker.hold() for _ in range(6)]
    assert [h for h, _ in holds] == [1, 1, 1, 1, 1, 0]  # the sixth would wait 112 ms
    assert holds[-1][1] == pytest.approx(0.112)
    assert worker.pending == 5
    worker.admit(slot, 1, held=1)  # a held request's own image is already counted
    assert worker.pending == 5
    with pytest.raises(UnavailableError):
        worker.admit(slot, 3, held=1)  # 4 + 3 images: 129 ms; the hold is given back
    assert worker.pending == 4
    worker.release(4)
    assert worker.pending == 0


def test_a_draining_worker_holds_nothing_and_leaves_the_refusal_to_admit(slot: ModelSlot) -> None:
    worker = InferenceWorker(Metrics(), budget_s=0.1)
    worker.close(1)
    assert worker.hold() == (0, 0.0)
    with pytest.raises(UnavailableError) as refused:
        worker.admit(slot, 1)
    assert refused.value.reason == "draining"


def test_judge_takes_the_oldest_images_that_fit_and_refuses_only_the_hopeless(
    slot: ModelSlot,
) -> None:
    loop = asyncio.new_event_loop()
    try:
        now = time.monotonic()
        array = _inputs(slot, 1)[0]
        hopeless = QueuedImage(slot, array, loop, deadline=now + 0.01)
        fits = [QueuedImage(slot, array, loop, deadline=now + 0.1) for _ in range(5)]
        expired = QueuedImage(slot, array, loop, deadline=now + 1.0)
        expired.enqueued = now - 60
        # 20 ms per image, 10 ms for the way back: four of the five fit in 100 ms.
        judged = judge([hopeless, *fits, expired], now, 0.02, 0.01, timeout_s=30)
        assert judged.late == [hopeless] and judged.expired == [expired]
        assert judged.run == fits[:4] and judged.back == fits[4:]
        everything = judge(fits, now, 0.02, 0.01, timeout_s=30, deadlines=False)
        assert everything.run == fits and not everything.back
    finally:
        loop.close()
