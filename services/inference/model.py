"""A served model: its card, runtime and version, and the slot that swaps versions atomically."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.inference.backends import Backend
from services.inference.runtime import RuntimeOptions, candidates, open_candidates, pick_fastest
from services.inference.source import ModelSource, Resolved
from slipway.contract.card import ModelCard, load_card
from slipway.contract.preprocessing import Preprocessing
from slipway.embedding.projection import Projection, load_projection
from slipway.errors import ModelError

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """One loaded, warmed version. Immutable once serving; a reload makes a new one."""

    served_name: str
    card: ModelCard
    backend: Backend
    resolved: Resolved
    folder: Path
    loaded_at: float = field(default_factory=time.time)
    candidates: list[Backend] = field(default_factory=list)
    options: RuntimeOptions = field(default_factory=RuntimeOptions)
    autotune: list[dict[str, Any]] = field(default_factory=list)
    projection: Projection | None = None  # embedding.npz: the embedding drift reference

    @property
    def version(self) -> str:
        return self.resolved.version

    @property
    def transform(self) -> Preprocessing:
        return self._transform

    @property
    def classes(self) -> list[str]:
        return self.card.classes

    def __post_init__(self) -> None:
        self._transform = self.card.transform

    def warm(self, max_batch: int) -> None:
        """Pick the fastest candidate (`auto`), then run forwards at batch 1 and the largest
        batch; refuse a model with wrong outputs. Runs on the inference thread."""
        if len(self.candidates) > 1:
            self.backend, self.autotune = pick_fastest(
                self.candidates, self._transform.input_shape, max_batch, self.options.autotune_s
            )
        self.candidates = [self.backend]
        for size in sorted({1, max_batch}):
            batch = np.zeros((size, *self._transform.input_shape), dtype=np.float32)
            logits = self.backend.forward(batch)
            if logits.shape != (size, len(self.classes)):
                raise ModelError(
                    f"model output shape {tuple(logits.shape)} does not match "
                    f"{size} x {len(self.classes)} classes of the card"
                )
            if not np.isfinite(logits).all():
                raise ModelError("model output is not finite on a zero input")

    def about(self) -> dict[str, Any]:
        """What `/v1/models` tells about this version."""
        card = self.card
        return {
            "name": self.served_name,
            "version": self.version,
            "alias": self.resolved.alias,
            "source": self.resolved.source,
            "registered_name": self.resolved.registered_name or None,
            "run_id": self.resolved.run_id or None,
            "model_id": self.resolved.model_id or None,
            "arch": card.arch,
            "classes": card.classes,
            "input_shape": list(self._transform.input_shape),
            "preprocessing": card.preprocessing,
            "backend": self.backend.name,
            "precision": self.backend.precision,
            "runtime": {
                "requested": {"backend": self.options.backend, "precision": self.options.precision},
                "threads": self.options.threads,
                "streams": self.backend.streams,
                "int8": {k: card.export["int8"].get(k) for k in ("servable", "reason")}
                if isinstance(card.export.get("int8"), dict)
                else None,
                "autotune": self.autotune,
            },
            "metrics": card.metrics,
            "dataset": {"fingerprint": card.dataset.fingerprint, "counts": card.dataset.counts},
            "created_at": self.resolved.created,
            "loaded_at": self.loaded_at,
        }


def load_version(
    source: ModelSource, resolved: Resolved, served_name: str, options: RuntimeOptions
) -> LoadedModel:
    """Fetch and open one version (blocking: call it off the event loop).

    Under `auto` every servable backend/precision pair is opened; `warm` keeps the fastest.
    """
    folder = source.fetch(resolved)
    card = load_card(folder)
    opened = open_candidates(folder, options, candidates(options, folder, card.export))
    names = ", ".join(f"{b.name}/{b.precision}" for b in opened)
    log.info(
        "loaded %s version %s (%s; %s; %d threads)",
        served_name, resolved.version, card.arch, names, options.threads,
    )  # fmt: skip
    return LoadedModel(
        served_name,
        card,
        opened[0],
        resolved,
        folder,
        candidates=opened,
        options=options,
        projection=load_projection(folder),
    )


class ModelSlot:
    """A served name whose current version is swapped atomically by a reload.

    Requests read `current` once and keep that object for the whole request, so a swap never
    mixes two versions in one answer.
    """

    def __init__(self, name: str, source: ModelSource) -> None:
        self.name = name
        self.source = source
        self.current: LoadedModel | None = None
        # False while the source does not resolve (its alias was deleted): a candidate then
        # takes no traffic, though its last version stays loaded for requests by name.
        self.source_ok = True

    @property
    def ready(self) -> bool:
        return self.current is not None

    def swap(self, model: LoadedModel) -> LoadedModel | None:
        old, self.current = self.current, model
        return old
