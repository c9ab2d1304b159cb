"""Admission before the route: refuse predictions that cannot be answered in time, cheaply.

A request's wait is more than the inference queue: under overload the event loop itself falls
behind, and a request sits in the socket and the loop before any handler runs. Two parts keep
accepted requests within the admission budget at any offered load:

* `LoopLag` samples how late the loop wakes a short sleep and hands the smallest of the last
  few samples to the worker, so `expected_wait_s` counts the loop's delay when the loop is
  behind for a while (every sample late), not after one slow call (one late sample);
* `AdmissionMiddleware` refuses prediction requests whose expected wait is over the budget as
  soon as their headers are parsed: 503 + `Retry-After`, before the body is read, the multipart
  form parsed or the image decoded, so a refused request costs little of the CPU the accepted
  ones need. The route's own `admit` (with the real image count) stays as the exact check.
  An admitted prediction holds one image of queue room from that moment (`Ticket`), so
  requests whose headers arrive together are not all admitted on one look at the queue; the
  route's `admit` takes the hold over. The ticket also carries when the request arrived (the
  loop's delay counted back), so the inference thread can refuse an admitted image whose
  answer would come after the budget (`reason="late"`) rather than answer it late: an
  estimate can be wrong, a deadline cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections import deque
from contextvars import ContextVar
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from services.inference.batching import InferenceWorker
from services.inference.metrics import KSERVE_PREDICT_ROUTE, OIP_INFER_ROUTE
from services.inference.middleware import send_error

LAG_INTERVAL_S = 0.005
# With nothing queued or running the loop is on time: 20 wake-ups a second, not 200, so an
# idle replica costs about a tenth of the CPU (the first sample after a burst arrives is this
# much late at most).
LAG_IDLE_INTERVAL_S = 0.05
LAG_SAMPLES = 3  # the lag is the least of the last few: one slow call alone does not count


@dataclass
class Ticket:
    """An admitted prediction request: when it reached the server (time.monotonic(), the
    loop's delay counted back) and the queue room it holds until the route's `admit`."""

    arrived: float
    held: int = 0

    def take(self) -> int:
        """The held room, handed over once (to `admit`, or back to the worker)."""
        held, self.held = self.held, 0
        return held


# The ticket of the request the current task handles; None outside admitted predictions.
TICKET: ContextVar[Ticket | None] = ContextVar("slipway_ticket", default=None)

# Prediction routes by URL: (pattern, route template); `name` is the served model, if any.
_ROUTES = (
    (re.compile(r"^/v1/predict$"), "/v1/predict"),
    (re.compile(r"^/v1/models/(?P<name>[^/]+):predict$"), KSERVE_PREDICT_ROUTE),
    (re.compile(r"^/v2/models/(?P<name>[^/]+)/infer$"), OIP_INFER_ROUTE),
    (
        re.compile(r"^/v2/models/(?P<name>[^/]+)/versions/[^/]+/infer$"),
        "/v2/models/{name}/versions/{version}/infer",
    ),
)


@dataclass(frozen=True)
class _Route:
    """Stands in for the router's match, so request metrics label the route template."""

    path: str


class LoopLag:
    """The event loop's recent scheduling delay in seconds, published to the worker."""

    def __init__(
        self,
        worker: InferenceWorker,
        interval_s: float = LAG_INTERVAL_S,
        idle_interval_s: float = LAG_IDLE_INTERVAL_S,
    ) -> None:
        self.worker = worker
        self.interval_s = interval_s
        self.idle_interval_s = idle_interval_s
        self._task: asyncio.Task[None] | None = None

    def next_interval_s(self) -> float:
        """How long the next sample sleeps: `interval_s` while the worker has images queued,
        held or running, `idle_interval_s` otherwise."""
        return self.interval_s if self.worker.busy else self.idle_interval_s

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.worker.loop_lag_s = 0.0

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        # Starts as "on time", so that a stall right at start-up is one slow call like any.
        recent: deque[float] = deque([0.0] * LAG_SAMPLES, maxlen=LAG_SAMPLES)
        while True:
            interval = self.next_interval_s()
            began = loop.time()
            await asyncio.sleep(interval)
            recent.append(max(0.0, loop.time() - began - interval))
            self.worker.loop_lag_s = min(recent)


class AdmissionMiddleware:
    """503 + Retry-After for prediction requests over the time budget, before their body."""

    def __init__(
        self, app: ASGIApp, worker: InferenceWorker, default_model: str, models: set[str]
    ) -> None:
        self.app = app
        self.worker = worker
        self.default_model = default_model
        self.models = models

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not self.worker.budget_s:
            await self.app(scope, receive, send)
            return
        matched = _match(scope["path"])
        # Unknown models go on to their 404; `?model=` on /v1/predict is counted as the default.
        if matched is None or (matched[1] and matched[1] not in self.models):
            await self.app(scope, receive, send)
            return
        arrived = time.monotonic() - self.worker.loop_lag_s
        held, wait = self.worker.hold()
        if held:
            ticket = Ticket(arrived, held=1)
            TICKET.set(ticket)
            try:
                await self.app(scope, receive, send)
            finally:
                if ticket.held:  # the request ended before its route's `admit`
                    self.worker.release(ticket.take())
            return
        if wait <= self.worker.budget_s:  # draining: the route says so
            await self.app(scope, receive, send)
            return
        template, name = matched
        scope["route"] = _Route(template)
        scope["path_params"] = {"name": name} if name else {}
        self.worker.metrics.rejected.labels(name or self.default_model, "over_budget").inc()
        await _refuse(send, wait, self.worker.budget_s)


def _match(path: str) -> tuple[str, str] | None:
    """(route template, model name or "") of a prediction URL, else None."""
    for pattern, template in _ROUTES:
        found = pattern.match(path)
        if found:
            return template, found.groupdict().get("name") or ""
    return None


async def _refuse(send: Send, wait_s: float, budget_s: float) -> None:
    message = (
        f"overloaded: expected wait {wait_s * 1000:.0f} ms exceeds the budget of "
        f"{budget_s * 1000:.0f} ms"
    )
    retry = str(max(1, math.ceil(wait_s - budget_s))).encode()
    await send_error(send, 503, message, [(b"retry-after", retry)])


def claim() -> tuple[float, int]:
    """(when the request being handled reached the server, the queue room it holds), the hold
    handed to the caller; (now, 0) without a ticket (gRPC, HTTP without a budget)."""
    ticket = TICKET.get()
    if ticket is None:
        return time.monotonic(), 0
    return ticket.arrived, ticket.take()
