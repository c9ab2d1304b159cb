"""The MMD two-sample test and the PCA projection (NumPy only, fast)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slipway.embedding.mmd import median_bandwidth, mmd_test
from slipway.embedding.projection import fit_projection, load_projection


def _sample(seed: int, n: int = 150, shift: float = 0.0) -> np.ndarray:
    data = np.random.default_rng(seed).standard_normal((n, 16))
    data[:, 0] += shift
    return data


def test_same_distribution_gives_high_p_values() -> None:
    """Under the null the p-value is uniform: few small ones, a mean near one half."""
    p_values = np.array(
        [mmd_test(_sample(s), _sample(100 + s), permutations=100).p_value for s in range(20)]
    )
    assert (p_values < 0.05).mean() <= 0.2 and 0.3 < p_values.mean() < 0.7


def test_a_shift_gives_a_low_p_value_and_a_larger_statistic() -> None:
    same = mmd_test(_sample(1), _sample(2))
    shifted = mmd_test(_sample(1), _sample(2, shift=1.0))
    assert shifted.p_value < 0.01 and shifted.mmd2 > same.mmd2
    assert shifted.p_value == pytest.approx(1 / 201)  # no permutation reached it


def test_a_class_subset_is_detected() -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((10, 16)) * 3
    labels = rng.integers(0, 10, 400)
    reference = centres[labels[:200]] + rng.standard_normal((200, 16))
    two = labels[200:][labels[200:] < 2][:60]
    current = centres[two] + rng.standard_normal((len(two), 16))
    assert mmd_test(reference, current).p_value < 0.01


def test_the_test_is_seeded() -> None:
    a, b = _sample(3), _sample(4, shift=0.2)
    assert mmd_test(a, b, seed=7) == mmd_test(a, b, seed=7)


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="same number of columns"):
        mmd_test(_sample(1), _sample(2)[:, :3])
    with pytest.raises(ValueError, match="two rows"):
        mmd_test(_sample(1)[:1], _sample(2))


def test_median_bandwidth_of_identical_points_is_one() -> None:
    assert median_bandwidth(np.zeros((4, 4))) == 1.0


def test_projection_round_trips_through_the_folder(tmp_path: Path) -> None:
    vectors = np.random.default_rng(0).standard_normal((64, 40)).astype(np.float32)
    vectors[:, 0] *= 10  # one dominant direction
    projection = fit_projection(vectors, dims=16)
    assert projection.dims == 16 and projection.features == 40
    assert abs(abs(float(projection.components[0, 0])) - 1.0) < 0.05
    projection.save(tmp_path)
    loaded = load_projection(tmp_path)
    assert loaded is not None
    np.testing.assert_allclose(loaded.project(vectors), projection.reference, atol=1e-5)
    assert load_projection(tmp_path / "missing") is None
