"""INT8 post-training quantization of an exported model, its parity figures and its gate.

Static quantization in the QDQ format with per-channel weight scales: the activation ranges are
calibrated on a sample of the *training* split, preprocessed by the card's one `Preprocessing`,
and the result is written beside the FP32 model as `model.int8.onnx`. Both ONNX models are then
run on the whole test split: the INT8 model's top-1 agreement with FP32, its largest
|probability difference|, its accuracy and macro-F1 are recorded, and it is only marked
servable when its accuracy is within the configured margin of the FP32 model's.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from slipway.config.export import Int8Config
from slipway.contract.card import ONNX_FILE, ONNX_INT8_FILE, load_card
from slipway.data.scan import DatasetScan
from slipway.errors import DataError
from slipway.training.export import INPUT_NAME, OUTPUT_NAME, measure_latency, onnx_session
from slipway.training.metrics import classification_report
from slipway.training.parity import batches, spread_samples

log = logging.getLogger(__name__)

CALIBRATION_BATCH = 8


def calibration_inputs(
    model_dir: str | os.PathLike[str], scan: DatasetScan, count: int, split: str = "train"
) -> np.ndarray:
    """`count` images spread over `split`, preprocessed exactly as training and serving do."""
    samples = spread_samples(scan, split, count)
    if not samples:
        raise DataError(f"the {split} split is empty; nothing to calibrate INT8 ranges on")
    return np.concatenate([inputs for inputs, _ in batches(model_dir, scan, samples)])


def _reader(inputs: np.ndarray) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._chunks = iter(
                inputs[i : i + CALIBRATION_BATCH] for i in range(0, len(inputs), CALIBRATION_BATCH)
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            chunk = next(self._chunks, None)
            return None if chunk is None else {INPUT_NAME: np.ascontiguousarray(chunk)}

    return Reader()


def quantize_int8(
    model_dir: str | os.PathLike[str], calibration: np.ndarray, config: Int8Config
) -> Path:
    """Write model.int8.onnx (QDQ: UINT8 activations, INT8 weights) calibrated on `calibration`."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[config.method]
    source = Path(model_dir) / ONNX_FILE
    target = Path(model_dir) / ONNX_INT8_FILE
    with tempfile.TemporaryDirectory(prefix="slipway-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # Folds constants and infers every shape, so each Conv/Gemm gets its QDQ pair.
        quant_pre_process(source, prepared)
        quantize_static(
            prepared,
            target,
            _reader(calibration.astype(np.float32)),
            quant_format=QuantFormat.QDQ,
            per_channel=config.per_channel,
            # U8S8: onnxruntime's x86 integer kernels are about 3x faster with unsigned
            # activations than with S8S8 QDQ on this kind of CPU (benchmarks/README.md).
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=method,
        )
    return target


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def compare_on_split(
    model_dir: str | os.PathLike[str], scan: DatasetScan, split: str = "test"
) -> dict[str, float]:
    """FP32 and INT8 ONNX models on every image of `split`: accuracy, macro-F1, agreement."""
    folder = Path(model_dir)
    card = load_card(folder)
    samples = scan.split(split)
    if not samples:
        raise DataError(f"the {split} split is empty; the INT8 model cannot be compared")
    fp32 = onnx_session(folder / ONNX_FILE)
    int8 = onnx_session(folder / ONNX_INT8_FILE)
    probs: dict[str, list[np.ndarray]] = {"fp32": [], "int8": []}
    labels: list[np.ndarray] = []
    for inputs, truth in batches(folder, scan, samples):
        for name, session in (("fp32", fp32), ("int8", int8)):
            logits = session.run([OUTPUT_NAME], {INPUT_NAME: inputs})[0]
            probs[name].append(_softmax(logits))
        labels.append(truth)
    truth_all = np.concatenate(labels)
    p32, p8 = np.concatenate(probs["fp32"]), np.concatenate(probs["int8"])
    r32 = classification_report(truth_all, p32, card.classes)
    r8 = classification_report(truth_all, p8, card.classes)
    return {
        "fp32_onnx_test_accuracy": r32["accuracy"],
        "fp32_onnx_test_macro_f1": r32["macro_f1"],
        "int8_test_accuracy": r8["accuracy"],
        "int8_test_macro_f1": r8["macro_f1"],
        "int8_top1_agreement": float((p32.argmax(axis=1) == p8.argmax(axis=1)).mean()),
        "int8_max_abs_prob_diff": float(np.abs(p32 - p8).max()),
        "int8_test_images": len(truth_all),
    }


def int8_decision(figures: dict[str, float], margin_points: float) -> tuple[bool, str]:
    """Servable when INT8 test accuracy is within `margin_points` of FP32's; and why."""
    fp32 = figures["fp32_onnx_test_accuracy"] * 100
    int8 = figures["int8_test_accuracy"] * 100
    drop = fp32 - int8
    if drop <= margin_points + 1e-9:
        return True, (
            f"test accuracy {int8:.2f} % vs FP32 {fp32:.2f} % (drop {drop:.2f} points, "
            f"margin {margin_points:g})"
        )
    return False, (
        f"test accuracy {int8:.2f} % is {drop:.2f} points below FP32's {fp32:.2f} % (margin "
        f"{margin_points:g}); FP32 stays the served model"
    )


def export_int8(
    model_dir: str | os.PathLike[str],
    scan: DatasetScan,
    config: Int8Config,
    batch_sizes: tuple[int, ...] = (1, 8),
    calibration: np.ndarray | None = None,
) -> dict[str, Any]:
    """Quantize, compare on the test split, gate and time; the flat figures for the card.

    `calibration` replaces the training-split sample (tests make a variant that must fail).
    """
    if calibration is None:
        calibration = calibration_inputs(model_dir, scan, config.calibration_images)
    path = quantize_int8(model_dir, calibration, config)
    figures = compare_on_split(model_dir, scan)
    servable, reason = int8_decision(figures, config.accuracy_margin)
    shape = load_card(model_dir).transform.input_shape
    latency = measure_latency(path, shape, batch_sizes)
    log_fn = log.info if servable else log.warning
    log_fn("INT8 model %s: %s", "servable" if servable else "refused", reason)
    return {
        **figures,
        **{f"int8_{key}": value for key, value in latency.items()},
        "int8_servable": int(servable),
        "int8": {
            "file": ONNX_INT8_FILE,
            "servable": servable,
            "reason": reason,
            "method": config.method,
            "per_channel": config.per_channel,
            "calibration_images": len(calibration),
            "calibration_split": "train",
            "accuracy_margin_points": config.accuracy_margin,
            "format": "QDQ",
        },
    }
