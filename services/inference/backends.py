"""Model runtimes: onnxruntime (default, no torch) and TorchScript (optional, for CUDA).

A backend turns a float32 (N, C, H, W) batch into float32 (N, K) logits. It is called from one
inference thread only: PyTorch and onnxruntime both slow down badly when forwards come from
several threads on a small machine.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np

from slipway.contract.card import ONNX_FILE, TORCHSCRIPT_FILE
from slipway.errors import ModelError

log = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


class Backend(Protocol):
    """What the batcher needs from a runtime."""

    name: str
    platform: str

    def forward(self, batch: np.ndarray) -> np.ndarray: ...


class OnnxBackend:
    """onnxruntime session over model.onnx (CPU, or CUDA when the provider is installed)."""

    name = "onnxruntime"
    platform = "onnxruntime_onnx"

    def __init__(
        self, model_dir: Path, device: str = "cpu", threads: int = 0, spinning: bool = False
    ) -> None:
        import onnxruntime as ort

        path = Path(model_dir) / ONNX_FILE
        if not path.is_file():
            raise ModelError(f"{model_dir} has no {ONNX_FILE}; run `slipway export` first")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if spinning else "0"
        )
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ModelError("DEVICE=cuda but onnxruntime has no CUDAExecutionProvider")
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:
            raise ModelError(f"cannot load {path}: {exc}") from exc
        names = [i.name for i in self.session.get_inputs()]
        if INPUT_NAME not in names:
            raise ModelError(f"{path} has no input named {INPUT_NAME!r} (inputs: {names})")

    def forward(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]


class TorchBackend:
    """TorchScript model.ts on CPU or CUDA; imports torch only when chosen."""

    name = "torch"
    platform = "pytorch_torchscript"

    def __init__(self, model_dir: Path, device: str = "cpu", threads: int = 0) -> None:
        try:
            import torch
        except ImportError as exc:
            raise ModelError("BACKEND=torch needs torch (the CPU serve image has none)") from exc
        path = Path(model_dir) / TORCHSCRIPT_FILE
        if not path.is_file():
            raise ModelError(f"{model_dir} has no {TORCHSCRIPT_FILE}; run `slipway export` first")
        if device == "cuda" and not torch.cuda.is_available():
            raise ModelError("DEVICE=cuda but torch sees no CUDA device")
        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.device = torch.device(device)
        try:
            self.module = torch.jit.load(str(path), map_location=self.device).eval()
        except Exception as exc:
            raise ModelError(f"cannot load {path}: {exc}") from exc

    def forward(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            inputs = torch.from_numpy(batch).to(self.device, non_blocking=True)
            return self.module(inputs).float().cpu().numpy()


def load_backend(
    kind: str, model_dir: Path, device: str, threads: int, spinning: bool = False
) -> Backend:
    """The backend named by settings.backend for one model folder."""
    if kind == "torch":
        return TorchBackend(model_dir, device, threads)
    if kind == "onnxruntime":
        return OnnxBackend(model_dir, device, threads, spinning)
    raise ModelError(f"unknown backend {kind!r}; choose onnxruntime or torch")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 for stability, returned as float32."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
