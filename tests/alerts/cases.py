"""promtool unit-test cases, one per alert: input series, when the condition starts to hold,
and the alert expected once it has held for the rule's `for:`.

Series use the labels a scrape by the chart's ServiceMonitors gives: `job` is the Service name,
`namespace` the release namespace (tests/charts/render.py renders release `slipway` into
`ml-serving`).
"""

from __future__ import annotations

from dataclasses import dataclass

SERVER = 'job="slipway-inference", namespace="ml-serving"'
DRIFT = 'job="slipway-inference-drift", namespace="ml-serving"'
POD = 'instance="10.0.0.7:8080"'
# Request series carry the variant that answered; the canary's are under "<model>-staging".
PRODUCTION = 'model="demo", variant="production"'
CANARY = 'model="demo-staging", variant="canary"'
KSM = 'job="kube-state-metrics", namespace="ml-serving"'
DAY = 86400


@dataclass(frozen=True)
class AlertCase:
    """`onset_min`: first evaluation (minutes) at which the expression returns a series."""

    alert: str
    series: dict[str, str]
    onset_min: int
    labels: dict[str, str]
    description: str
    name: str = ""

    @property
    def id(self) -> str:
        return self.name or self.alert


CASES = [
    AlertCase(
        alert="InferenceNoReadyReplicas",
        series={
            f"up{{{SERVER}, {POD}}}": "1x80",
            f'slipway_inference_ready{{{SERVER}, {POD}, model="demo"}}': "1x10 0x70",
        },
        onset_min=11,
        labels={"job": "slipway-inference", "namespace": "ml-serving"},
        description="No target of job slipway-inference in namespace ml-serving has reported a "
        "loaded model (slipway_inference_ready == 1) for 5m; every prediction request fails.",
    ),
    AlertCase(
        alert="InferenceNoReadyReplicas",
        name="InferenceNoReadyReplicas-no-target",
        series={'up{job="other", namespace="ml-serving"}': "1x80"},
        onset_min=0,
        labels={"job": "slipway-inference", "namespace": "ml-serving"},
        description="No target of job slipway-inference in namespace ml-serving has reported a "
        "loaded model (slipway_inference_ready == 1) for 5m; every prediction request fails.",
    ),
    AlertCase(
        alert="InferenceReadinessFlapping",
        series={
            f'slipway_inference_ready{{{SERVER}, {POD}, model="demo"}}': " ".join(["1 0"] * 40)
        },
        onset_min=4,
        labels={
            "job": "slipway-inference",
            "namespace": "ml-serving",
            "instance": "10.0.0.7:8080",
            "model": "demo",
        },
        description="Readiness of model demo on 10.0.0.7:8080 changed 9 times in the last 15m.",
    ),
    AlertCase(
        alert="InferenceReplicasUnavailable",
        series={
            "kube_deployment_status_replicas_unavailable"
            f'{{{KSM}, deployment="slipway-inference"}}': "0x4 1x60",
        },
        onset_min=5,
        labels={
            "job": "kube-state-metrics",
            "namespace": "ml-serving",
            "deployment": "slipway-inference",
        },
        description="Deployment slipway-inference in namespace ml-serving has had 1 unavailable "
        "replica(s) for 15m.",
    ),
    AlertCase(
        alert="InferenceErrorRatioHigh",
        series={
            f'slipway_inference_requests_total{{{SERVER}, {PRODUCTION}, route="/v1/predict", '
            'code="2xx"}': "0+90x60",
            f'slipway_inference_requests_total{{{SERVER}, {PRODUCTION}, route="/v1/predict", '
            'code="5xx"}': "0+10x60",
            # Probes and scrapes are not prediction traffic: they must not dilute the ratio.
            f'slipway_inference_requests_total{{{SERVER}, {PRODUCTION}, route="/readyz", '
            'code="2xx"}': "0+5000x60",
        },
        onset_min=1,
        labels={"job": "slipway-inference", "namespace": "ml-serving", "model": "demo"},
        description="10% of prediction requests to model demo (job slipway-inference) returned "
        "5xx over the last 5m; the threshold is 5%.",
    ),
    AlertCase(
        alert="InferenceLatencySloBreached",
        series={
            **{
                f"slipway_inference_request_duration_seconds_bucket{{{SERVER}, {PRODUCTION}, "
                f'route="/v2/models/{{name}}/infer", le="{le}"}}': f"0+{n}x60"
                for le, n in (("0.25", 0), ("0.5", 0), ("1.0", 10), ("+Inf", 10))
            },
            # A slow route outside the SLO (the web page) is ignored.
            f"slipway_inference_request_duration_seconds_bucket{{{SERVER}, {PRODUCTION}, "
            'route="/", le="+Inf"}': "0+100x60",
        },
        onset_min=1,
        labels={"job": "slipway-inference", "namespace": "ml-serving", "model": "demo"},
        description="p99 latency of model demo (job slipway-inference) is 995ms, above the SLO "
        "of 0.5s.",
    ),
    AlertCase(
        alert="InferenceOverloadShedding",
        series={
            f'slipway_inference_requests_total{{{SERVER}, {PRODUCTION}, route="/v1/predict", '
            'code="2xx"}': "0+95x60",
            f'slipway_inference_requests_total{{{SERVER}, {PRODUCTION}, route="/v1/predict", '
            'code="5xx"}': "0+5x60",
            f'slipway_inference_rejected_total{{{SERVER}, {POD}, model="demo", '
            'reason="queue_full"}': "0+5x60",
        },
        onset_min=1,
        labels={"job": "slipway-inference", "namespace": "ml-serving", "model": "demo"},
        description="5% of prediction requests to model demo (job slipway-inference) were "
        "refused with 503 (queue full, draining or timeout) over the last 5m.",
    ),
    AlertCase(
        alert="InferenceEmbeddingDrift",
        series={
            f'slipway_inference_embedding_drift{{{SERVER}, {POD}, model="demo", version="3", '
            'stat="p_value"}': "0.4x10 0.001x60",
            f'slipway_inference_embedding_drift{{{SERVER}, {POD}, model="demo", version="3", '
            'stat="mmd"}': "0.001x10 0.2x60",
        },
        onset_min=11,
        labels={
            "job": "slipway-inference",
            "namespace": "ml-serving",
            "model": "demo",
            "version": "3",
        },
        description="The embeddings of images served by version 3 of model demo (job "
        "slipway-inference) differ from the training reference (MMD permutation p-value 0.0010 "
        "< 0.01) for 15m.",
    ),
    AlertCase(
        alert="InferenceAutoscalerMaxedOut",
        series={
            "kube_horizontalpodautoscaler_status_current_replicas"
            f'{{{KSM}, horizontalpodautoscaler="slipway-inference"}}': "4x9 10x100",
            "kube_horizontalpodautoscaler_spec_max_replicas"
            f'{{{KSM}, horizontalpodautoscaler="slipway-inference"}}': "10x110",
        },
        onset_min=10,
        # One-to-one matching `on (namespace, horizontalpodautoscaler)` keeps only those labels.
        labels={"namespace": "ml-serving", "horizontalpodautoscaler": "slipway-inference"},
        description="HPA slipway-inference in namespace ml-serving has run 10 replicas, its "
        "maximum, for 30m; load beyond this is queued or shed.",
    ),
    AlertCase(
        alert="InferenceModelReloadFailing",
        series={
            "slipway_inference_reloads_total"
            f'{{{SERVER}, {POD}, model="demo", result="failure"}}': "0x4 3x60",
            "slipway_inference_reloads_total"
            f'{{{SERVER}, {POD}, model="demo", result="success"}}': "0x65",
        },
        onset_min=5,
        labels={"job": "slipway-inference", "namespace": "ml-serving", "model": "demo"},
        description="Model demo (job slipway-inference) failed to reload 3 times in the last "
        "15m; replicas keep serving the previous version.",
    ),
    AlertCase(
        alert="InferencePredictionLogDropping",
        series={f"slipway_inference_prediction_log_dropped_total{{{SERVER}, {POD}}}": "0+6x60"},
        onset_min=1,
        labels={"job": "slipway-inference", "namespace": "ml-serving", "instance": "10.0.0.7:8080"},
        description="10.0.0.7:8080 (job slipway-inference) drops 0.10 prediction log records per "
        "second; drift detection sees an incomplete sample.",
    ),
    AlertCase(
        alert="InferenceModelStale",
        # promtool's clock starts at 0: a creation time 30 days minus 570 s before it makes the
        # model older than 30 days from the 10th minute on. The staging model never alerts.
        series={
            "slipway_inference_model_created_timestamp_seconds"
            f'{{{SERVER}, {POD}, model="demo"}}': f"{-30 * DAY + 570}x90",
            "slipway_inference_model_created_timestamp_seconds"
            f'{{{SERVER}, {POD}, model="demo-staging"}}': f"{-90 * DAY}x90",
        },
        onset_min=10,
        labels={"job": "slipway-inference", "namespace": "ml-serving", "model": "demo"},
        description="The version of model demo served by job slipway-inference was created 30.0 "
        "days ago, more than 30 days.",
    ),
    AlertCase(
        alert="InferenceInputDrift",
        series={
            f'slipway_drift_detected{{{DRIFT}, feature="brightness"}}': "0x9 1x60",
            f'slipway_drift_score{{{DRIFT}, feature="brightness"}}': "0.35x70",
            f'slipway_drift_detected{{{DRIFT}, feature="contrast"}}': "0x70",
            f'slipway_drift_score{{{DRIFT}, feature="contrast"}}': "0.05x70",
        },
        onset_min=10,
        labels={
            "job": "slipway-inference-drift",
            "namespace": "ml-serving",
            "feature": "brightness",
        },
        description="Feature brightness has drifted from the reference (score 0.350, job "
        "slipway-inference-drift) for 15m.",
    ),
    AlertCase(
        alert="DriftMonitorDown",
        series={f'up{{{DRIFT}, instance="10.0.0.9:8081"}}': "1x9 0x60"},
        onset_min=10,
        labels={"job": "slipway-inference-drift", "namespace": "ml-serving"},
        description="No target of job slipway-inference-drift in namespace ml-serving has been "
        "up for 10m; input drift goes unnoticed.",
    ),
    AlertCase(
        alert="DriftMonitorStale",
        # Evaluations keep the timestamp at the current time until minute 20, then stop.
        series={
            "slipway_drift_last_evaluation_timestamp_seconds"
            f'{{{DRIFT}, instance="10.0.0.9:8081"}}': "0+60x20 1200x60",
        },
        onset_min=31,
        labels={"job": "slipway-inference-drift", "namespace": "ml-serving"},
        description="Job slipway-inference-drift in namespace ml-serving has not evaluated drift "
        "for more than 600s (for 5m); its drift gauges are stale.",
    ),
]

