"""The one list of metric names that dashboards and alerts may query.

`CONTRACT` is the metric interface of the inference service and the drift monitor that the
dashboards, alerts and autoscaling rely on; `service_series()` reads the names from the services'
real registries, and a test checks that the contract and the code agree.
"""

from __future__ import annotations

from functools import cache
from typing import Literal

Kind = Literal["counter", "gauge", "histogram"]

CONTRACT: dict[str, Kind] = {
    "slipway_inference_requests_total": "counter",
    "slipway_inference_request_duration_seconds": "histogram",
    "slipway_inference_model_duration_seconds": "histogram",
    "slipway_inference_batch_size": "histogram",
    "slipway_inference_queue_depth": "gauge",
    "slipway_inference_in_flight_requests": "gauge",
    "slipway_inference_rejected_total": "counter",
    "slipway_inference_prediction_confidence": "histogram",
    "slipway_inference_predictions_total": "counter",
    "slipway_inference_input_brightness": "histogram",
    "slipway_inference_input_contrast": "histogram",
    "slipway_inference_model_info": "gauge",
    "slipway_inference_model_created_timestamp_seconds": "gauge",
    "slipway_inference_ready": "gauge",
    "slipway_inference_reloads_total": "counter",
    "slipway_inference_prediction_log_dropped_total": "counter",
    "slipway_inference_prediction_log_written_total": "counter",
    "slipway_inference_canary_weight": "gauge",
    "slipway_inference_shadow_requests_total": "counter",
    "slipway_inference_shadow_confidence_delta": "histogram",
    "slipway_inference_embedding_drift": "gauge",
    "slipway_inference_embedding_window_size": "gauge",
    "process_cpu_seconds_total": "counter",
    "process_resident_memory_bytes": "gauge",
    "slipway_drift_score": "gauge",
    "slipway_drift_pvalue": "gauge",
    "slipway_drift_detected": "gauge",
    "slipway_drift_threshold": "gauge",
    "slipway_drift_window_size": "gauge",
    "slipway_drift_last_evaluation_timestamp_seconds": "gauge",
    "slipway_drift_records_read_total": "counter",
}

# Series every Prometheus has for each target.
PROMETHEUS = {"up"}
# kube-state-metrics series the cluster-only alerts use.
KUBE_STATE_METRICS = {
    "kube_deployment_status_replicas_unavailable",
    "kube_horizontalpodautoscaler_status_current_replicas",
    "kube_horizontalpodautoscaler_spec_max_replicas",
}
# NVIDIA DCGM exporter series: only the dashboard panel marked as needing the exporter.
DCGM = {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE"}
DCGM_PANEL_PREFIX = "Requires the NVIDIA DCGM exporter"


# Histograms with negative buckets expose no _sum (OpenMetrics; prometheus_client follows it).
NO_SUM = {"slipway_inference_shadow_confidence_delta"}


def series_names(name: str, kind: Kind) -> set[str]:
    """Names of the series a metric exposes in the Prometheus text format."""
    if kind == "histogram":
        return {f"{name}_bucket", f"{name}_count"} | (set() if name in NO_SUM else {f"{name}_sum"})
    return {name}


def contract_series() -> set[str]:
    return {series for name, kind in CONTRACT.items() for series in series_names(name, kind)}


@cache
def service_series() -> frozenset[str]:
    """Series names the services define, read from their own metric registries."""
    from services.drift.metrics import DriftMetrics
    from services.inference.metrics import Metrics

    inference = Metrics()
    inference.init_model("probe", ["a", "b"])
    inference.init_shadow("probe")
    inference.canary_weight.labels("probe").set(0)
    inference.set_model_info("probe", "1", "production", "resnet18", 1.0)
    inference.set_drift_version("probe", "1", ["a", "b"])
    names: set[str] = set()
    for registry in (inference.registry, DriftMetrics(psi_threshold=0.2).registry):
        for family in registry.collect():
            names |= {sample.name for sample in family.samples}
            if family.type == "gauge":  # a labelled gauge set only later (per version)
                names.add(family.name)
    return frozenset(name for name in names if not name.endswith("_created"))
