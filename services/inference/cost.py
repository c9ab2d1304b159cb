"""The inference thread's recent cost per image, which admission and deadlines are judged by.

It is the time of a batch's whole cycle, not just its forward: from the end of the previous
batch (or the oldest arrival, if the thread was idle) to the end of this one. On a small machine
the forward shares the cores with decoding and HTTP, so the rate the queue really drains at is
lower than the bare forward suggests.
"""

from __future__ import annotations

import time

COST_SMOOTHING = 0.2  # weight of the newest batch in the per-image cost average
# A batch is judged late when even a slow forward (the mean cost per image plus this many mean
# deviations, as TCP sizes its retransmission timer) would answer it after its deadline.
SLOW_DEVIATIONS = 2.0


class ImageCost:
    """Seconds per image through the inference thread, smoothed, and their mean deviation."""

    def __init__(self) -> None:
        self.mean_s = 0.0  # 0 until the first batch is measured
        self.dev_s = 0.0
        self.stalled_s = 0.0  # seconds of an injected `slow` fault in the current batch
        self._last_end = 0.0

    @property
    def slow_s(self) -> float:
        """A slow forward's seconds per image: the mean plus `SLOW_DEVIATIONS` deviations."""
        return self.mean_s + SLOW_DEVIATIONS * self.dev_s

    def learn(self, oldest_enqueued: float, count: int) -> None:
        """Count the batch of `count` images that just ended, the oldest queued at
        `oldest_enqueued` (time.monotonic())."""
        now = time.monotonic()
        began = max(self._last_end, oldest_enqueued)
        self._last_end = now
        # An injected stall stands for a slow model the latency alerts must see, not shed.
        per_image_s = max(0.0, now - began - self.stalled_s) / count
        self.stalled_s = 0.0
        previous = self.mean_s
        if not previous:
            self.mean_s = per_image_s
            return
        error = per_image_s - previous
        self.mean_s = previous + COST_SMOOTHING * error
        self.dev_s += COST_SMOOTHING * (abs(error) - self.dev_s)
