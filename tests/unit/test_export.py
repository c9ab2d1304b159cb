from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slipway.contract.card import load_card
from slipway.training.export import INPUT_NAME, OUTPUT_NAME, onnx_session

pytestmark = pytest.mark.slow


def test_export_records_parity_and_latency(trained_model: Path) -> None:
    info = load_card(trained_model).export
    assert info["onnx_max_abs_diff"] < 1e-3
    assert info["torchscript_max_abs_diff"] < 1e-3
    assert info["latency_b1_p50_ms"] > 0 and info["latency_b4_p95_ms"] >= info["latency_b4_p50_ms"]


def test_onnx_has_a_dynamic_batch_axis(trained_model: Path) -> None:
    session = onnx_session(trained_model / "model.onnx")
    shape = load_card(trained_model).transform.input_shape
    for batch in (1, 5):
        out = session.run([OUTPUT_NAME], {INPUT_NAME: np.zeros((batch, *shape), np.float32)})[0]
        assert out.shape == (batch, 10)
