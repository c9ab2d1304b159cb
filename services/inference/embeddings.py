"""Embedding drift inside the serving pod: sampled, projected embeddings per model version, and
their MMD test against the training reference, published as gauges.

Each served image's penultimate-layer vector comes out of the same forward as its logits. A
seeded share of them (`embedding_sample_rate`) is projected with the model folder's PCA
(`embedding.npz`) and kept in a bounded ring buffer per served name and version. A background
task tests every window that holds `embedding_min_samples` against the reference with
`slipway.embedding.mmd` and sets `slipway_inference_embedding_drift{model,version,stat}`. The
pod computes this itself, so no volume is shared with the drift monitor; with several replicas
each one tests its own traffic and the alert takes the strongest evidence.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from services.inference.metrics import EMBEDDING_STATS, Metrics
from services.inference.settings import Settings
from slipway.embedding.mmd import MMDResult, mmd_test
from slipway.embedding.projection import Projection

log = logging.getLogger(__name__)

REFERENCE_SAMPLE = 256  # reference rows per test: the kernel matrix stays small


@dataclass
class _Window:
    version: str
    reference: np.ndarray  # the projected training sample, as this precision computes it
    values: deque[np.ndarray]


class EmbeddingWindows:
    """The windows of every served name's current version; thread-safe."""

    def __init__(self, settings: Settings, metrics: Metrics, seed: int = 0) -> None:
        self.rate = settings.embedding_sample_rate
        self.size = settings.embedding_window
        self.min_samples = settings.embedding_min_samples
        self.permutations = settings.embedding_permutations
        self.metrics = metrics
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}
        self.last: dict[str, MMDResult] = {}

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def add(
        self,
        model: str,
        version: str,
        projection: Projection | None,
        embedding: np.ndarray,
        precision: str = "fp32",
    ) -> np.ndarray | None:
        """Keep a sampled share of one image's embedding (the caller's model version, served
        at `precision`); the projected point when this one was kept, else None."""
        if projection is None or self._rng.random() >= self.rate:
            return None
        point = projection.project(embedding.reshape(1, -1))[0]
        with self._lock:
            window = self._windows.get(model)
            if window is None or window.version != version:
                if window is not None:
                    self._forget(model, window.version)
                reference = projection.reference_for(precision)
                window = _Window(version, reference, deque(maxlen=self.size))
                self._windows[model] = window
            window.values.append(point)
            self.metrics.embedding_window.labels(model, version).set(len(window.values))
        return point

    def _forget(self, model: str, version: str) -> None:
        """Drop a replaced version's series, so gauges describe served versions only."""
        for stat in EMBEDDING_STATS:
            with contextlib.suppress(KeyError):
                self.metrics.embedding_drift.remove(model, version, stat)
        with contextlib.suppress(KeyError):
            self.metrics.embedding_window.remove(model, version)
        self.last.pop(model, None)

    def evaluate(self) -> dict[str, MMDResult]:
        """Test every window with enough samples; publish and return the results."""
        with self._lock:
            todo = [
                (name, w.version, w.reference, np.stack(w.values))
                for name, w in self._windows.items()
                if len(w.values) >= self.min_samples
            ]
        results: dict[str, MMDResult] = {}
        for name, version, reference, current in todo:
            if len(reference) > REFERENCE_SAMPLE:
                picks = np.random.default_rng(0).choice(len(reference), REFERENCE_SAMPLE, False)
                reference = reference[np.sort(picks)]
            result = mmd_test(reference, current, self.permutations, seed=0)
            results[name] = result
            with self._lock:
                window = self._windows.get(name)
                if window is None or window.version != version:
                    continue  # replaced while testing
                self.metrics.embedding_drift.labels(name, version, "mmd").set(result.mmd2)
                self.metrics.embedding_drift.labels(name, version, "p_value").set(result.p_value)
                self.last[name] = result
            log.debug("embedding drift %s v%s: %s", name, version, result)
        return results
