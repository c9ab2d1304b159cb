"""Every metric the drift monitor exports, on a registry of its own."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Gauge

from services.drift.monitor import FEATURES, KS_FEATURES, Evaluation


class DriftMetrics:
    """`slipway_drift_*` gauges; every feature's series exists from startup on."""

    def __init__(self, psi_threshold: float, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.score = Gauge(
            "slipway_drift_score",
            "Population stability index per feature.",
            ["feature"],
            registry=r,
        )
        self.pvalue = Gauge(
            "slipway_drift_pvalue",
            "Two-sample KS test p-value per feature.",
            ["feature"],
            registry=r,
        )
        self.detected = Gauge(
            "slipway_drift_detected", "1 when the feature drifted, else 0.", ["feature"], registry=r
        )
        self.threshold = Gauge(
            "slipway_drift_threshold",
            "PSI above which a feature counts as drifted.",
            ["feature"],
            registry=r,
        )
        self.window_size = Gauge(
            "slipway_drift_window_size", "Records in the sliding window.", registry=r
        )
        self.last_evaluation = Gauge(
            "slipway_drift_last_evaluation_timestamp_seconds",
            "Unix time of the last evaluation.",
            registry=r,
        )
        self.records_read = Counter(
            "slipway_drift_records_read", "Prediction-log records read.", registry=r
        )
        self.invalid_records = Counter(
            "slipway_drift_invalid_records",
            "Prediction-log lines that could not be used.",
            registry=r,
        )
        for feature in FEATURES:
            self.score.labels(feature).set(math.nan)
            self.detected.labels(feature).set(0)
            self.threshold.labels(feature).set(psi_threshold)
        for feature in KS_FEATURES:
            self.pvalue.labels(feature).set(math.nan)

    def update(self, evaluation: Evaluation, new_records: int, new_invalid: int) -> None:
        """Publish one evaluation."""
        for feature, result in evaluation.features.items():
            self.score.labels(feature).set(result.score)
            self.detected.labels(feature).set(1 if result.detected else 0)
            self.threshold.labels(feature).set(result.threshold)
            if feature in KS_FEATURES:
                self.pvalue.labels(feature).set(
                    math.nan if result.pvalue is None else result.pvalue
                )
        self.window_size.set(evaluation.window_size)
        self.last_evaluation.set(evaluation.timestamp)
        self.records_read.inc(new_records)
        self.invalid_records.inc(new_invalid)
