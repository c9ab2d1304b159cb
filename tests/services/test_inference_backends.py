"""The runtimes agree with each other, and the thread count follows the cgroup CPU quota."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.inference.backends import OnnxBackend, OpenVinoBackend, load_backend
from services.inference.cpus import available_cpus, cgroup_quota
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
    with pytest.raises(ModelError, match="fp32 only"):
        load_backend("torch", trained_model, "cpu", 1, precision="int8")


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
