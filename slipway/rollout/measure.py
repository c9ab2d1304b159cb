"""What the candidate did live over a window, read from Prometheus.

The candidate is the service's staging slot: every request it answered is counted under
`model="<name>-staging"` (asked by name, canary share or shadow copy), production's under
`model="<name>"`. Shadowed traffic is counted per production model name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from slipway.prometheus import PrometheusClient, label_selector

REQUESTS = "slipway_inference_requests_total"
DURATION = "slipway_inference_request_duration_seconds"
CONFIDENCE = "slipway_inference_prediction_confidence"
SHADOW = "slipway_inference_shadow_requests_total"
MODEL_INFO = "slipway_inference_model_info"
SHADOW_JUDGED = "agree|disagree"


def candidate_name(name: str) -> str:
    """The served name of the staging slot of model `name`."""
    return f"{name}-staging"


@dataclass(frozen=True)
class Queries:
    """The PromQL of every measurement of one model's candidate over one window."""

    name: str
    window: str
    selector: str = ""  # extra label matchers, e.g. `namespace="prod"`

    def _sel(self, model: str, **labels: str) -> str:
        return label_selector({"model": model, **labels}, self.selector)

    def requests(self, model: str, **labels: str) -> str:
        return f"sum(increase({REQUESTS}{self._sel(model, **labels)}[{self.window}]))"

    def p95_seconds(self, model: str) -> str:
        buckets = f"{DURATION}_bucket{self._sel(model)}"
        return f"histogram_quantile(0.95, sum by (le) (rate({buckets}[{self.window}])))"

    def mean_confidence(self, model: str) -> str:
        sel, w = self._sel(model), self.window
        total = f"sum(increase({CONFIDENCE}_sum{sel}[{w}]))"
        return f"{total} / sum(increase({CONFIDENCE}_count{sel}[{w}]))"

    def shadow(self, result: str) -> str:
        extra = ",".join(m for m in (f'result=~"{result}"', self.selector.strip()) if m)
        sel = label_selector({"model": self.name}, extra)
        return f"sum(increase({SHADOW}{sel}[{self.window}]))"

    def serving_versions(self) -> str:
        return f"max by (version) ({MODEL_INFO}{self._sel(candidate_name(self.name))})"


@dataclass(frozen=True)
class Measurement:
    """The candidate's live numbers over the window; None where there was nothing to measure."""

    requests: float
    errors: float
    p95_latency_ms: float | None
    candidate_confidence: float | None
    production_confidence: float | None
    shadow_judged: float
    shadow_agreed: float
    serving_versions: tuple[str, ...] = ()

    @property
    def error_ratio(self) -> float | None:
        return self.errors / self.requests if self.requests > 0 else None

    @property
    def shadow_agreement(self) -> float | None:
        return self.shadow_agreed / self.shadow_judged if self.shadow_judged > 0 else None

    @property
    def confidence_shift(self) -> float | None:
        if self.candidate_confidence is None or self.production_confidence is None:
            return None
        return self.candidate_confidence - self.production_confidence

    def metrics(self) -> dict[str, float]:
        """The measured numbers as MLflow metrics (what was not measured is left out)."""
        values = {
            **{k: v for k, v in asdict(self).items() if k != "serving_versions"},
            "error_ratio": self.error_ratio,
            "shadow_agreement": self.shadow_agreement,
            "confidence_shift": self.confidence_shift,
        }
        return {k: float(v) for k, v in values.items() if v is not None}


def measure(prometheus: PrometheusClient, queries: Queries) -> Measurement:
    """Read every number the decision needs, in one pass."""
    candidate = candidate_name(queries.name)
    p95 = prometheus.value(queries.p95_seconds(candidate))
    return Measurement(
        requests=prometheus.value(queries.requests(candidate)) or 0.0,
        errors=prometheus.value(queries.requests(candidate, code="5xx")) or 0.0,
        p95_latency_ms=None if p95 is None else p95 * 1000.0,
        candidate_confidence=prometheus.value(queries.mean_confidence(candidate)),
        production_confidence=prometheus.value(queries.mean_confidence(queries.name)),
        shadow_judged=prometheus.value(queries.shadow(SHADOW_JUDGED)) or 0.0,
        shadow_agreed=prometheus.value(queries.shadow("agree")) or 0.0,
        serving_versions=tuple(sorted(prometheus.by_label(queries.serving_versions(), "version"))),
    )
