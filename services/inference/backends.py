"""Model runtimes: onnxruntime and OpenVINO (both read the ONNX files, no torch), and
TorchScript (optional, for CUDA: FP32, or FP16 with channels-last tensors for tensor cores).

A backend turns a float32 (N, C, H, W) batch into float32 (N, K) logits (`forward`), and with
`infer` also into the (N, D) penultimate-layer embedding of the same forward when the model
exports one (the `embedding` output; older models have none). It is called from one
inference thread only: PyTorch and onnxruntime both slow down badly when forwards come from
several threads on a small machine. The ONNX runtimes serve either precision: `fp32` reads
model.onnx, `int8` the quantized model.int8.onnx (QDQ) written by the export.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np

from slipway.contract.card import ONNX_FILE, ONNX_INT8_FILE, TORCHSCRIPT_FILE
from slipway.embedding.projection import EMBEDDING_OUTPUT
from slipway.errors import ModelError

log = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
ONNX_FILES = {"fp32": ONNX_FILE, "int8": ONNX_INT8_FILE}
# Which precisions each backend serves.
PRECISIONS = {
    "onnxruntime": ("fp32", "int8"),
    "openvino": ("fp32", "int8"),
    "torch": ("fp32", "fp16"),
}


def onnx_path(model_dir: Path, precision: str) -> Path:
    """The ONNX file of one precision, or a ModelError saying how to make it."""
    name = ONNX_FILES.get(precision)
    if name is None:
        raise ModelError(f"unknown precision {precision!r}; choose fp32 or int8")
    path = Path(model_dir) / name
    if not path.is_file():
        how = "export with model.int8.enabled" if precision == "int8" else "run `slipway export`"
        raise ModelError(f"{model_dir} has no {name}; {how} first")
    return path


class Backend(Protocol):
    """What the batcher needs from a runtime."""

    name: str
    platform: str
    precision: str

    def forward(self, batch: np.ndarray) -> np.ndarray: ...

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]: ...


class OnnxBackend:
    """onnxruntime session over model.onnx (CPU, or CUDA when the provider is installed)."""

    name = "onnxruntime"
    platform = "onnxruntime_onnx"

    def __init__(
        self,
        model_dir: Path,
        device: str = "cpu",
        threads: int = 0,
        spinning: bool = False,
        precision: str = "fp32",
    ) -> None:
        import onnxruntime as ort

        path = onnx_path(model_dir, precision)
        self.precision = precision
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
        outputs = {o.name for o in self.session.get_outputs()}
        self._outputs = [OUTPUT_NAME, *([EMBEDDING_OUTPUT] if EMBEDDING_OUTPUT in outputs else [])]

    def forward(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        results = self.session.run(self._outputs, {INPUT_NAME: batch})
        return results[0], (results[1] if len(results) > 1 else None)


class OpenVinoBackend:
    """OpenVINO's CPU plugin compiling the same ONNX file (latency hint, fixed thread count).

    The batch axis stays dynamic; OpenVINO compiles a kernel set per batch size on first use,
    which the warm-up at load pays for the sizes it runs.
    """

    name = "openvino"
    platform = "openvino_onnx"

    def __init__(
        self, model_dir: Path, device: str = "cpu", threads: int = 0, precision: str = "fp32"
    ) -> None:
        if device != "cpu":
            raise ModelError("BACKEND=openvino runs on the CPU only")
        try:
            import openvino as ov
        except ImportError as exc:
            raise ModelError(
                "BACKEND=openvino needs openvino (image variant BACKEND=openvino)"
            ) from exc
        path = onnx_path(model_dir, precision)
        self.precision = precision
        # f32 inference precision: on CPUs with AVX512-BF16 or AMX the plugin otherwise runs
        # FP32 models in bfloat16 (about 2e-2 off in the logits), which is not the FP32 model.
        config: dict[str, object] = {
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            "INFERENCE_PRECISION_HINT": "f32",
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            core = ov.Core()
            self.compiled = core.compile_model(str(path), "CPU", config)
        except Exception as exc:
            raise ModelError(f"cannot load {path} with openvino: {exc}") from exc
        names = [name for port in self.compiled.inputs for name in port.get_names()]
        if INPUT_NAME not in names:
            raise ModelError(f"{path} has no input named {INPUT_NAME!r} (inputs: {names})")
        self.request = self.compiled.create_infer_request()
        self._output = self.compiled.output(OUTPUT_NAME)
        outputs = {name for port in self.compiled.outputs for name in port.get_names()}
        self._embedding = (
            self.compiled.output(EMBEDDING_OUTPUT) if EMBEDDING_OUTPUT in outputs else None
        )

    def forward(self, batch: np.ndarray) -> np.ndarray:
        result = self.request.infer({INPUT_NAME: batch}, share_inputs=True)
        # The request reuses its output buffers on the next call: hand out a copy.
        return np.array(result[self._output], dtype=np.float32, copy=True)

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        result = self.request.infer({INPUT_NAME: batch}, share_inputs=True)
        # The request reuses its output buffers on the next call: hand out copies.
        logits = np.array(result[self._output], dtype=np.float32, copy=True)
        if self._embedding is None:
            return logits, None
        return logits, np.array(result[self._embedding], dtype=np.float32, copy=True)


class TorchBackend:
    """TorchScript model.ts on CPU or CUDA, FP32 or FP16; imports torch only when chosen.

    FP16 casts the weights to half and keeps activations channels-last, the layout cuDNN's
    tensor-core convolutions want; inputs arrive as float32 and logits leave as float32.
    """

    name = "torch"
    platform = "pytorch_torchscript"

    def __init__(
        self, model_dir: Path, device: str = "cpu", threads: int = 0, precision: str = "fp32"
    ) -> None:
        if precision not in PRECISIONS[self.name]:
            raise ModelError(f"BACKEND=torch serves fp32 or fp16, not {precision}")
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
        self.precision = precision
        self._dtype = torch.float16 if precision == "fp16" else torch.float32
        self._layout = torch.channels_last if precision == "fp16" else torch.contiguous_format
        try:
            module = torch.jit.load(str(path), map_location=self.device).eval()
            if precision == "fp16":
                module = module.half().to(memory_format=torch.channels_last)
            self.module = module
        except Exception as exc:
            raise ModelError(f"cannot load {path}: {exc}") from exc

    def forward(self, batch: np.ndarray) -> np.ndarray:
        return self.infer(batch)[0]

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """model.ts returns (logits, embedding, feature map); one exported before embeddings,
        logits only."""
        torch = self._torch
        with torch.inference_mode():
            inputs = torch.from_numpy(batch).to(self.device, non_blocking=True)
            inputs = inputs.to(self._dtype).contiguous(memory_format=self._layout)
            out = self.module(inputs)
            if isinstance(out, tuple | list):
                return out[0].float().cpu().numpy(), out[1].float().cpu().numpy()
            return out.float().cpu().numpy(), None

    def gradcam(self, array: np.ndarray, index: int) -> np.ndarray | None:
        """Grad-CAM of class `index` for one (C, H, W) input: the last feature map weighted by
        the spatial mean of the class logit's gradient, ReLU'd; (h, w) at the map's resolution.
        None when model.ts exports no feature map (an older export, or no pooling module)."""
        torch = self._torch
        with torch.enable_grad():
            inputs = torch.from_numpy(array[None]).to(self.device, self._dtype)
            out = self.module(inputs.contiguous(memory_format=self._layout))
            if not isinstance(out, tuple | list) or len(out) < 3 or not out[2].requires_grad:
                return None
            logits, _, fmap = out[0], out[1], out[2]
            (grad,) = torch.autograd.grad(logits[0, index], fmap)
            weights = grad.mean(dim=(2, 3), keepdim=True)
            cam = torch.relu((weights * fmap).sum(dim=1))[0]
        return cam.detach().float().cpu().numpy()


def load_backend(
    kind: str,
    model_dir: Path,
    device: str,
    threads: int,
    spinning: bool = False,
    precision: str = "fp32",
) -> Backend:
    """One concrete backend (not `auto`) at one precision (not `auto`) for a model folder."""
    if kind == "torch":
        return TorchBackend(model_dir, device, threads, precision)
    if precision == "fp16":
        raise ModelError("PRECISION=fp16 is served by BACKEND=torch (the CUDA image variant)")
    if kind == "onnxruntime":
        return OnnxBackend(model_dir, device, threads, spinning, precision)
    if kind == "openvino":
        return OpenVinoBackend(model_dir, device, threads, precision)
    raise ModelError(f"unknown backend {kind!r}; choose onnxruntime, openvino or torch")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 for stability, returned as float32."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
