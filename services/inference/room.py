"""Room in the inference queue, judged by time first: what a request would wait, held and
reserved room, and refusals with 503 + Retry-After (the batcher's admission side).

A request whose expected wait (images queued, being decoded or in the running batches, times
the recent time per image through the inference thread) exceeds the budget is refused at once,
so the requests that are accepted are answered within it at any offered load. The count bound
(`max_queue`) stays as a backstop.
"""

from __future__ import annotations

import math
import threading
from collections import deque

from services.inference.cost import ImageCost
from services.inference.errors import UnavailableError
from services.inference.metrics import Metrics
from services.inference.model import ModelSlot
from services.inference.queued import QueuedImage

# Every wait counts this share of the budget for the answer's way back (the loop, the socket,
# the client), which the server cannot time.
ANSWER_SHARE = 0.10


class QueueRoom:
    """The queue's images and reservations under one lock, and who may join them."""

    def __init__(self, metrics: Metrics, max_queue: int = 256, budget_s: float = 0.0) -> None:
        self.metrics = metrics
        self.max_queue = max_queue
        self.budget_s = budget_s
        self.cost = ImageCost()
        self.loop_lag_s = 0.0  # the event loop's recent delay (admission.LoopLag sets it)
        self._running = 0  # images in the batches being run or in flight
        self._cv = threading.Condition()
        self._items: deque[QueuedImage] = deque()
        self._reserved = 0
        self._closing = False

    @property
    def image_cost_s(self) -> float:
        """Recent seconds per image through the inference thread; 0 until measured."""
        return self.cost.mean_s

    @image_cost_s.setter
    def image_cost_s(self, seconds: float) -> None:
        self.cost.mean_s = seconds

    @property
    def pending(self) -> int:
        """Images queued or reserved (being decoded)."""
        return len(self._items) + self._reserved

    @property
    def busy(self) -> bool:
        """Images queued, reserved or running (read without the lock: a hint, not a count)."""
        return self.pending > 0 or self._running > 0

    def expected_wait_s(self, count: int = 1) -> float:
        """Seconds until `count` more images would be answered: the event loop's delay, the
        queue ahead and these images at the recent cost per image, and the answer's way back
        (`ANSWER_SHARE` of the budget)."""
        queue = (self.pending + self._running + count) * self.image_cost_s
        return self.loop_lag_s + queue + ANSWER_SHARE * self.budget_s

    def hold(self) -> tuple[int, float]:
        """Room for one image for a request whose body is still to be read, if its expected
        wait is within the budget: (images held, 0 or 1; the expected wait). Nothing is held
        while draining, with a wait of 0: the route's `admit` refuses it as draining."""
        with self._cv:
            if self._closing:
                return 0, 0.0
            wait = self.expected_wait_s(1)
            if wait > self.budget_s:
                return 0, wait
            self._reserved += 1
            return 1, wait

    def admit(
        self,
        slot: ModelSlot,
        count: int,
        budget_s: float | None = None,
        reason: str = "over_budget",
        ahead_only: bool = False,
        held: int = 0,
    ) -> None:
        """Reserve room for `count` images or refuse now with 503 (over the time budget, queue
        full or draining).

        `budget_s` replaces the queue-wait budget (explanations pass a smaller one, so they are
        shed before predictions) and `reason` is the rejection's label when it is exceeded.
        `ahead_only` judges the wait until the first of the images starts, not the last: an
        explanation's own images are bounded by their own limit, the queue ahead by this one.
        `held` images of room (`hold`) become part of this reservation, or are given back.
        """
        budget = self.budget_s if budget_s is None else budget_s
        with self._cv:
            self._reserved -= held
            if self._closing:
                self.metrics.rejected.labels(slot.name, "draining").inc()
                raise UnavailableError("the server is shutting down", reason="draining")
            wait = self.expected_wait_s(1 if ahead_only else count)
            if budget and wait > budget:
                self.metrics.rejected.labels(slot.name, reason).inc()
                raise UnavailableError(
                    f"overloaded: expected wait {wait * 1000:.0f} ms exceeds the budget of "
                    f"{budget * 1000:.0f} ms",
                    reason=reason,
                    retry_after=max(1, math.ceil(wait - budget)),
                )
            if self.pending + count > self.max_queue:
                self.metrics.rejected.labels(slot.name, "queue_full").inc()
                raise UnavailableError(
                    f"overloaded: {self.pending} images queued (limit {self.max_queue})",
                    reason="queue_full",
                )
            self._reserved += count

    def try_admit(self, count: int, share: float) -> bool:
        """Reserve room for optional work (shadow copies) only while the expected wait stays
        within `share` of the budget and of the queue; False, and nothing reserved, otherwise.
        Refusals are the caller's to count: they are no 503 to anybody."""
        with self._cv:
            budget = self.budget_s * share
            if self._closing or (budget and self.expected_wait_s(count) > budget):
                return False
            if self.pending + count > self.max_queue * share:
                return False
            self._reserved += count
            return True

    def release(self, count: int) -> None:
        """Give back reserved room that will not be submitted (the input was bad)."""
        with self._cv:
            self._reserved -= count
            self._cv.notify()

    def deadline(self, arrived: float) -> float:
        """When a prediction that reached the server at `arrived` (time.monotonic()) is due:
        the admission budget later; inf without a budget."""
        return arrived + self.budget_s if self.budget_s else math.inf
