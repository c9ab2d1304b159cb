"""Maximum mean discrepancy between two samples, with a permutation p-value.

The statistic is the unbiased MMD^2 (Gretton et al., 2012) under a Gaussian (RBF) kernel whose
bandwidth is the median pairwise distance of the pooled sample (the median heuristic). The null
distribution comes from permuting the pooled sample's labels, drawn from a seeded generator, so
the same two samples always give the same p-value. The kernel matrix of the pooled sample is
computed once; each permutation only re-sums it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_PERMUTATIONS = 200


@dataclass(frozen=True)
class MMDResult:
    mmd2: float
    p_value: float
    bandwidth: float
    n_reference: int
    n_current: int


def _sq_distances(pooled: np.ndarray) -> np.ndarray:
    norms = np.einsum("ij,ij->i", pooled, pooled)
    d2 = norms[:, None] + norms[None, :] - 2.0 * (pooled @ pooled.T)
    return np.maximum(d2, 0.0)


def median_bandwidth(d2: np.ndarray) -> float:
    """The median of the off-diagonal pairwise distances (not squared); 1.0 if all coincide."""
    upper = d2[np.triu_indices(len(d2), k=1)]
    median = float(np.sqrt(np.median(upper))) if len(upper) else 0.0
    return median if median > 0 else 1.0


def _mmd2(kernel: np.ndarray, total: float, first: np.ndarray) -> float:
    """Unbiased MMD^2 of the split `first` (0/1 floats) vs the rest, from one matrix-vector
    product; the RBF kernel's diagonal is 1, so each block's trace is its size."""
    second = 1.0 - first
    m, n = float(first.sum()), float(second.sum())
    k_first = kernel @ first
    sxx = float(first @ k_first)
    sxy = float(second @ k_first)
    syy = total - sxx - 2.0 * sxy
    return (sxx - m) / (m * (m - 1)) + (syy - n) / (n * (n - 1)) - 2.0 * sxy / (m * n)


def mmd_test(
    reference: np.ndarray,
    current: np.ndarray,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
) -> MMDResult:
    """MMD^2 of (m, k) `reference` vs (n, k) `current` and the permutation p-value.

    p = (1 + #{permuted statistic >= observed}) / (1 + permutations), so it is never 0.
    """
    if reference.ndim != 2 or current.ndim != 2 or reference.shape[1] != current.shape[1]:
        raise ValueError("both samples must be 2-D with the same number of columns")
    if len(reference) < 2 or len(current) < 2:
        raise ValueError("each sample needs at least two rows")
    pooled = np.concatenate([reference, current]).astype(np.float64)
    d2 = _sq_distances(pooled)
    bandwidth = median_bandwidth(d2)
    kernel = np.exp(-d2 / (2.0 * bandwidth**2))
    total = float(kernel.sum())
    first = np.zeros(len(pooled))
    first[: len(reference)] = 1.0
    observed = _mmd2(kernel, total, first)
    rng = np.random.default_rng(seed)
    exceed = 0
    for _ in range(permutations):
        exceed += _mmd2(kernel, total, rng.permutation(first)) >= observed
    p_value = (1 + exceed) / (1 + permutations)
    return MMDResult(observed, float(p_value), bandwidth, len(reference), len(current))
