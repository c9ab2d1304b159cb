"""Embedding drift from the prediction log: the same MMD test the serving pods run, per version.

The service writes the projected embedding (16 numbers) of each sampled request into its log
record (`embedding`). The monitor keeps the newest `window` of them per model version and
tests the newest version's against the projected training sample of the reference model's
`embedding.npz` with `slipway.embedding.mmd`, so the HTML report and `/v1/drift` show the verdict
the `InferenceEmbeddingDrift` alert is based on. Like the other reference statistics, the
reference must be the served model's: projections of two versions are different spaces.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections import deque
from typing import Any

import numpy as np

from services.drift.reference import reference_ref
from slipway.embedding.mmd import mmd_test
from slipway.embedding.projection import EMBEDDING_FILE, load_projection

log = logging.getLogger(__name__)

MIN_POINTS = 50  # points of one version needed before it is tested
REFERENCE_SAMPLE = 256


def load_embedding_reference(source: str, tracking_uri: str = "") -> np.ndarray | None:
    """The projected training sample of the reference model, or None if it has none."""
    try:
        ref = reference_ref(source)
        if ref.is_local:
            path = ref.local_path()
            return _sample(load_projection(path if path.is_dir() else path.parent))
        from slipway.registry.client import download, mlflow_client

        resolved = ref.resolve(mlflow_client(tracking_uri))
        with tempfile.TemporaryDirectory(prefix="slipway-drift-emb-") as tmp:
            folder = download(resolved, f"{tmp}/file", tracking_uri, EMBEDDING_FILE).parent
            return _sample(load_projection(folder))
    except Exception as exc:  # an older model without embeddings: the test is left out
        log.info("no embedding reference from %s (%s); embedding drift not tested", source, exc)
        return None


def _sample(projection: Any) -> np.ndarray | None:
    if projection is None:
        return None
    reference = projection.reference
    if len(reference) > REFERENCE_SAMPLE:
        picks = np.random.default_rng(0).choice(len(reference), REFERENCE_SAMPLE, replace=False)
        reference = reference[np.sort(picks)]
    return reference


class EmbeddingDrift:
    """Windows of logged projected embeddings per version and their test against a reference."""

    def __init__(self, window: int, p_threshold: float) -> None:
        self.window = window
        self.p_threshold = p_threshold
        self.reference: np.ndarray | None = None
        self.points: dict[str, deque[list[float]]] = {}
        self.latest = ""
        self._changed = False
        self.last: dict[str, Any] | None = None

    def observe(self, line: str) -> None:
        """Keep the embedding of one log line, if it carries one."""
        try:
            record = json.loads(line)
            point = record.get("embedding")
            version = str(record.get("version", ""))
        except (ValueError, AttributeError):
            return
        if not isinstance(point, list) or not point:
            return
        window = self.points.setdefault(version, deque(maxlen=self.window))
        window.append(point)
        self.latest = version
        self._changed = True

    def evaluate(self) -> dict[str, Any] | None:
        """The newest version's test (recomputed only when new points came in)."""
        if not self._changed:
            return self.last
        self._changed = False
        current = self.points.get(self.latest)
        if self.reference is None or current is None or len(current) < MIN_POINTS:
            self.last = None
            return None
        values = np.asarray(current, dtype=np.float64)
        if values.shape[1] != self.reference.shape[1]:
            log.warning("logged embeddings do not match the reference's dimensions")
            self.last = None
            return None
        result = mmd_test(self.reference, values, seed=0)
        self.last = {
            "version": self.latest,
            "mmd2": result.mmd2,
            "p_value": result.p_value,
            "points": result.n_current,
            "reference_points": result.n_reference,
            "threshold": self.p_threshold,
            "detected": result.p_value < self.p_threshold,
        }
        return self.last
