"""Canary and shadow traffic inside one pod: production (the main slot) and the candidate (the
staging slot, `<name>-staging`), with no service mesh.

`canary`: a share (`CANARY_WEIGHT`) of default-route requests (those addressed to the main
model, without a version) is answered by the candidate. With the client-key header
(`CANARY_HEADER`) the choice is a hash of its value against the weight, so one client always
gets the same variant, on every pod, and keeps it while the weight only grows.
`shadow`: production answers every request; a copy of each default-route request is then
predicted by the candidate in the background, within a small share of the batcher's budget
(else dropped and counted as `shed`), and its top-1 class and confidence are compared.

A candidate that is not loaded, whose source no longer resolves (alias deleted: rolled back or
promoted) or that is not configured takes no traffic: every request goes to production and
`slipway_inference_canary_weight` reads 0.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers

from services.inference.batching import InferenceWorker
from services.inference.images import Prepared, prepare_many
from services.inference.metrics import CANARY, PRODUCTION, Metrics
from services.inference.model import LoadedModel, ModelSlot
from services.inference.queued import Prediction
from services.inference.settings import Settings

if TYPE_CHECKING:
    from starlette.types import Scope

log = logging.getLogger(__name__)

VARIANT_HEADER = "X-Slipway-Variant"
VERSION_HEADER = "X-Slipway-Model-Version"
SCOPE_KEY = "slipway.routed"
SHADOW_SHARE = 0.5  # share of the admission budget and queue shadow copies may use


@dataclass
class Routed:
    """Which slot answers one request, marked on its scope before it predicts (so its errors
    count under that slot too); the middleware reads it for labels and response headers."""

    model: str
    variant: str
    version: str = ""

    def headers(self) -> list[tuple[bytes, bytes]]:
        out = [(VARIANT_HEADER.lower().encode(), self.variant.encode())]
        if self.version:
            out.append((VERSION_HEADER.lower().encode(), self.version.encode("latin-1")))
        return out


def routed_of(scope: Scope) -> Routed | None:
    value = scope.get(SCOPE_KEY)
    return value if isinstance(value, Routed) else None


def sticky_share(key: str) -> float:
    """A client key's fixed point in [0, 1): the same on every pod and every restart."""
    digest = hashlib.sha256(key.encode("utf-8", "replace")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


class Variants:
    """Chooses production or the candidate per request, and runs shadow copies."""

    def __init__(
        self,
        settings: Settings,
        main: ModelSlot,
        candidate: ModelSlot | None,
        worker: InferenceWorker,
        metrics: Metrics,
        draining: Callable[[], bool],
        observe: Callable[[list[Prepared], list[Prediction]], None],
    ) -> None:
        self.mode = settings.canary_mode
        self.weight = settings.canary_weight
        self.header = settings.canary_header
        self.max_pixels = settings.max_image_pixels
        self.max_copies = settings.shadow_max_in_flight
        self.main = main
        self.candidate = candidate
        self.worker = worker
        self.metrics = metrics
        self.draining = draining
        self.observe = observe  # the candidate's prediction metrics (not the log)
        self._copies = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.rng = random.Random()  # tests seed it
        metrics.canary_weight.labels(main.name).set_function(self.share)
        metrics.init_shadow(main.name)

    def variant_of(self, name: str) -> str:
        """`canary` for the candidate's slot, else `production`."""
        return CANARY if self.candidate is not None and name == self.candidate.name else PRODUCTION

    @property
    def candidate_ready(self) -> bool:
        c = self.candidate
        return c is not None and c.current is not None and c.source_ok and not self.draining()

    def share(self) -> float:
        """The share of default-route traffic the candidate answers now."""
        return self.weight if self.mode == "canary" and self.candidate_ready else 0.0

    def choose(self, slot: ModelSlot, version: str | None, client_key: str | None) -> ModelSlot:
        """The slot that answers a request addressed to `slot` (and `version`, if pinned)."""
        if slot is not self.main or version or self.candidate is None:
            return slot
        share = self.share()
        if share <= 0.0:
            return slot
        point = sticky_share(client_key) if client_key else self.rng.random()
        return self.candidate if point < share else slot

    def route(
        self, scope: Scope, slot: ModelSlot, version: str | None = None
    ) -> tuple[ModelSlot, Routed]:
        """Choose for an HTTP request (client key from its header) and mark its scope."""
        chosen = self.choose(slot, version, Headers(scope=scope).get(self.header))
        routed = Routed(chosen.name, self.variant_of(chosen.name))
        scope[SCOPE_KEY] = routed
        return chosen, routed

    # Shadow ------------------------------------------------------------------------------

    def shadows(self, slot: ModelSlot) -> bool:
        return self.mode == "shadow" and slot is self.main and self.candidate_ready

    def shadow(
        self,
        production: list[Prediction],
        inputs: list[Prepared],
        payloads: list[tuple[str, bytes]] | None,
    ) -> None:
        """Copy one answered request to the candidate in the background, or count it shed."""
        candidate = self.candidate
        model = candidate.current if candidate is not None else None
        if candidate is None or model is None:
            return
        count = len(production)
        if self._copies >= self.max_copies or not self.worker.try_admit(count, SHADOW_SHARE):
            self.metrics.shadow.labels(self.main.name, "shed").inc(count)
            return
        self._copies += 1
        task = asyncio.create_task(self._copy(candidate, model, production, inputs, payloads))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._copies -= 1

    async def _copy(
        self,
        slot: ModelSlot,
        model: LoadedModel,
        production: list[Prediction],
        inputs: list[Prepared],
        payloads: list[tuple[str, bytes]] | None,
    ) -> None:
        name = self.main.name
        count = len(production)
        try:
            prepared = await self._prepared(model, production[0].model, inputs, payloads)
        except Exception as exc:
            self.worker.release(count)
            self.metrics.shadow.labels(name, "error").inc(count)
            log.warning("shadow copy to %s not prepared: %s", slot.name, exc)
            return
        try:
            answers = await self.worker.submit(slot, [p.array for p in prepared])
        except Exception as exc:
            self.metrics.shadow.labels(name, "error").inc(count)
            log.warning("shadow copy to %s failed: %s", slot.name, exc)
            return
        self.observe(prepared, answers)
        for prod, cand in zip(production, answers, strict=True):
            self.compare(prod, cand)

    async def _prepared(
        self,
        model: LoadedModel,
        production: LoadedModel,
        inputs: list[Prepared],
        payloads: list[tuple[str, bytes]] | None,
    ) -> list[Prepared]:
        """The candidate's inputs: production's when both preprocess alike, else the files
        preprocessed again by the candidate's transform (a tensor input cannot be)."""
        if model.transform == production.transform:
            return inputs
        if payloads is None:
            raise ValueError("the candidate preprocesses differently and the input was a tensor")
        return await run_in_threadpool(prepare_many, payloads, model.transform, self.max_pixels)

    def compare(self, production: Prediction, candidate: Prediction) -> None:
        """Count agreement of the top-1 classes and observe the confidence difference."""
        p_top = int(np.argmax(production.probs))
        c_top = int(np.argmax(candidate.probs))
        same = production.model.classes[p_top] == candidate.model.classes[c_top]
        name = self.main.name
        self.metrics.shadow.labels(name, "agree" if same else "disagree").inc()
        delta = float(candidate.probs[c_top]) - float(production.probs[p_top])
        self.metrics.shadow_delta.labels(name).observe(delta)

    async def stop(self) -> None:
        """Let running shadow copies finish (they are bounded), so none is cut mid-batch."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def describe(self) -> dict[str, Any]:
        """What `/v1/models` reports about the split."""
        return {
            "mode": self.mode,
            "weight": self.weight,
            "share": self.share(),
            "candidate": self.candidate.name if self.candidate else None,
            "candidate_ready": self.candidate_ready,
            "client_key_header": self.header,
        }
