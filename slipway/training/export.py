"""Export a trained model folder to ONNX and TorchScript, check parity, measure latency."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from slipway.contract.card import ONNX_FILE, TORCHSCRIPT_FILE, load_card, served_precision
from slipway.embedding.projection import EMBEDDING_FILE, EMBEDDING_OUTPUT
from slipway.errors import ModelError

if TYPE_CHECKING:
    from slipway.config.export import Int8Config
    from slipway.data.scan import DatasetScan

log = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
OPSET = 17


def export_onnx(model_dir: str | os.PathLike[str]) -> Path:
    """Write model.onnx with a dynamic batch axis and two outputs: `logits` first (what every
    client reads) and `embedding`, the penultimate-layer features of the same forward."""
    import torch

    from slipway.training.embedding import with_embedding
    from slipway.training.models import load_trained

    card = load_card(model_dir)
    model = with_embedding(load_trained(model_dir))
    dummy = torch.zeros((2, *card.transform.input_shape), dtype=torch.float32)
    path = Path(model_dir) / ONNX_FILE
    torch.onnx.export(
        model,
        (dummy,),
        str(path),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME, EMBEDDING_OUTPUT],
        dynamic_axes={
            INPUT_NAME: {0: "batch"},
            OUTPUT_NAME: {0: "batch"},
            EMBEDDING_OUTPUT: {0: "batch"},
        },
        opset_version=OPSET,
        dynamo=False,
    )
    import onnx

    onnx.checker.check_model(str(path))
    return path


def export_torchscript(model_dir: str | os.PathLike[str]) -> Path:
    """Write model.ts (traced TorchScript returning `(logits, embedding[, feature_map])`) for
    the torch serving backend; the feature map is what its Grad-CAM differentiates."""
    import torch

    from slipway.training.embedding import with_embedding
    from slipway.training.models import load_trained

    card = load_card(model_dir)
    model = with_embedding(load_trained(model_dir), feature_map=True)
    dummy = torch.zeros((1, *card.transform.input_shape), dtype=torch.float32)
    with torch.inference_mode():
        traced = torch.jit.trace(model, dummy)
    path = Path(model_dir) / TORCHSCRIPT_FILE
    traced.save(str(path))
    return path


def onnx_session(path: str | os.PathLike[str], threads: int = 0) -> Any:
    """An onnxruntime CPU session with graph optimisations on."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def parity(model_dir: str | os.PathLike[str], inputs: np.ndarray) -> dict[str, float]:
    """Max absolute difference of ONNX and TorchScript logits (and of the ONNX embedding)
    against eager torch on `inputs`."""
    import torch

    from slipway.training.embedding import with_embedding
    from slipway.training.models import load_trained

    model = with_embedding(load_trained(model_dir))
    with torch.inference_mode():
        eager, eager_embedding = (t.numpy() for t in model(torch.from_numpy(inputs)))
    result: dict[str, float] = {}
    onnx_path = Path(model_dir) / ONNX_FILE
    if onnx_path.is_file():
        session = onnx_session(onnx_path)
        got, embedding = session.run([OUTPUT_NAME, EMBEDDING_OUTPUT], {INPUT_NAME: inputs})
        result["onnx_max_abs_diff"] = float(np.abs(got - eager).max())
        result["onnx_embedding_max_abs_diff"] = float(np.abs(embedding - eager_embedding).max())
    ts_path = Path(model_dir) / TORCHSCRIPT_FILE
    if ts_path.is_file():
        scripted = torch.jit.load(str(ts_path))
        with torch.inference_mode():
            got = scripted(torch.from_numpy(inputs))[0].numpy()
        result["torchscript_max_abs_diff"] = float(np.abs(got - eager).max())
    return result


def measure_latency(
    onnx_path: str | os.PathLike[str],
    input_shape: tuple[int, ...],
    batch_sizes: tuple[int, ...] = (1, 8),
    repeats: int = 50,
    threads: int = 0,
) -> dict[str, float]:
    """p50/p95 milliseconds per forward with onnxruntime, for each batch size."""
    session = onnx_session(onnx_path, threads)
    rng = np.random.default_rng(0)
    result: dict[str, float] = {}
    for batch in batch_sizes:
        data = rng.standard_normal((batch, *input_shape)).astype(np.float32)
        for _ in range(5):
            session.run([OUTPUT_NAME], {INPUT_NAME: data})
        times = []
        for _ in range(repeats):
            began = time.perf_counter()
            session.run([OUTPUT_NAME], {INPUT_NAME: data})
            times.append((time.perf_counter() - began) * 1000)
        result[f"latency_b{batch}_p50_ms"] = float(np.percentile(times, 50))
        result[f"latency_b{batch}_p95_ms"] = float(np.percentile(times, 95))
        result[f"throughput_b{batch}_img_s"] = float(batch * 1000 / np.mean(times))
    return result


def export_model(
    model_dir: str | os.PathLike[str],
    parity_inputs: np.ndarray,
    tolerance: float = 1e-3,
    batch_sizes: tuple[int, ...] = (1, 8),
    torchscript: bool = True,
    scan: DatasetScan | None = None,
    int8: Int8Config | None = None,
) -> dict[str, Any]:
    """Export ONNX (+ TorchScript), fail on a parity error above `tolerance`, measure latency.

    With a dataset `scan`, the embedding reference (`embedding.npz`: a PCA projection and the
    projected embeddings of a spread sample of the training split) is written beside the model.

    With a dataset `scan` and an enabled `int8` config, an INT8 model is quantized beside the
    FP32 one, compared with it on the test split and gated (`slipway.training.quantize`); a
    refused INT8 model is kept for inspection but never served. The results are stored in the
    card's `export` section and returned.
    """
    onnx_path = export_onnx(model_dir)
    if torchscript:
        export_torchscript(model_dir)
    diffs = parity(model_dir, parity_inputs.astype(np.float32))
    worst = max(diffs.values())
    if worst > tolerance:
        raise ModelError(
            f"exported model differs from eager torch by {worst:.2e} > {tolerance:.0e}"
        )
    card = load_card(model_dir)
    info: dict[str, Any] = {
        **diffs,
        **measure_latency(onnx_path, card.transform.input_shape, batch_sizes),
        "parity_images": len(parity_inputs),
        "onnx_opset": OPSET,
        "files": [ONNX_FILE, *([TORCHSCRIPT_FILE] if torchscript else [])],
    }
    if scan is not None:
        from slipway.training.embedding import reference_projection

        projection = reference_projection(model_dir, scan)
        projection.save(model_dir)
        info["embedding"] = {
            "file": EMBEDDING_FILE,
            "output": EMBEDDING_OUTPUT,
            "features": projection.features,
            "dims": projection.dims,
            "reference_images": len(projection.reference),
            "reference_split": "train",
            "explained_variance": round(float(projection.explained_variance_ratio.sum()), 4),
        }
        info["files"].append(EMBEDDING_FILE)
    if scan is not None and int8 is not None and int8.enabled:
        from slipway.training.embedding import add_int8_reference
        from slipway.training.quantize import export_int8

        figures = export_int8(model_dir, scan, int8, batch_sizes)
        info.update(figures)
        info["files"].append(figures["int8"]["file"])
        if add_int8_reference(model_dir, scan) is not None:
            info["embedding"]["int8_reference"] = True
    info["serve_precision"] = served_precision(info)
    card.export = info
    card.save(model_dir)
    return info
