"""Loading a slot's first version and following its source afterwards (hot reload).

Only a source that can move is followed: an alias, `models:/NAME` (the newest version), a
folder or an object-store URI. A pinned version is loaded once.

A new version is fetched and opened off the event loop, warmed on the inference thread, and
only then swapped in. A version that fails to load or warm is refused (logged, counted in
`slipway_inference_reloads_total{result="failure"}`) and the old one keeps serving; the same
refused version is not tried again until the source points at another one.

Once a version is live the heap is collected and frozen (`freeze_heap`): what a process holds
after loading (modules, the runtime's bindings, the app: about 100,000 objects) lives as long
as it does, and every full collection of the cyclic garbage collector would traverse it again,
a pause of the event loop and the inference thread of 14 ms on an idle machine and 40-160 ms
under load on 2 cores, which lands in the latency tail. Frozen objects are still freed by
reference counting, and each new version unfreezes and collects first, so a version swapped
out (cycles included) is not kept; `thaw_heap` on shutdown hands everything back.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable

from services.inference.batching import InferenceWorker
from services.inference.metrics import Metrics
from services.inference.model import LoadedModel, ModelSlot, load_version
from services.inference.runtime import RuntimeOptions
from services.inference.settings import Settings
from services.inference.source import Resolved

log = logging.getLogger(__name__)

INITIAL_RETRY_S = 5.0


class Loader:
    """Loads versions into slots; one per app."""

    def __init__(self, settings: Settings, worker: InferenceWorker, metrics: Metrics) -> None:
        self.settings = settings
        self.worker = worker
        self.metrics = metrics
        self.refused: dict[str, set[str]] = {}
        self.last_error: dict[str, str] = {}

    async def load(self, slot: ModelSlot, resolved: Resolved) -> LoadedModel:
        """Fetch, open and warm one version; raises on any failure without touching the slot."""
        s = self.settings
        options = RuntimeOptions.from_settings(s)
        model = await asyncio.to_thread(load_version, slot.source, resolved, slot.name, options)
        await self.worker.call(lambda: model.warm(s.max_batch_size))
        return model

    def install(self, slot: ModelSlot, model: LoadedModel) -> None:
        """Swap in a warmed version and point the metrics at it."""
        slot.swap(model)
        r = model.resolved
        self.metrics.set_model_info(
            slot.name, r.version, r.alias, model.card.arch, r.created,
            model.backend.name, model.backend.precision,
        )  # fmt: skip
        self.metrics.ready.labels(slot.name).set(1)
        self.metrics.set_drift_version(slot.name, r.version, model.classes)
        self.last_error.pop(slot.name, None)
        freeze_heap()

    async def initial(self, slot: ModelSlot, stopping: Callable[[], bool]) -> None:
        """Load the first version, retrying until it works (the registry may not be up yet)."""
        while not stopping():
            try:
                resolved = await asyncio.to_thread(slot.source.resolve)
                self.install(slot, await self.load(slot, resolved))
                log.info("%s ready: version %s", slot.name, resolved.version)
                return
            except Exception as exc:
                self.last_error[slot.name] = str(exc)
                log.error("cannot load %s from %s: %s", slot.name, slot.source.source, exc)
            await asyncio.sleep(min(INITIAL_RETRY_S, self.settings.reload_interval_s or 5.0))

    async def check(self, slot: ModelSlot) -> bool:
        """Load the source's current version if it moved; True when a new version went live."""
        try:
            resolved = await asyncio.to_thread(slot.source.resolve)
        except Exception as exc:
            if slot.source_ok:
                log.warning("cannot resolve %s: %s", slot.source.source, exc)
            slot.source_ok = False
            return False
        if not slot.source_ok:
            log.info("%s resolves again: version %s", slot.source.source, resolved.version)
        slot.source_ok = True
        current = slot.current
        refused = self.refused.setdefault(slot.name, set())
        if current is None or resolved.version == current.version or resolved.version in refused:
            return False
        log.info("%s: version %s -> %s", slot.name, current.version, resolved.version)
        try:
            model = await self.load(slot, resolved)
        except Exception as exc:
            refused.add(resolved.version)
            self.last_error[slot.name] = f"version {resolved.version} refused: {exc}"
            self.metrics.reloads.labels(slot.name, "failure").inc()
            log.error(
                "%s: refused version %s, still serving %s: %s",
                slot.name, resolved.version, current.version, exc,
            )  # fmt: skip
            return False
        self.install(slot, model)
        self.metrics.reloads.labels(slot.name, "success").inc()
        log.info("%s: now serving version %s", slot.name, model.version)
        return True

    async def follow(self, slot: ModelSlot, stopping: Callable[[], bool]) -> None:
        """The slot's life: first load, then poll every RELOAD_INTERVAL_S (0: never).

        A pinned source (`models:/NAME/3`, a logged model, a run) is never polled: it cannot
        name another version, whatever happens to the aliases.
        """
        await self.initial(slot, stopping)
        if not slot.source.follows:
            log.info("%s is pinned to %s; no reload checks", slot.name, slot.source.source)
            return
        interval = self.settings.reload_interval_s
        while interval > 0 and not stopping():
            await asyncio.sleep(interval)
            await _guard(self.check(slot), slot.name)


async def _guard(step: Awaitable[bool], name: str) -> None:
    try:
        await step
    except Exception:
        log.exception("reload check of %s failed", name)


def freeze_heap() -> None:
    """Collect everything once, then keep every object alive now out of later collections.
    What an earlier freeze kept (a version swapped out since) is collected again first."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def thaw_heap() -> None:
    """Give the frozen objects back to the collector (the service is stopping)."""
    gc.unfreeze()
