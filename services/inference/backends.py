"""Model runtimes: onnxruntime and OpenVINO (both read the ONNX files, no torch), and
TorchScript (optional, for CUDA: FP32, or FP16 with channels-last tensors for tensor cores).

A backend turns a float32 (N, C, H, W) batch into float32 (N, K) logits (`forward`), and with
`infer` also into the (N, D) penultimate-layer embedding of the same forward when the model
exports one (the `embedding` output; older models have none). It is called from one
inference thread only: PyTorch and onnxruntime both slow down badly when forwards come from
several threads on a small machine. The ONNX runtimes serve either precision: `fp32` reads
model.onnx, `int8` the quantized model.int8.onnx (QDQ) written by the export.

OpenVINO can also run batches as streams (`streams` > 1, `start`): each stream has its own share
of the threads, so several batches are in flight at once without meeting at a barrier after every
layer. On a small, busy machine one preempted thread then stalls only its own batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

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
    streams: int  # batches that may be in flight at once through `start`; 1: `infer` only

    def forward(self, batch: np.ndarray) -> np.ndarray: ...

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]: ...


class Running(Protocol):
    """One batch in flight on a stream."""

    def ready(self) -> bool: ...

    def result(self) -> tuple[np.ndarray, np.ndarray | None]: ...


class StreamBackend(Backend, Protocol):
    """A backend that runs up to `streams` batches at once, each on its share of the threads."""

    def start(self, batch: np.ndarray, done: Callable[[], None]) -> Running: ...


class OnnxBackend:
    """onnxruntime session over model.onnx (CPU, or CUDA when the provider is installed)."""

    name = "onnxruntime"
    platform = "onnxruntime_onnx"
    streams = 1

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

    With `streams` other than 1 the model is compiled a second time for throughput: that many
    streams (0: as many as OpenVINO's throughput hint picks for the threads), each with its share
    of the threads, for batches `start`ed while others run. `infer` always uses the latency
    compilation, every thread on one batch: the lowest latency for a lone request.

    The batch axis stays dynamic; OpenVINO compiles a kernel set per batch size on first use,
    which the warm-up at load pays for the sizes it runs.
    """

    name = "openvino"
    platform = "openvino_onnx"

    def __init__(
        self,
        model_dir: Path,
        device: str = "cpu",
        threads: int = 0,
        precision: str = "fp32",
        streams: int = 1,
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
            network = core.read_model(str(path))
            self.compiled = core.compile_model(network, "CPU", config)
            streamed = None
            if streams != 1:
                config["PERFORMANCE_HINT"] = "THROUGHPUT"
                if streams:
                    config["NUM_STREAMS"] = streams
                else:
                    del config["NUM_STREAMS"]
                streamed = core.compile_model(network, "CPU", config)
        except Exception as exc:
            raise ModelError(f"cannot load {path} with openvino: {exc}") from exc
        names = [name for port in self.compiled.inputs for name in port.get_names()]
        if INPUT_NAME not in names:
            raise ModelError(f"{path} has no input named {INPUT_NAME!r} (inputs: {names})")
        self.request = self.compiled.create_infer_request()
        self._outputs = _output_names(self.compiled)
        self.streams = 1
        self._idle: list[Any] = []  # the streams' requests not running a batch
        count = int(streamed.get_property("NUM_STREAMS")) if streamed is not None else 1
        if count > 1:  # the hint may pick one stream (one thread): then the latency one does
            self.streams = count
            self._idle = [streamed.create_infer_request() for _ in range(count)]

    def forward(self, batch: np.ndarray) -> np.ndarray:
        self.request.infer({INPUT_NAME: batch}, share_inputs=True)
        return _read(self.request, self._outputs[:1])[0]

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        self.request.infer({INPUT_NAME: batch}, share_inputs=True)
        return _read(self.request, self._outputs)

    def start(self, batch: np.ndarray, done: Callable[[], None]) -> OpenVinoRunning:
        """Start `batch` on an idle stream; `done` is called from OpenVINO's thread when it
        ends. At most `streams` batches may be in flight."""
        request = self._idle.pop()
        request.set_callback(lambda _: done(), None)
        try:
            request.start_async({INPUT_NAME: batch}, share_inputs=True)
        except Exception:
            self._idle.append(request)
            raise
        return OpenVinoRunning(self, request, batch)


class OpenVinoRunning:
    """A batch in flight on one of an OpenVinoBackend's streams."""

    def __init__(self, backend: OpenVinoBackend, request: Any, batch: np.ndarray) -> None:
        self._backend = backend
        self._request = request
        self._batch = batch  # shared with the request: kept alive until the batch ends

    def ready(self) -> bool:
        try:
            return bool(self._request.wait_for(0))
        except Exception:
            return True  # it failed: `result` raises the error

    def result(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The batch's (logits, embedding or None); the stream is idle again afterwards."""
        try:
            self._request.wait()
            return _read(self._request, self._backend._outputs)
        finally:
            self._backend._idle.append(self._request)


def _output_names(compiled: Any) -> list[str]:
    """The outputs a forward fetches: the logits, and the embedding when the model has one."""
    outputs = {name for port in compiled.outputs for name in port.get_names()}
    return [OUTPUT_NAME, *([EMBEDDING_OUTPUT] if EMBEDDING_OUTPUT in outputs else [])]


def _read(request: Any, names: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """Copies of a finished request's outputs: it reuses its buffers on the next call."""
    logits = np.array(request.get_tensor(names[0]).data, dtype=np.float32, copy=True)
    if len(names) == 1:
        return logits, None
    return logits, np.array(request.get_tensor(names[1]).data, dtype=np.float32, copy=True)


class TorchBackend:
    """TorchScript model.ts on CPU or CUDA, FP32 or FP16; imports torch only when chosen.

    FP16 casts the weights to half and keeps activations channels-last, the layout cuDNN's
    tensor-core convolutions want; inputs arrive as float32 and logits leave as float32.
    """

    name = "torch"
    platform = "pytorch_torchscript"
    streams = 1

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
    streams: int = 1,
) -> Backend:
    """One concrete backend (not `auto`) at one precision (not `auto`) for a model folder.
    `streams` applies to OpenVINO; the others run one batch at a time."""
    if kind == "torch":
        return TorchBackend(model_dir, device, threads, precision)
    if precision == "fp16":
        raise ModelError("PRECISION=fp16 is served by BACKEND=torch (the CUDA image variant)")
    if kind == "onnxruntime":
        return OnnxBackend(model_dir, device, threads, spinning, precision)
    if kind == "openvino":
        return OpenVinoBackend(model_dir, device, threads, precision, streams)
    raise ModelError(f"unknown backend {kind!r}; choose onnxruntime, openvino or torch")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 for stability, returned as float32."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
