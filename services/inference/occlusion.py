"""Occlusion sensitivity: how much the top class's probability drops when a patch is hidden.

Pure NumPy over already preprocessed (C, H, W) inputs, so it runs with any backend: the
occluded copies are ordinary images for the batcher. A patch is filled with 0 in the normalised
input space, which is the training mean of every channel: the least informative value the
model knows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FILL = 0.0  # the normalised training mean


@dataclass(frozen=True)
class OcclusionPlan:
    """Where the patches go on a square input of side `size`."""

    size: int
    patch: int
    stride: int
    starts: tuple[int, ...]  # top-left offsets along each axis (the same on both)

    @property
    def cells(self) -> int:
        return len(self.starts) ** 2

    @property
    def forwards(self) -> int:
        """Images one explanation runs: every occluded copy and the original."""
        return self.cells + 1


def plan(size: int, patch: int, stride: int) -> OcclusionPlan:
    """Patch offsets every `stride` pixels, the last one flush with the edge so all is covered."""
    if not 1 <= patch <= size:
        raise ValueError(f"patch must be between 1 and the input size {size}, got {patch}")
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}")
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return OcclusionPlan(size, patch, stride, tuple(starts))


def occluded(array: np.ndarray, layout: OcclusionPlan) -> list[np.ndarray]:
    """One copy of the (C, H, W) `array` per cell, row-major, with that cell's patch filled."""
    copies = []
    p = layout.patch
    for y in layout.starts:
        for x in layout.starts:
            copy = array.copy()
            copy[:, y : y + p, x : x + p] = FILL
            copies.append(copy)
    return copies


def sensitivity(
    base: float, occluded_probs: np.ndarray, layout: OcclusionPlan
) -> tuple[np.ndarray, np.ndarray]:
    """(grid, pixel map): the probability drop of each cell, row-major (rows x cols), and per
    input pixel the mean drop of the cells covering it."""
    n = len(layout.starts)
    grid = (base - occluded_probs).reshape(n, n).astype(np.float32)
    total = np.zeros((layout.size, layout.size), dtype=np.float64)
    count = np.zeros_like(total)
    p = layout.patch
    for i, y in enumerate(layout.starts):
        for j, x in enumerate(layout.starts):
            total[y : y + p, x : x + p] += grid[i, j]
            count[y : y + p, x : x + p] += 1
    return grid, (total / np.maximum(count, 1)).astype(np.float32)
