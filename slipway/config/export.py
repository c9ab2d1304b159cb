"""`Int8Config`: post-training INT8 quantization of the exported ONNX model, and its gate."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from slipway.config.base import Section


class Int8Config(Section):
    """Static INT8 quantization (QDQ, per-channel weights) calibrated on the training split.

    The quantized model is written beside the FP32 one and only marked servable when its test
    accuracy is within `accuracy_margin` points of the FP32 ONNX model's on the same images.
    """

    enabled: bool = Field(True, description="Write model.int8.onnx beside model.onnx.")
    calibration_images: int = Field(
        128, ge=1, description="Training images (spread over the split) the ranges are fit on."
    )
    method: Literal["minmax", "entropy", "percentile"] = Field(
        "minmax",
        description="Calibration: minmax (fast, the usual choice for CNNs), entropy (KL "
        "divergence) or percentile (99.999th), the latter two slower and memory-heavier.",
    )
    per_channel: bool = Field(True, description="One weight scale per output channel.")
    accuracy_margin: float = Field(
        0.5,
        ge=0,
        le=100,
        description="Largest drop of test accuracy (percentage points) against FP32 for the "
        "INT8 model to be servable.",
    )
