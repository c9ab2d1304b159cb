"""The promotion rule: when a candidate model may replace the one in production.

Kept apart from the MLflow plumbing so the rule can be read, reasoned about and tested alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from slipway.config.promotion import PromotionPolicy


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
