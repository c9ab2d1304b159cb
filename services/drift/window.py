"""The window the drift monitor judges, as counts over the reference's bins, for one version.

Built from prediction-log records (`from_records`) or from Prometheus (`services.drift.source`);
the statistics see only this, so both sources give the same numbers for the same traffic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.drift import stats

NUMERIC = ("brightness", "contrast", "confidence")
# One record of the log: brightness, contrast, predicted class, confidence, model version,
# served model name.
Record = tuple[float, float, str, float, str, str]


@dataclass
class Window:
    """Per numeric feature: counts per reference bin and the sum of the values; class counts."""

    version: str
    size: float
    counts: dict[str, np.ndarray] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=dict)
    classes: dict[str, float] = field(default_factory=dict)

    def mean(self, feature: str) -> float:
        return self.sums[feature] / self.size if self.size else float("nan")


def edges_of(reference: Mapping[str, Any], feature: str) -> list[float]:
    """The bin edges of a numeric feature's reference histogram."""
    return [float(e) for e in reference[feature]["edges"]]


def from_records(
    records: Iterable[Record], reference: Mapping[str, Any], version: str = ""
) -> Window:
    """Bin log records the way the service's histograms bin observations."""
    rows = list(records)
    columns = {"brightness": 0, "contrast": 1, "confidence": 3}
    window = Window(version=version, size=float(len(rows)))
    for feature, column in columns.items():
        values = np.array([row[column] for row in rows], dtype=np.float64)
        window.counts[feature] = stats.bin_counts(values, edges_of(reference, feature))
        window.sums[feature] = float(values.sum())
    for row in rows:
        window.classes[row[2]] = window.classes.get(row[2], 0.0) + 1.0
    return window
