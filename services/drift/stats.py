"""Drift statistics on plain arrays: population stability index and a two-sample KS test.

PSI bins come from the reference itself (equal-mass quantile bins over its raw values), so no
bin is nearly empty on the reference side. Counts get half a pseudo-count per bin (Jeffreys), so
a bin that is empty in a small sample costs a little, not log(1 / epsilon).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats as scipy_stats

PSI_BINS = 10
PSEUDO_COUNT = 0.5


def quantile_edges(reference: np.ndarray, bins: int = PSI_BINS) -> np.ndarray:
    """Inner bin edges that split the reference values into `bins` parts of equal mass."""
    inner = np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(inner)


def bin_counts(values: np.ndarray, inner_edges: np.ndarray) -> np.ndarray:
    """Values per bin; the outer bins are open, so nothing falls outside."""
    index = np.searchsorted(inner_edges, values, side="right")
    return np.bincount(index, minlength=len(inner_edges) + 1).astype(np.float64)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two count vectors over the same bins."""
    e = np.asarray(expected, dtype=np.float64) + PSEUDO_COUNT
    a = np.asarray(actual, dtype=np.float64) + PSEUDO_COUNT
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def continuous_psi(reference: np.ndarray, current: np.ndarray, bins: int = PSI_BINS) -> float:
    """PSI of a numeric feature on reference-quantile bins."""
    edges = quantile_edges(reference, bins)
    return psi(bin_counts(reference, edges), bin_counts(current, edges))


def histogram_psi(edges: Sequence[float], counts: Sequence[float], current: np.ndarray) -> float:
    """PSI against a stored histogram, for references that kept no raw values."""
    inner = np.asarray(edges, dtype=np.float64)[1:-1]
    return psi(np.asarray(counts, dtype=np.float64), bin_counts(current, inner))


def categorical_psi(
    reference: Mapping[str, float], current: Sequence[str], reference_n: float
) -> float:
    """PSI of a class mix given as shares of `reference_n` samples.

    Labels the reference does not know fall into one extra bin.
    """
    names = list(reference)
    index = {name: i for i, name in enumerate(names)}
    counts = np.zeros(len(names) + 1)
    for label in current:
        counts[index.get(label, len(names))] += 1
    expected = np.array([reference[n] for n in names] + [0.0], dtype=np.float64) * reference_n
    if counts[-1] == 0:
        expected, counts = expected[:-1], counts[:-1]
    return psi(expected, counts)


def ks_pvalue(reference: np.ndarray, current: np.ndarray) -> float:
    """p-value of the two-sample Kolmogorov-Smirnov test (small means different)."""
    if len(reference) == 0 or len(current) == 0:
        return float("nan")
    return float(scipy_stats.ks_2samp(reference, current).pvalue)
