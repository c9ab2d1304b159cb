"""The rollout rule: promote, roll back or wait, from what the candidate did live.

Kept apart from Prometheus and MLflow so it can be read, reasoned about and tested alone (as
`slipway.promotion.rule` is for the offline gate). Every criterion is judged and reported, so a
decision lists all the reasons, not only the first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from slipway.config.promotion import PromotionPolicy
from slipway.config.rollout import RolloutCriteria
from slipway.rollout.measure import Measurement

Action = Literal["promote", "rollback", "wait"]


@dataclass(frozen=True)
class Limits:
    """The criteria with every default resolved (see `RolloutCriteria`)."""

    window: str
    min_requests: int
    max_error_ratio: float
    max_p95_latency_ms: float
    min_shadow_agreement: float
    max_confidence_shift: float

    @classmethod
    def of(cls, criteria: RolloutCriteria, promotion: PromotionPolicy) -> Limits:
        return cls(
            window=criteria.window,
            min_requests=criteria.min_requests,
            max_error_ratio=criteria.max_error_ratio,
            max_p95_latency_ms=criteria.latency_limit_ms(promotion),
            min_shadow_agreement=criteria.min_shadow_agreement,
            max_confidence_shift=criteria.max_confidence_shift,
        )


@dataclass(frozen=True)
class RolloutDecision:
    """What to do with the candidate version, and why, criterion by criterion."""

    action: Action
    version: str
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str:
        """One line: the failures for a rollback, the open points for a wait, else the passes."""
        parts = {"rollback": self.failed, "wait": self.pending}.get(self.action, self.passed)
        return "; ".join(parts)


def decide(version: str, m: Measurement, limits: Limits) -> RolloutDecision:
    """Roll back when any criterion fails; promote when all hold on enough traffic; else wait.

    Nothing is judged until the pods serve `version` as the candidate. A failure with too few
    requests still rolls back only if it cannot be undone by more
    traffic: the errors already seen exceed the share allowed of `min_requests`.
    """
    passed: list[str] = []
    failed: list[str] = []
    pending: list[str] = []
    w = limits.window
    if version not in m.serving_versions:
        serving = ", ".join(f"v{v}" for v in m.serving_versions) or "no version"
        line = f"the pods serve {serving} as the candidate, not v{version} yet"
        return RolloutDecision("wait", version, pending=[line])
    enough = m.requests >= limits.min_requests
    if not enough:
        pending.append(f"{m.requests:.0f} candidate requests in {w}, need {limits.min_requests}")
    ratio = m.error_ratio
    if ratio is not None and ratio > limits.max_error_ratio:
        message = f"error ratio {ratio:.2%} > {limits.max_error_ratio:.2%} over {w}"
        if enough or m.errors > limits.max_error_ratio * limits.min_requests:
            failed.append(message)
        else:
            pending.append(message)
    elif ratio is not None:
        passed.append(f"error ratio {ratio:.2%} <= {limits.max_error_ratio:.2%}")
    p95 = m.p95_latency_ms
    if enough and p95 is not None:
        bar = limits.max_p95_latency_ms
        (failed if p95 > bar else passed).append(
            f"p95 latency {p95:.1f} ms {'>' if p95 > bar else '<='} {bar:g} ms"
        )
    agreement = m.shadow_agreement
    if agreement is not None:
        bar = limits.min_shadow_agreement
        line = f"shadow agreement {agreement:.2%} {'<' if agreement < bar else '>='} {bar:.2%}"
        if m.shadow_judged < limits.min_requests:
            pending.append(f"{m.shadow_judged:.0f} shadowed requests, need {limits.min_requests}")
        else:
            (failed if agreement < bar else passed).append(line)
    shift = m.confidence_shift
    if enough and shift is not None:
        bar = limits.max_confidence_shift
        (failed if abs(shift) > bar else passed).append(
            f"mean confidence shift {shift:+.3f} {'beyond' if abs(shift) > bar else 'within'} "
            f"±{bar:g}"
        )
    if failed:
        return RolloutDecision("rollback", version, passed, failed, pending)
    if pending:
        return RolloutDecision("wait", version, passed, failed, pending)
    return RolloutDecision("promote", version, passed, failed, pending)
