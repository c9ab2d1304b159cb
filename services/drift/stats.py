"""Drift statistics on binned counts: population stability index and a two-sample KS test.

Both work on counts over the reference's own histogram bins, so the window can come from the
prediction log (values binned here) or from Prometheus (the service's histograms use the same
edges as buckets) and give the same numbers. A value belongs to the bin whose upper edge is the
first >= it (Prometheus's `le`); the outer bins are open, so nothing falls outside. Counts get
half a pseudo-count per bin (Jeffreys) in the PSI, so a bin that is empty in a small sample
costs a little, not log(1 / epsilon).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats as scipy_stats

PSEUDO_COUNT = 0.5


def bin_counts(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Values per bin of a histogram with these edges (len(edges) - 1 bins)."""
    inner = np.asarray(edges, dtype=np.float64)[1:-1]
    index = np.searchsorted(inner, np.asarray(values, dtype=np.float64), side="left")
    return np.bincount(index, minlength=len(inner) + 1).astype(np.float64)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two count vectors over the same bins."""
    e = np.asarray(expected, dtype=np.float64) + PSEUDO_COUNT
    a = np.asarray(actual, dtype=np.float64) + PSEUDO_COUNT
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def categorical_psi(
    reference: Mapping[str, float], current: Mapping[str, float], reference_n: float
) -> float:
    """PSI of a class mix: `reference` as shares of `reference_n` samples, `current` as counts.

    Labels the reference does not know fall into one extra bin.
    """
    names = list(reference)
    counts = np.zeros(len(names) + 1)
    for label, count in current.items():
        counts[names.index(label) if label in reference else len(names)] += count
    expected = np.array([reference[n] for n in names] + [0.0], dtype=np.float64) * reference_n
    if counts[-1] == 0:
        expected, counts = expected[:-1], counts[:-1]
    return psi(expected, counts)


def binned_ks_pvalue(reference: np.ndarray, current: np.ndarray) -> float:
    """p-value of the two-sample Kolmogorov-Smirnov test on two histograms over the same bins
    (small means different): the largest gap of the two CDFs at the bin edges, with the
    asymptotic distribution for the effective sample size."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    n, m = ref.sum(), cur.sum()
    if n <= 0 or m <= 0:
        return float("nan")
    gap = float(np.max(np.abs(np.cumsum(ref) / n - np.cumsum(cur) / m)))
    return float(scipy_stats.kstwobign.sf(gap * np.sqrt(n * m / (n + m))))
