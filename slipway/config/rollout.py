"""`RolloutCriteria`: when a live candidate (the staging slot) is promoted or rolled back."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from slipway.config.base import Section
from slipway.config.promotion import PromotionPolicy

DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


class RolloutCriteria(Section):
    """What the candidate must show live, over one window, before it replaces production."""

    window: str = Field(
        "10m", description="PromQL range the candidate is judged over (e.g. 30s, 10m, 1h)."
    )
    min_requests: int = Field(
        100,
        ge=1,
        description="Candidate requests (and shadowed requests, when shadowing) needed in the "
        "window before anything is decided; fewer: wait.",
    )
    max_error_ratio: float = Field(
        0.01, ge=0, le=1, description="Largest share of the candidate's requests answered 5xx."
    )
    max_p95_latency_ms: float | None = Field(
        None,
        gt=0,
        description="Largest p95 request latency of the candidate (ms); empty: the promotion "
        "latency SLO, promotion.max_p95_latency_ms.",
    )
    min_shadow_agreement: float = Field(
        0.9,
        ge=0,
        le=1,
        description="Smallest share of shadowed requests where candidate and production agree "
        "on the top-1 class (judged only when traffic is shadowed).",
    )
    max_confidence_shift: float = Field(
        0.1,
        gt=0,
        le=1,
        description="Largest |candidate - production| difference of the mean top-1 "
        "probability over the window.",
    )

    @field_validator("window")
    @classmethod
    def _duration(cls, value: str) -> str:
        if not DURATION.match(value):
            raise ValueError("a Prometheus duration such as 30s, 10m or 1h")
        return value

    def latency_limit_ms(self, promotion: PromotionPolicy) -> float:
        """The p95 latency bar: this section's, else the promotion SLO."""
        if self.max_p95_latency_ms is not None:
            return self.max_p95_latency_ms
        return promotion.max_p95_latency_ms
