"""`PromotionPolicy`: when a candidate model may replace the one in production."""

from __future__ import annotations

from pydantic import Field

from slipway.config.base import Section


class PromotionPolicy(Section):
    """The promotion gate's thresholds."""

    accuracy_margin: float = Field(
        0.0,
        description="How much lower than production's the candidate's test accuracy may be "
        "(0: at least as good).",
    )
    max_p95_latency_ms: float = Field(
        100.0, gt=0, description="Latency SLO: p95 of one batch-1 forward with onnxruntime (ms)."
    )
    min_accuracy: float = Field(
        0.5, ge=0, le=1, description="Floor for every candidate; the only bar for the first one."
    )
    latency_key: str = Field(
        "latency_b1_p95_ms", description="Which export measurement the SLO applies to."
    )
