"""The promotion rule: when a candidate model may replace the one in production.

Kept apart from the MLflow plumbing so the rule can be read, reasoned about and tested alone.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromotionPolicy:
    """When a candidate may replace production.

    Attributes:
        accuracy_margin: How much lower than production the candidate's test accuracy may be
            (0.0: it must be at least as good).
        max_p95_latency_ms: Latency SLO for the p95 of one batch-1 forward with onnxruntime.
        min_accuracy: Floor for every candidate, and the only bar for the first model.
        latency_key: Which export measurement the SLO applies to.
    """

    accuracy_margin: float = 0.0
    max_p95_latency_ms: float = 100.0
    min_accuracy: float = 0.5
    latency_key: str = "latency_b1_p95_ms"


@dataclass(frozen=True)
class Decision:
    """Outcome of the promotion gate, with a reason a person can act on."""

    promote: bool
    reason: str
    production_version: str = ""
    production_accuracy: float | None = None

    @property
    def label(self) -> str:
        return "promoted" if self.promote else "rejected"


def decide(
    accuracy: float,
    p95_ms: float | None,
    policy: PromotionPolicy,
    production_accuracy: float | None = None,
    production_version: str = "",
) -> Decision:
    """The promotion rule on its own, free of MLflow, so it can be read and tested in one place."""
    prod = dict(production_version=production_version, production_accuracy=production_accuracy)
    if p95_ms is None:
        return Decision(False, f"no {policy.latency_key} measurement (export the model)", **prod)
    if p95_ms > policy.max_p95_latency_ms:
        return Decision(
            False,
            f"p95 latency {p95_ms:.2f} ms exceeds the SLO of {policy.max_p95_latency_ms:g} ms",
            **prod,
        )
    if accuracy < policy.min_accuracy:
        return Decision(
            False,
            f"test accuracy {accuracy:.4f} is below the minimum {policy.min_accuracy:.4f}",
            **prod,
        )
    if production_accuracy is None:
        return Decision(
            True,
            f"first production version: test accuracy {accuracy:.4f} >= minimum "
            f"{policy.min_accuracy:.4f}, p95 {p95_ms:.2f} ms within "
            f"{policy.max_p95_latency_ms:g} ms",
            **prod,
        )
    bar = production_accuracy - policy.accuracy_margin
    if accuracy < bar:
        return Decision(
            False,
            f"test accuracy {accuracy:.4f} is worse than production v{production_version} "
            f"({production_accuracy:.4f}) by more than the margin {policy.accuracy_margin:g}",
            **prod,
        )
    return Decision(
        True,
        f"test accuracy {accuracy:.4f} >= production v{production_version} "
        f"({production_accuracy:.4f}) - margin {policy.accuracy_margin:g}; p95 {p95_ms:.2f} ms "
        f"within {policy.max_p95_latency_ms:g} ms",
        **prod,
    )
