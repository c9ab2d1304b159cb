"""Every Prometheus metric of the inference service, on a registry owned by one app.

A per-app `CollectorRegistry` lets tests build several apps in one process. Labels are bounded:
served model name, route template, status class, version, reason: never ids or file names.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from slipway.contract.reference import UNIT_EDGES

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075,
    0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
# The reference's bin edges (upper ones), so the drift monitor reads the same bins from
# Prometheus as from the prediction log.
UNIT_BUCKETS = UNIT_EDGES[1:]
GRPC_ROUTE = "grpc"  # the route label of gRPC ModelInfer calls
KSERVE_PREDICT_ROUTE = "/v1/models/{name}:predict"
OIP_INFER_ROUTE = "/v2/models/{name}/infer"
PREDICT_ROUTES = ("/v1/predict", KSERVE_PREDICT_ROUTE, OIP_INFER_ROUTE, GRPC_ROUTE)
EXPLAIN_ROUTE = "/v1/explain"  # metered apart: many forwards per request, no prediction traffic
CODE_CLASSES = ("2xx", "4xx", "5xx")
REJECT_REASONS = ("queue_full", "over_budget", "late", "draining", "timeout", "explain_shed")
PRODUCTION, CANARY = "production", "canary"  # the `variant` label: which model answered
SHADOW_RESULTS = ("agree", "disagree", "error", "shed")
DELTA_BUCKETS = tuple(round(-1.0 + 0.1 * i, 1) for i in range(21))  # -1.0 .. 1.0
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
            p + "requests_total", "Requests by the model that answered, route, status class "
            "(gRPC: route grpc) and variant (production, or canary: the staging model).",
            ["model", "route", "code", "variant"], registry=r,
        )  # fmt: skip
        self.request_duration = Histogram(
            p + "request_duration_seconds", "Time from request to response.",
            ["model", "route", "variant"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.canary_weight = Gauge(
            p + "canary_weight", "Share of default-route requests the staging model answers now "
            "(0 when it is not ready, off, or in shadow mode).", ["model"], registry=r,
        )  # fmt: skip
        self.shadow = Counter(
            p + "shadow_requests_total", "Predictions copied to the staging model in shadow "
            "mode, by result: agree or disagree (same top-1 class or not), error, shed.",
            ["model", "result"], registry=r,
        )  # fmt: skip
        self.shadow_delta = Histogram(
            p + "shadow_confidence_delta", "Staging top-1 probability minus production's, per "
            "shadowed prediction.", ["model"], buckets=DELTA_BUCKETS, registry=r,
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
            "Requests refused with 503 (queue_full; over_budget: on arrival; late: admitted, "
            "but past the budget when its turn came; draining; timeout; explain_shed: an "
            "explanation over its smaller budget).",
            ["model", "reason"], registry=r,
        )  # fmt: skip
        # The drift inputs, per loaded version (see `set_drift_version`).
        self.confidence = Histogram(
            p + "prediction_confidence", "Top-1 probability of each prediction.",
            ["model", "version"], buckets=UNIT_BUCKETS, registry=r,
        )  # fmt: skip
        self.predictions = Counter(
            p + "predictions_total", "Predictions by top-1 class.",
            ["model", "version", "class"], registry=r,
        )  # fmt: skip
        self.brightness = Histogram(
            p + "input_brightness", "Mean gray level of each input image (0..1).",
            ["model", "version"], buckets=UNIT_BUCKETS, registry=r,
        )  # fmt: skip
        self.contrast = Histogram(
            p + "input_contrast", "Standard deviation of the gray levels of each input image.",
            ["model", "version"], buckets=UNIT_BUCKETS, registry=r,
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
        self._drift_children: dict[tuple[str, str], tuple[Any, Any, Any, dict[str, Any]]] = {}

    def init_model(self, model: str, classes: list[str], variant: str = PRODUCTION) -> None:
        """Create the label sets of one served model at 0, so rate() queries see a series."""
        for route in (*PREDICT_ROUTES, EXPLAIN_ROUTE):
            for code in CODE_CLASSES:
                self.requests.labels(model, route, code, variant)
            self.request_duration.labels(model, route, variant)
        for reason in REJECT_REASONS:
            self.rejected.labels(model, reason)
        for result in ("success", "failure"):
            self.reloads.labels(model, result)
        self.model_duration.labels(model)
        self.batch_size.labels(model)
        self.queue_depth.labels(model).set(0)
        self.in_flight.labels(model).set(0)
        self.ready.labels(model).set(0)

    def init_shadow(self, model: str) -> None:
        """The shadow series of the production model at 0, whatever the mode."""
        for result in SHADOW_RESULTS:
            self.shadow.labels(model, result)
        self.shadow_delta.labels(model)

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

    def set_drift_version(self, model: str, version: str, classes: list[str]) -> None:
        """Create the drift series of the version `model` now serves at 0 (so `increase()`
        counts its first requests) and remove those of its earlier versions: the `version`
        label only ever holds what is loaded (and what requests still in flight answered)."""
        for key in [k for k in self._drift_children if k[0] == model and k[1] != version]:
            *_, counters = self._drift_children.pop(key)
            for histogram in (self.confidence, self.brightness, self.contrast):
                histogram.remove(*key)
            for name in counters:
                self.predictions.remove(*key, name)
        children = self._drift_children.get((model, version)) or self._children(model, version)
        for name in classes:
            if name not in children[3]:
                children[3][name] = self.predictions.labels(model, version, name)

    def observe_prediction(
        self,
        model: str,
        version: str,
        top_class: str,
        confidence: float,
        image: tuple[float, float],
    ) -> None:
        """The drift inputs of one prediction: confidence, class, brightness and contrast."""
        children = self._drift_children.get((model, version))
        if children is None:  # a request of a version that is no longer loaded
            children = self._children(model, version)
        confidence_child, brightness_child, contrast_child, classes = children
        confidence_child.observe(confidence)
        counter = classes.get(top_class)
        if counter is None:
            counter = classes[top_class] = self.predictions.labels(model, version, top_class)
        counter.inc()
        brightness_child.observe(image[0])
        contrast_child.observe(image[1])

    def _children(self, model: str, version: str) -> tuple[Any, Any, Any, dict[str, Any]]:
        """The label children of one version, looked up once (a request then only observes)."""
        children = (
            self.confidence.labels(model, version),
            self.brightness.labels(model, version),
            self.contrast.labels(model, version),
            {},
        )
        self._drift_children[(model, version)] = children
        return children
