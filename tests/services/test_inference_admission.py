"""Admission before the route: over-budget predictions are refused before their body is read,
and the event loop's delay counts in the expected wait."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from prometheus_client import generate_latest

from services.inference.admission import (
    LAG_IDLE_INTERVAL_S,
    LAG_INTERVAL_S,
    LAG_SAMPLES,
    AdmissionMiddleware,
    LoopLag,
)
from services.inference.batching import ANSWER_SHARE, InferenceWorker
from services.inference.metrics import Metrics
from services.inference.middleware import ObservabilityMiddleware
from tests.services.inference_helpers import metric_value

MODEL = "clf"


class _App:
    """The inner app: records that it ran and answers 200 after reading the body."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        self.calls += 1
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def _call(app: Any, method: str, path: str) -> tuple[int, dict[bytes, bytes], bool]:
    """Send one request through `app`; return status, headers and whether the body was read."""
    read = False
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal read
        read = True
        return {"type": "http.request", "body": b"x" * 10, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": [], "query_string": b""}
    asyncio.run(app(scope, receive, send))
    start = sent[0]
    return start["status"], dict(start.get("headers", [])), read


def _stack(worker: InferenceWorker, metrics: Metrics) -> tuple[Any, _App]:
    inner = _App()
    admission = AdmissionMiddleware(inner, worker, default_model=MODEL, models={MODEL})
    observed = ObservabilityMiddleware(
        admission, metrics, MODEL, {MODEL}, variant_of=lambda name: "production"
    )
    return observed, inner


def _overloaded(metrics: Metrics) -> InferenceWorker:
    worker = InferenceWorker(metrics, budget_s=0.1)
    worker.image_cost_s = 0.05
    worker._reserved = 10  # 10 images ahead at 50 ms: 550 ms expected for one more
    return worker


@pytest.mark.parametrize(
    ("path", "route", "model"),
    [
        ("/v1/predict", "/v1/predict", MODEL),
        (f"/v1/models/{MODEL}:predict", "/v1/models/{name}:predict", MODEL),
        (f"/v2/models/{MODEL}/infer", "/v2/models/{name}/infer", MODEL),
        (f"/v2/models/{MODEL}/versions/3/infer", "/v2/models/{name}/versions/{version}/infer",
         MODEL),
    ],
)  # fmt: skip
def test_over_budget_predictions_are_refused_before_their_body(
    path: str, route: str, model: str
) -> None:
    metrics = Metrics()
    app, inner = _stack(_overloaded(metrics), metrics)
    status, headers, read = _call(app, "POST", path)
    assert status == 503
    assert int(headers[b"retry-after"]) >= 1
    assert not read and inner.calls == 0
    text = generate_latest(metrics.registry).decode()
    assert metric_value(text, "slipway_inference_rejected_total", reason="over_budget") == 1
    assert (
        metric_value(text, "slipway_inference_requests_total", model=model, route=route, code="5xx")
        == 1
    )


def test_within_budget_other_routes_and_unknown_models_reach_the_app() -> None:
    metrics = Metrics()
    idle = InferenceWorker(metrics, budget_s=0.1)
    app, inner = _stack(idle, metrics)
    assert _call(app, "POST", "/v1/predict")[0] == 200
    busy_app, busy_inner = _stack(_overloaded(metrics), metrics)
    assert _call(busy_app, "GET", "/v1/models")[0] == 200  # not a prediction
    assert _call(busy_app, "POST", "/v2/models/unknown/infer")[0] == 200  # its 404 is the app's
    assert _call(busy_app, "POST", "/v1/explainers")[0] == 200
    assert inner.calls == 1 and busy_inner.calls == 3
    no_budget = InferenceWorker(metrics, budget_s=0.0)
    no_budget.image_cost_s, no_budget._reserved = 1.0, 100
    assert _call(_stack(no_budget, metrics)[0], "POST", "/v1/predict")[0] == 200


def test_a_loop_that_stays_behind_counts_in_the_expected_wait_one_slow_call_does_not() -> None:
    worker = InferenceWorker(Metrics(), budget_s=0.1)
    seen: dict[str, float] = {}

    async def scenario() -> None:
        lag = LoopLag(worker, interval_s=0.005, idle_interval_s=0.005)
        lag.start()
        await asyncio.sleep(0.06)
        time.sleep(0.3)  # one slow call on the loop
        await asyncio.sleep(0.001)
        seen["one slow call"] = worker.loop_lag_s
        for _ in range(4 * LAG_SAMPLES):  # the loop is behind on every turn
            time.sleep(0.05)
            await asyncio.sleep(0)
        seen["behind"] = worker.loop_lag_s
        await lag.stop()

    asyncio.run(scenario())
    assert seen["one slow call"] < 0.3
    assert seen["behind"] >= 0.04
    reserve = ANSWER_SHARE * worker.budget_s  # the answer's way back
    assert worker.expected_wait_s(1) == reserve  # lag reset when stopped; no cost learned yet
    worker.loop_lag_s = 0.15
    assert worker.expected_wait_s(1) == pytest.approx(0.15 + reserve)


def test_the_loop_is_sampled_often_only_while_there_is_work() -> None:
    worker = InferenceWorker(Metrics(), budget_s=0.1)
    lag = LoopLag(worker)
    assert not worker.busy and lag.next_interval_s() == LAG_IDLE_INTERVAL_S
    held, _ = worker.hold()  # a request's headers arrived
    assert held == 1 and worker.busy and lag.next_interval_s() == LAG_INTERVAL_S
    worker.release(held)
    assert not worker.busy and lag.next_interval_s() == LAG_IDLE_INTERVAL_S
    assert LAG_IDLE_INTERVAL_S > LAG_INTERVAL_S


def test_admitted_requests_hold_room_so_requests_arriving_together_are_not_all_let_in() -> None:
    metrics = Metrics()
    worker = InferenceWorker(metrics, budget_s=0.1)
    worker.image_cost_s = 0.04  # two images fit in the budget
    gate = asyncio.Event()
    seen: list[int] = []

    class _Slow(_App):
        async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
            seen.append(worker.pending)
            await gate.wait()  # bodies still on their way: no route has called `admit`
            await super().__call__(scope, receive, send)

    inner = _Slow()
    app = AdmissionMiddleware(inner, worker, default_model=MODEL, models={MODEL})

    async def one() -> int:
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b"x", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/v1/predict", "headers": [],
                 "query_string": b""}  # fmt: skip
        await app(scope, receive, send)
        return sent[0]["status"]

    async def scenario() -> list[int]:
        requests = [asyncio.ensure_future(one()) for _ in range(4)]
        await asyncio.sleep(0.01)
        gate.set()
        return list(await asyncio.gather(*requests))

    statuses = asyncio.run(scenario())
    assert sorted(statuses) == [200, 200, 503, 503]
    assert seen == [1, 2]  # each admitted request held one image while its body was read
    assert worker.pending == 0  # the app never admitted them: the holds were given back
    text = generate_latest(metrics.registry).decode()
    assert metric_value(text, "slipway_inference_rejected_total", reason="over_budget") == 2
