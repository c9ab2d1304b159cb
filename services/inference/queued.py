"""What waits on the inference thread: queued images, batches in flight on a stream, the
answers handed back to the event loop, and the judgement of a batch against its deadlines."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.inference.backends import Running, softmax
from services.inference.errors import InferenceError, UnavailableError
from services.inference.model import LoadedModel, ModelSlot

log = logging.getLogger(__name__)

# An image's future, and its result or error.
Answer = tuple[asyncio.Future[Any], Any, BaseException | None]


@dataclass
class Prediction:
    """The model's answer for one image, with the version that computed it."""

    logits: np.ndarray
    probs: np.ndarray
    model: LoadedModel
    embedding: np.ndarray | None = None


class QueuedImage:
    """One image of a request, waiting for its prediction."""

    __slots__ = ("array", "deadline", "enqueued", "future", "loop", "slot")

    def __init__(
        self,
        slot: ModelSlot,
        array: np.ndarray,
        loop: asyncio.AbstractEventLoop,
        deadline: float = math.inf,
    ) -> None:
        self.slot = slot
        self.array = array
        self.loop = loop
        self.deadline = deadline  # time.monotonic() its answer is due by; inf: no budget
        self.future: asyncio.Future[Prediction] = loop.create_future()
        self.enqueued = time.monotonic()


class Flight:
    """A batch started on one of its backend's streams, answered when it ends."""

    __slots__ = ("began", "ended", "items", "model", "running")

    def __init__(self, items: list[QueuedImage], model: LoadedModel) -> None:
        self.items = items
        self.model = model
        self.began = time.perf_counter()
        self.ended = False  # set by the stream's callback
        self.running: Running


def streams_of(slot: ModelSlot) -> int:
    """How many batches the slot's current backend may have in flight at once."""
    model = slot.current
    return model.backend.streams if model is not None else 1


def post(loop: asyncio.AbstractEventLoop, results: list[Answer]) -> None:
    """Hand results to the loop; if it has closed, nobody is waiting for them any more."""
    try:
        loop.call_soon_threadsafe(_settle, results)
    except RuntimeError:
        log.debug("event loop closed; dropped %d result(s)", len(results))


def _settle(results: list[Answer]) -> None:
    for future, value, error in results:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)


@dataclass
class Judged:
    """A batch sorted by its deadlines."""

    run: list[QueuedImage] = field(default_factory=list)  # answered in time in this batch
    back: list[QueuedImage] = field(default_factory=list)  # in time in a later, smaller one
    late: list[QueuedImage] = field(default_factory=list)  # not in time, even alone
    expired: list[QueuedImage] = field(default_factory=list)  # queued past the request timeout


def judge(
    batch: list[QueuedImage],
    now: float,
    per_image_s: float,
    reserve_s: float,
    timeout_s: float,
    deadlines: bool = True,
) -> Judged:
    """Which images of `batch` to run now.

    The batch is answered `reserve_s` after a slow forward of `per_image_s` per image. Images
    are taken oldest first while every one taken is still answered by its deadline; the rest
    wait for the next batch, except an image that could not be answered in time even alone.
    `deadlines=False` takes every image that has not expired. Cancelled images are dropped.
    """
    judged = Judged()
    due = math.inf  # the earliest deadline among the images taken
    for item in batch:
        if item.future.done():
            continue
        if now - item.enqueued > timeout_s:
            judged.expired.append(item)
            continue
        answered = now + (len(judged.run) + 1) * per_image_s + reserve_s
        if not deadlines or answered <= min(due, item.deadline):
            judged.run.append(item)
            due = min(due, item.deadline)
        elif judged.run:
            judged.back.append(item)
        else:
            judged.late.append(item)
    return judged


def refusals(judged: Judged, budget_s: float) -> list[Answer]:
    """The 503s of a judged batch: images queued past the request timeout, and images that
    could not be answered within the budget even alone."""
    expired = UnavailableError("timed out in the queue; overloaded", "timeout")
    late = UnavailableError(
        f"overloaded: no answer possible within the budget of {budget_s * 1000:.0f} ms",
        reason="late",
        retry_after=1,
    )
    return [(i.future, None, expired) for i in judged.expired] + [
        (i.future, None, late) for i in judged.late
    ]


def answers(
    items: list[QueuedImage], model: LoadedModel, outputs: tuple[np.ndarray, np.ndarray | None]
) -> list[Answer]:
    """Each image's prediction from a batch's (logits, embedding or None), paired with its
    future."""
    logits, embeddings = outputs
    probs = softmax(logits)
    return [
        (
            item.future,
            Prediction(logits[n], probs[n], model, None if embeddings is None else embeddings[n]),
            None,
        )
        for n, item in enumerate(items)
    ]


def failed(items: list[QueuedImage], exc: Exception) -> list[Answer]:
    """A 500 for every image of a batch whose forward failed, logged once."""
    log.error("inference of %d image(s) on %s failed: %s", len(items), items[0].slot.name, exc)
    error = InferenceError(f"inference failed: {exc}")
    return [(i.future, None, error) for i in items]
