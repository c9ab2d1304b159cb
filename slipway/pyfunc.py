"""The `python_function` flavor of every registered slipway model: images in, classes out.

`mlflow.pyfunc.load_model("models:/NAME@production")` imports this module from the model's own
`code/` folder, beside the torch-free `slipway.contract` it uses, so a pyfunc user needs no
slipway install: the model's requirements (MLflow, onnxruntime, Pillow, NumPy, pandas,
pydantic) are enough.

Input: a DataFrame (or a dict of columns) with the column `image`, one image per row, each
- the bytes of an encoded image file (PNG, JPEG, BMP, GIF, WebP, TIFF),
- the same bytes base64-encoded as a string (`mlflow models serve` decodes the base64 of a
  `binary` column itself, so JSON clients send base64 either way), or
- an array of pixels, (H, W) or (H, W, C) with values 0-255.
Each image goes through the model card's `Preprocessing`, the one transform training used.

Output: a DataFrame with `class`, `confidence` and `probabilities` (one per class, in the
card's order).
"""

from __future__ import annotations

import base64
import binascii
import io
import os
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from slipway.contract.card import ONNX_FILE, load_card
from slipway.contract.preprocessing import ACCEPTED_MODES

INPUT_COLUMN = "image"
OUTPUT_COLUMNS = ("class", "confidence", "probabilities")
ONNX_INPUT = "input"
ONNX_OUTPUT = "logits"


class ImageClassifier:
    """A model folder's ONNX model behind the card's preprocessing."""

    def __init__(self, folder: str | os.PathLike[str], threads: int = 0) -> None:
        import onnxruntime as ort

        card = load_card(folder)
        self.classes = list(card.classes)
        self.transform = card.transform
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            os.path.join(folder, ONNX_FILE), options, providers=["CPUExecutionProvider"]
        )

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        """Class, confidence and probabilities of every image in the `image` column."""
        import pandas as pd

        rows = [to_image(item, n) for n, item in enumerate(_column(model_input))]
        if not rows:
            return pd.DataFrame({name: [] for name in OUTPUT_COLUMNS})
        batch = np.stack([self.transform(image) for image in rows]).astype(np.float32)
        probs = softmax(self.session.run([ONNX_OUTPUT], {ONNX_INPUT: batch})[0])
        top = probs.argmax(axis=1)
        return pd.DataFrame(
            {
                "class": [self.classes[i] for i in top],
                "confidence": [float(probs[n, i]) for n, i in enumerate(top)],
                "probabilities": [row.tolist() for row in probs],
            }
        )


def _load_pyfunc(path: str) -> ImageClassifier:
    """MLflow's entry point for a `loader_module` flavor: `path` is the model directory."""
    return ImageClassifier(path)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, returned as float32 (as the inference service computes it)."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def _column(model_input: Any) -> list[Any]:
    if isinstance(model_input, dict):
        values = model_input.get(INPUT_COLUMN)
    elif hasattr(model_input, "columns"):
        values = model_input[INPUT_COLUMN] if INPUT_COLUMN in model_input.columns else None
    else:
        values = model_input
    if values is None:
        raise ValueError(f"the input needs a column {INPUT_COLUMN!r} with one image per row")
    if isinstance(values, bytes | str):
        return [values]
    return list(values)


def to_image(item: Any, row: int = 0) -> Image.Image:
    """One input cell as a decoded image: file bytes, base64 text or an array of pixels."""
    if isinstance(item, str):
        item = _from_base64(item, row)
    if isinstance(item, bytes | bytearray | memoryview):
        return _decode(bytes(item), row)
    pixels = np.asarray(item)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (3, 4)):
        raise ValueError(
            f"row {row}: pixels must be (H, W) or (H, W, 3|4), got shape {pixels.shape}"
        )
    if pixels.size == 0 or not np.issubdtype(pixels.dtype, np.number):
        raise ValueError(f"row {row}: pixels must be numbers, got {pixels.dtype}")
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError(f"row {row}: pixel values must be within 0-255")
    return Image.fromarray(np.rint(pixels).astype(np.uint8))


def _from_base64(text: str, row: int) -> bytes:
    data = text.split(",", 1)[1] if text.startswith("data:") else text
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"row {row}: text is not base64 of an image file: {exc}") from exc


def _decode(payload: bytes, row: int) -> Image.Image:
    if not payload:
        raise ValueError(f"row {row}: empty image (0 bytes)")
    try:
        image = Image.open(io.BytesIO(payload))
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ValueError(f"row {row}: not a decodable image file: {exc}") from exc
    if image.mode not in ACCEPTED_MODES:
        raise ValueError(f"row {row}: unsupported pixel mode {image.mode!r}")
    return image
