"""Dynamic batching: requests on the event loop, every forward from ONE inference thread.

Requests reserve queue room first (`admit`), decode off the loop, then `submit` their arrays.
The thread takes the oldest image and gathers more of the same model until the batch is full,
`max_wait` has passed since the oldest arrived, or nothing else is on its way: a lone request
is never held back waiting for company, and runs on every thread the backend has.

A backend with streams (OpenVINO) may have several batches in flight: while work is waiting,
the queued images are shared out between the free streams and each batch is started on one,
with its share of the threads, and answered when it ends. The thread still owns every start,
answer and call (warm-up of a new version), and a call runs only when nothing is in flight.

Who may join the queue (admission by time, then by count) is `room.QueueRoom`'s part.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any, cast

import numpy as np

from services.inference.backends import StreamBackend
from services.inference.errors import UnavailableError
from services.inference.faults import Fault
from services.inference.metrics import Metrics
from services.inference.model import LoadedModel, ModelSlot
from services.inference.queued import (
    Answer,
    Flight,
    Prediction,
    QueuedImage,
    answers,
    failed,
    judge,
    post,
    refusals,
    streams_of,
)
from services.inference.room import ANSWER_SHARE, QueueRoom

log = logging.getLogger(__name__)

# Batches run on one stream at a time while the event loop is later than this.
STREAMS_MAX_LAG_S = 0.010


class InferenceWorker(QueueRoom):
    """The bounded queue and the single thread that runs every forward."""

    def __init__(
        self,
        metrics: Metrics,
        max_batch: int = 16,
        max_wait_s: float = 0.005,
        max_queue: int = 256,
        timeout_s: float = 30.0,
        budget_s: float = 0.0,
        embeddings: bool = False,
    ) -> None:
        super().__init__(metrics, max_queue, budget_s)
        self.embeddings = embeddings  # fetch the embedding output with the logits
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.timeout_s = timeout_s
        self.fault = Fault()
        self._calls: deque[tuple[Callable[[], Any], asyncio.Future[Any], Any]] = deque()
        self._flights: deque[Flight] = deque()  # batches running on a backend's streams
        self._depth: dict[str, int] = {}
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)

    def start(self) -> None:
        self._thread.start()

    async def submit(
        self, slot: ModelSlot, arrays: list[np.ndarray], deadline: float = math.inf
    ) -> list[Prediction]:
        """Queue admitted arrays and wait for their predictions, within the request timeout.
        An image whose batch could not be answered by `deadline` (time.monotonic()) when its
        turn comes is refused with 503 (`reason="late"`) instead of being answered late."""
        loop = asyncio.get_running_loop()
        items = [QueuedImage(slot, array, loop, deadline) for array in arrays]
        with self._cv:
            self._reserved -= len(items)
            self._items.extend(items)
            self._depth[slot.name] = self._depth.get(slot.name, 0) + len(items)
            self.metrics.queue_depth.labels(slot.name).set(self._depth[slot.name])
            self._cv.notify()
        try:
            return await asyncio.wait_for(
                asyncio.gather(*(i.future for i in items)), timeout=self.timeout_s
            )
        except TimeoutError:
            self.metrics.rejected.labels(slot.name, "timeout").inc()
            raise UnavailableError(
                f"no answer within {self.timeout_s:g} s; the server is overloaded",
                reason="timeout",
            ) from None
        finally:
            for item in items:
                if not item.future.done():
                    item.future.cancel()

    async def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the inference thread between batches (warm-up of a new version)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._cv:
            self._calls.append((fn, future, loop))
            self._cv.notify()
        return await future

    def close(self, timeout: float | None = None) -> None:
        """Refuse new requests, let the thread finish everything queued, then stop it."""
        with self._cv:
            self._closing = True
            self._cv.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # The inference thread ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cv:
                while (work := self._next()) is None:
                    if self._closing and self._reserved <= 0 and not self._flights:
                        return
                    # A batch in flight wakes the thread when it ends; the timeout only guards
                    # against an end that never reported itself.
                    self._cv.wait(0.05 if self._flights else 0.5 if self._closing else None)
            work()

    def _next(self) -> Callable[[], None] | None:
        """The thread's next piece of work, or None to wait; called with the lock held.

        A batch that ended is answered first. A call runs alone, once nothing is in flight.
        Another batch starts while fewer than its backend's streams are in flight.
        """
        for flight in self._flights:
            if flight.ended or flight.running.ready():
                self._flights.remove(flight)
                return partial(self._land, flight)
        if self._calls:
            return None if self._flights else partial(self._run_call, *self._calls.popleft())
        if self._items and len(self._flights) < self._streams(self._items[0].slot):
            return self._collect()
        return None

    def _streams(self, slot: ModelSlot) -> int:
        """Batches the slot may have in flight now: its backend's streams while the event loop
        keeps up, one when it falls behind. Streams keep every core on the model, and under
        overload the loop then lacks the CPU to read requests and refuse the excess."""
        return streams_of(slot) if self.loop_lag_s <= STREAMS_MAX_LAG_S else 1

    def _collect(self) -> Callable[[], None]:
        """Gather one batch of the oldest item's model; called with the lock held.

        With streams free, the images queued or on their way are shared out between them. A
        batch waits for company (up to `max_wait`) while images are on their way, also with
        batches in flight: one image alone on a stream's share of the threads is the least
        efficient forward there is. It runs on a stream when other work is in flight or
        waiting, else on every thread.
        """
        first = self._items.popleft()
        streams = self._streams(first.slot)
        free = streams - len(self._flights)
        cap = min(self.max_batch, math.ceil((1 + len(self._items) + self._reserved) / free))
        batch = [first]
        deadline = first.enqueued + self.max_wait_s
        while True:
            self._take_same(first.slot, batch, cap)
            if len(batch) >= cap or self._reserved <= 0:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._cv.wait(remaining)
        streamed = streams > 1 and bool(self._flights or self._items or self._reserved > 0)
        name = first.slot.name
        self._running += len(batch)
        self._depth[name] -= len(batch)
        self.metrics.queue_depth.labels(name).set(self._depth[name])
        return partial(self._process, batch, streamed)

    def _take_same(self, slot: ModelSlot, batch: list[QueuedImage], cap: int) -> None:
        if not self._items:
            return
        keep: deque[QueuedImage] = deque()
        while self._items and len(batch) < cap:
            item = self._items.popleft()
            (batch if item.slot is slot else keep).append(item)
        keep.extend(self._items)
        self._items = keep

    def _run_call(self, fn: Callable[[], Any], future: asyncio.Future[Any], loop: Any) -> None:
        try:
            result, error = fn(), None
        except Exception as exc:
            result, error = None, exc
        post(loop, [(future, result, error)])

    def _process(self, batch: list[QueuedImage], streamed: bool) -> None:
        """Refuse what is too old or could not be answered in time even alone, put back what
        would make the batch late, and run the rest (`streamed`: start it on a stream and
        answer it when it ends)."""
        flying = 0
        back: list[QueuedImage] = []
        try:
            live, results = self._judge(batch, streamed, back)
            if live:
                done, flying = self._forward(live, streamed)
                results += done
            if results:
                post(batch[0].loop, results)
        finally:
            with self._cv:
                self._running -= len(batch) - flying
                if back:  # first in line for the next batch
                    self._items.extendleft(reversed(back))
                    name = batch[0].slot.name
                    self._depth[name] += len(back)
                    self.metrics.queue_depth.labels(name).set(self._depth[name])

    def _judge(
        self, batch: list[QueuedImage], streamed: bool, back: list[QueuedImage]
    ) -> tuple[list[QueuedImage], list[Answer]]:
        """(the images to run now, the refusals); images that fit in a later batch but not in
        this one go to `back` (see `queued.judge`)."""
        name = batch[0].slot.name
        spread = streams_of(batch[0].slot) if streamed else 1
        judged = judge(
            batch,
            time.monotonic(),
            spread * self.cost.slow_s,
            self.loop_lag_s + ANSWER_SHARE * self.budget_s,
            self.timeout_s,
            # An injected stall stands for a slow model the latency alerts must see.
            deadlines=self.fault.current(name) != "slow",
        )
        back += judged.back
        if judged.expired:
            self.metrics.rejected.labels(name, "timeout").inc(len(judged.expired))
        if judged.late:
            self.metrics.rejected.labels(name, "late").inc(len(judged.late))
        return judged.run, refusals(judged, self.budget_s)

    def _forward(self, items: list[QueuedImage], streamed: bool) -> tuple[list[Any], int]:
        """Run `items` now, or start them on a stream; (the answers ready now, images left in
        flight)."""
        slot = items[0].slot
        model = slot.current
        try:
            if model is None:
                raise RuntimeError(f"model {slot.name} is not loaded")
            shape = model.transform.input_shape
            stale = [i for i in items if i.array.shape != shape]
            if stale:
                # A new version with another input size went live while these were queued.
                error = UnavailableError("the model version changed during the request; retry")
                items = [i for i in items if i.array.shape == shape]
                done = [(i.future, None, error) for i in stale]
                if not items:
                    return done, 0
                answers, flying = self._forward(items, streamed)
                return done + answers, flying
            mode = self.fault.current(slot.name)
            if mode == "error":
                raise RuntimeError("injected fault")
            if mode == "slow":
                time.sleep(self.fault.seconds)
                self.cost.stalled_s = self.fault.seconds
            inputs = np.stack([i.array for i in items])
            self.metrics.batch_size.labels(slot.name).observe(len(items))
            if streamed:
                self._start(items, model, inputs)
                return [], len(items)
            began = time.perf_counter()
            if self.embeddings:
                outputs = model.backend.infer(inputs)
            else:
                outputs = model.backend.forward(inputs), None
            return self._answers(items, model, outputs, began), 0
        except Exception as exc:
            return failed(items, exc), 0

    def _start(self, items: list[QueuedImage], model: LoadedModel, inputs: np.ndarray) -> None:
        flight = Flight(items, model)
        backend = cast(StreamBackend, model.backend)
        flight.running = backend.start(inputs, partial(self._ended, flight))
        with self._cv:
            self._flights.append(flight)

    def _ended(self, flight: Flight) -> None:
        """A stream finished `flight` (called on the runtime's thread): wake the thread."""
        with self._cv:
            flight.ended = True
            self._cv.notify()

    def _land(self, flight: Flight) -> None:
        """Answer a batch that ended on its stream."""
        try:
            outputs = flight.running.result()
            results = self._answers(flight.items, flight.model, outputs, flight.began)
        except Exception as exc:
            results = failed(flight.items, exc)
        finally:
            with self._cv:
                self._running -= len(flight.items)
        post(flight.items[0].loop, results)

    def _answers(
        self,
        items: list[QueuedImage],
        model: LoadedModel,
        outputs: tuple[np.ndarray, np.ndarray | None],
        began: float,
    ) -> list[Answer]:
        """Count a finished batch (the cost per image, the forward's duration) and pair each
        image's outputs with its future."""
        took = time.perf_counter() - began
        self.cost.learn(min(i.enqueued for i in items), len(items))
        self.metrics.model_duration.labels(items[0].slot.name).observe(took)
        return answers(items, model, outputs)
