"""The drift inputs the inference service exports, and how the drift monitor reads them back:
one histogram bin per reference bin, series of loaded versions only."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import generate_latest

from services.drift import stats
from services.drift.source import SourceError, bins
from services.inference.metrics import UNIT_BUCKETS, Metrics
from slipway.contract.reference import UNIT_EDGES, histogram
from tests.services.inference_helpers import metric_value


def test_the_buckets_are_the_reference_bin_edges() -> None:
    reference = histogram(np.random.default_rng(0).uniform(0, 1, 100))
    assert list(UNIT_BUCKETS) == reference["edges"][1:] == list(UNIT_EDGES[1:])


def test_only_the_loaded_version_has_series() -> None:
    metrics = Metrics()
    metrics.set_drift_version("fashion", "1", ["bag", "shirt"])
    metrics.observe_prediction("fashion", "1", "bag", 0.9, (0.3, 0.2))
    text = generate_latest(metrics.registry).decode()
    assert (
        metric_value(text, "slipway_inference_predictions_total", version="1", **{"class": "bag"})
        == 1
    )
    assert metric_value(text, "slipway_inference_input_contrast_count", version="1") == 1
    metrics.set_drift_version("fashion", "2", ["bag", "shirt"])
    text = generate_latest(metrics.registry).decode()
    assert 'version="1"' not in text
    # The new version's series exist at 0 before its first request, so increase() counts it.
    assert 'slipway_inference_input_brightness_count{model="fashion",version="2"} 0.0' in text
    assert (
        'slipway_inference_predictions_total{class="shirt",model="fashion",version="2"} 0.0' in text
    )


def test_cumulative_buckets_become_the_same_counts_as_binning_the_values() -> None:
    values = np.array([0.0, 0.05, 0.07, 0.5, 0.95, 1.0, 1.0])
    edges = list(UNIT_EDGES)
    cumulative = {f"{le}": float((values <= le).sum()) for le in edges[1:]}
    cumulative["+Inf"] = float(len(values))
    assert bins(cumulative, edges, "x").tolist() == stats.bin_counts(values, edges).tolist()


def test_buckets_that_are_not_the_reference_bins_are_refused() -> None:
    with pytest.raises(SourceError, match="not the reference's bin edges"):
        bins({"0.5": 1.0, "1.0": 2.0, "+Inf": 2.0}, list(UNIT_EDGES), "x")


def test_a_late_answer_of_an_unloaded_version_is_removed_at_the_next_swap() -> None:
    metrics = Metrics()
    metrics.set_drift_version("fashion", "2", ["bag"])
    metrics.observe_prediction("fashion", "1", "bag", 0.5, (0.1, 0.1))  # still in flight
    assert 'version="1"' in generate_latest(metrics.registry).decode()
    metrics.set_drift_version("fashion", "3", ["bag"])
    text = generate_latest(metrics.registry).decode()
    assert 'version="1"' not in text and 'version="2"' not in text