# A healthy release: traffic without errors, fast, ready replicas, no drift, a fresh model.
HEALTHY_SERIES = {
    f"up{{{SERVER}, {POD}}}": "1x120",
    f'slipway_inference_ready{{{SERVER}, {POD}, model="demo"}}': "1x120",
    f'slipway_inference_requests_total{{{SERVER}, {PRODUCTION}, route="/v1/predict", '
    'code="2xx"}': "0+100x120",
    f'slipway_inference_requests_total{{{SERVER}, {PRODUCTION}, route="/v1/predict", '
    'code="4xx"}': "0+3x120",
    **{
        f'slipway_inference_request_duration_seconds_bucket{{{SERVER}, {PRODUCTION}, '
        f'route="/v1/predict", le="{le}"}}': f"0+{n}x120"
        for le, n in (("0.05", 90), ("0.1", 100), ("0.5", 100), ("+Inf", 100))
    },
    # A healthy canary beside production: its own series, the same health.
    f'slipway_inference_requests_total{{{SERVER}, {CANARY}, route="/v1/predict", code="2xx"}}':
    "0+10x120",
    f'slipway_inference_request_duration_seconds_bucket{{{SERVER}, {CANARY}, route="/v1/predict", '
    'le="+Inf"}': "0+10x120",
    f'slipway_inference_rejected_total{{{SERVER}, {POD}, model="demo", reason="queue_full"}}':
    "0x120",
    # Explanations shed under load are not prediction traffic refused.
    f'slipway_inference_rejected_total{{{SERVER}, {POD}, model="demo", reason="explain_shed"}}':
    "0+20x120",
    f'slipway_inference_embedding_drift{{{SERVER}, {POD}, model="demo", version="3", '
    'stat="p_value"}': "0.35x120",
    f'slipway_inference_reloads_total{{{SERVER}, {POD}, model="demo", result="failure"}}': "0x120",
    f'slipway_inference_reloads_total{{{SERVER}, {POD}, model="demo", result="success"}}':
    "0+1x120",
    f"slipway_inference_prediction_log_dropped_total{{{SERVER}, {POD}}}": "0x120",
    f'slipway_inference_model_created_timestamp_seconds{{{SERVER}, {POD}, model="demo"}}':
    f"{-2 * DAY}x120",
    f'kube_deployment_status_replicas_unavailable{{{KSM}, deployment="slipway-inference"}}':
    "0x120",
    "kube_horizontalpodautoscaler_status_current_replicas"
    f'{{{KSM}, horizontalpodautoscaler="slipway-inference"}}': "3x120",
    "kube_horizontalpodautoscaler_spec_max_replicas"
    f'{{{KSM}, horizontalpodautoscaler="slipway-inference"}}': "10x120",
    f'up{{{DRIFT}, instance="10.0.0.9:8081"}}': "1x120",
    f'slipway_drift_detected{{{DRIFT}, feature="brightness"}}': "0x120",
    f'slipway_drift_score{{{DRIFT}, feature="brightness"}}': "0.02x120",
    f'slipway_drift_last_evaluation_timestamp_seconds{{{DRIFT}, instance="10.0.0.9:8081"}}':
    "0+60x120",
}  # fmt: skip
