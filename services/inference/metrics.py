"""Every Prometheus metric of the inference service, on a registry owned by one app.

A per-app `CollectorRegistry` lets tests build several apps in one process. Labels are bounded:
served model name, route template, status class, version, reason: never ids or file names.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075,
    0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
UNIT_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))
GRPC_ROUTE = "grpc"  # the route label of gRPC ModelInfer calls
KSERVE_PREDICT_ROUTE = "/v1/models/{name}:predict"
PREDICT_ROUTES = ("/v1/predict", KSERVE_PREDICT_ROUTE, "/v2/models/{name}/infer", GRPC_ROUTE)
EXPLAIN_ROUTE = "/v1/explain"  # metered apart: many forwards per request, no prediction traffic
CODE_CLASSES = ("2xx", "4xx", "5xx")
REJECT_REASONS = ("queue_full", "over_budget", "draining", "timeout", "explain_shed")
EMBEDDING_STATS = ("mmd", "p_value")


class Metrics:
    """The service's metrics; `registry` is what `/metrics` exposes."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        r = self.registry
        p = "slipway_inference_"
        self.requests = Counter(
            p + "requests_total", "Requests by route and status class (gRPC: route grpc).",
            ["model", "route", "code"], registry=r,
        )  # fmt: skip
        self.request_duration = Histogram(
            p + "request_duration_seconds", "Time from request to response.",
            ["model", "route"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.model_duration = Histogram(
            p + "model_duration_seconds", "One forward of one batch.",
            ["model"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_size = Histogram(
            p + "batch_size", "Images per forward.", ["model"], buckets=BATCH_BUCKETS, registry=r
        )
        self.queue_depth = Gauge(
            p + "queue_depth", "Images waiting for the inference thread.", ["model"], registry=r
        )
        self.in_flight = Gauge(
            p + "in_flight_requests", "Prediction requests being handled.", ["model"], registry=r
        )
        self.rejected = Counter(
            p + "rejected_total",
            "Requests refused with 503 (queue_full, over_budget, draining, timeout; "
            "explain_shed: an explanation over its smaller budget).",
            ["model", "reason"], registry=r,
        )  # fmt: skip
        self.confidence = Histogram(
            p + "prediction_confidence", "Top-1 probability of each prediction.",
            ["model"], buckets=UNIT_BUCKETS, registry=r,
        )  # fmt: skip
        self.predictions = Counter(
            p + "predictions_total", "Predictions by top-1 class.", ["model", "class"], registry=r
        )
        self.brightness = Histogram(
            p + "input_brightness", "Mean gray level of each input image (0..1).",
            ["model"], buckets=UNIT_BUCKETS, registry=r,
        )  # fmt: skip
        self.model_info = Gauge(
            p + "model_info", "1 for the loaded model version, with the backend and precision "
            "serving it.", ["model", "version", "alias", "arch", "backend", "precision"],
            registry=r,
        )  # fmt: skip
        self.model_created = Gauge(
            p + "model_created_timestamp_seconds", "Creation time of the loaded model version.",
            ["model"], registry=r,
        )  # fmt: skip
        self.ready = Gauge(p + "ready", "1 when the model answers requests.", ["model"], registry=r)
        self.reloads = Counter(
            p + "reloads_total", "Hot reload attempts by result.", ["model", "result"], registry=r
        )
        self.predlog_dropped = Counter(
            p + "prediction_log_dropped", "Prediction log records dropped on overflow.", registry=r
        )
        self.predlog_written = Counter(
            p + "prediction_log_written", "Prediction log records written.", registry=r
        )
        self.embedding_drift = Gauge(
            p + "embedding_drift", "MMD^2 of served vs training embeddings (stat=mmd) and its "
            "permutation p-value (stat=p_value), per model version.",
            ["model", "version", "stat"], registry=r,
        )  # fmt: skip
        self.embedding_window = Gauge(
            p + "embedding_window_size", "Projected embeddings held for the drift test.",
            ["model", "version"], registry=r,
        )  # fmt: skip
        self._info_labels: dict[str, tuple[str, ...]] = {}

    def init_model(self, model: str, classes: list[str]) -> None:
        """Create the label sets of one served model at 0, so rate() queries see a series."""
        for route in (*PREDICT_ROUTES, EXPLAIN_ROUTE):
            for code in CODE_CLASSES:
                self.requests.labels(model, route, code)
            self.request_duration.labels(model, route)
        for reason in REJECT_REASONS:
            self.rejected.labels(model, reason)
        for result in ("success", "failure"):
            self.reloads.labels(model, result)
        for name in classes:
            self.predictions.labels(model, name)
        self.model_duration.labels(model)
        self.batch_size.labels(model)
        self.confidence.labels(model)
        self.brightness.labels(model)
        self.queue_depth.labels(model).set(0)
        self.in_flight.labels(model).set(0)
        self.ready.labels(model).set(0)

    def set_model_info(
        self,
        model: str,
        version: str,
        alias: str,
        arch: str,
        created: float,
        backend: str = "",
        precision: str = "",
    ) -> None:
        """Point model_info at the loaded version, removing the previous version's series."""
        labels = (model, version, alias, arch, backend, precision)
        old = self._info_labels.get(model)
        if old is not None and old != labels:
            self.model_info.remove(*old)
        self.model_info.labels(*labels).set(1)
        self._info_labels[model] = labels
        self.model_created.labels(model).set(created)
