"""Reference statistics for drift monitoring, stored as `reference.json` in the model folder.

They describe the training data (brightness, contrast, class mix) and the model's behaviour on
the test split (confidence, predicted-class mix), which is what served traffic is compared with.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

REFERENCE_FILE = "reference.json"
MAX_VALUES = 5000
# Bins of every histogram in a reference and in the drift monitor.
HIST_BINS = 20
# Their edges for values in [0, 1] (brightness, contrast, confidence): the upper edges are the
# buckets of the inference service's drift histograms, so Prometheus holds the same bins.
UNIT_EDGES = tuple(round(float(e), 4) for e in np.linspace(0.0, 1.0, HIST_BINS + 1))


def histogram(values: np.ndarray, low: float = 0.0, high: float = 1.0) -> dict[str, Any]:
    edges = np.linspace(low, high, HIST_BINS + 1)
    counts, _ = np.histogram(np.clip(values, low, high), bins=edges)
    rng = np.random.default_rng(0)
    sample = values if len(values) <= MAX_VALUES else rng.choice(values, MAX_VALUES, replace=False)
    return {
        "edges": [round(float(e), 4) for e in edges],
        "counts": counts.astype(int).tolist(),
        "mean": float(values.mean()) if len(values) else 0.0,
        "std": float(values.std()) if len(values) else 0.0,
        "values": [round(float(v), 5) for v in sample],
    }


def prediction_reference(probs: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """The model's own output statistics on held-out data."""
    confidence = probs.max(axis=1)
    predicted = np.bincount(probs.argmax(axis=1), minlength=len(classes)).astype(float)
    return {
        "confidence": histogram(confidence),
        "predicted_class_frequencies": dict(
            zip(classes, (predicted / max(predicted.sum(), 1)).tolist(), strict=True)
        ),
    }


def write_reference(model_dir: str | os.PathLike[str], update: dict[str, Any]) -> Path:
    """Merge `update` into the folder's reference.json."""
    path = Path(model_dir) / REFERENCE_FILE
    current = json.loads(path.read_text()) if path.is_file() else {}
    current.update(update)
    path.write_text(json.dumps(current))
    return path


def load_reference(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read reference.json from a model folder or a file path."""
    target = Path(path)
    if target.is_dir():
        target = target / REFERENCE_FILE
    return json.loads(target.read_text())
