"""The runtimes agree with each other, and the thread count follows the cgroup CPU quota."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.inference.backends import OnnxBackend, OpenVinoBackend, load_backend, softmax
from services.inference.cpus import available_cpus, cgroup_quota
from services.inference.runtime import (
    FP16_MAX_PROB_DIFF,
    RuntimeOptions,
    candidates,
    pick_fastest,
)
from slipway.contract.card import load_card
from slipway.errors import ModelError
from slipway.training.parity import parity_inputs


def test_openvino_and_onnxruntime_agree_on_fp32(trained_model: Path, demo_data: Path) -> None:
    pytest.importorskip("openvino")
    inputs = parity_inputs(trained_model, demo_data, 16)
    ort_logits = OnnxBackend(trained_model, threads=1).forward(inputs)
    ov_logits = OpenVinoBackend(trained_model, threads=1).forward(inputs)
    assert ov_logits.shape == ort_logits.shape
    np.testing.assert_allclose(ov_logits, ort_logits, atol=1e-4, rtol=0)


def test_an_int8_request_without_an_int8_file_is_a_load_error(trained_model: Path) -> None:
    with pytest.raises(ModelError, match=r"model\.int8\.onnx"):
        load_backend("onnxruntime", trained_model, "cpu", 1, precision="int8")
    with pytest.raises(ModelError, match="fp32 or fp16"):
        load_backend("torch", trained_model, "cpu", 1, precision="int8")
    with pytest.raises(ModelError, match="BACKEND=torch"):
        load_backend("onnxruntime", trained_model, "cpu", 1, precision="fp16")


def test_torch_fp16_agrees_with_fp32_and_auto_keeps_only_an_agreeing_fp16(
    trained_model: Path, demo_data: Path
) -> None:
    """The GPU path's FP16 TorchScript (channels-last), checked on the CPU: same probabilities
    as ONNX FP32 within the servable tolerance; a disagreeing FP16 candidate is refused."""
    pytest.importorskip("torch")
    inputs = parity_inputs(trained_model, demo_data, 8)
    fp32 = OnnxBackend(trained_model, threads=1)
    fp16 = load_backend("torch", trained_model, "cpu", 1, precision="fp16")
    assert fp16.precision == "fp16"
    diff = np.abs(softmax(fp16.forward(inputs)) - softmax(fp32.forward(inputs))).max()
    assert diff <= FP16_MAX_PROB_DIFF
    shape = inputs.shape[1:]
    chosen, table = pick_fastest([fp32, fp16], shape, 4, 0.2)
    assert {(r["backend"], r["precision"]) for r in table if "score_ms" in r} == {
        ("onnxruntime", "fp32"), ("torch", "fp16"),
    }  # fmt: skip

    class Shifted:  # an FP16 model whose numbers went wrong
        name, platform, precision = "torch", "pytorch_torchscript", "fp16"

        def forward(self, batch: np.ndarray) -> np.ndarray:
            logits = fp16.forward(batch)
            return logits + np.arange(logits.shape[1], dtype=np.float32)

    chosen, table = pick_fastest([Shifted(), fp32], shape, 4, 0.2)
    assert chosen is fp32
    assert next(r["refused"] for r in table if r.get("refused")).startswith("max |dprob|")


def test_cuda_auto_prefers_fp16_torch_and_fp16_needs_torch(trained_model: Path) -> None:
    export = load_card(trained_model).export
    cuda = RuntimeOptions(device="cuda")
    assert candidates(cuda, trained_model, export) == [
        ("torch", "fp16"), ("torch", "fp32"), ("onnxruntime", "fp32"),
    ]  # fmt: skip
    assert candidates(RuntimeOptions(precision="fp16"), trained_model, export) == [
        ("torch", "fp16")
    ]
    with pytest.raises(ModelError, match="does not serve PRECISION=fp16"):
        candidates(RuntimeOptions(backend="openvino", precision="fp16"), trained_model, export)


def test_cgroup_v2_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_quota(tmp_path) == 1.5
    assert available_cpus(tmp_path) <= 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_quota(tmp_path) is None


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_quota(tmp_path) == 1.0
    assert available_cpus(tmp_path) == 1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_quota(tmp_path) is None
    assert available_cpus(tmp_path) >= 1
