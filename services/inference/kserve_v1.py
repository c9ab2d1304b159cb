"""KServe V1 protocol (TensorFlow Serving's REST shape): request parsing and the prediction shape.

A request is `{"instances": [...]}` (or `{"inputs": [...]}`, which KServe reads the same way).
Every instance of one request is of one kind:

- an image: a base64 string, `{"b64": "..."}`, `{"image": {"b64": "..."}}`, `{"image": "..."}` or
  `{"data": "..."}` (KServe's TorchServe image examples); the service decodes and preprocesses it;
- a tensor: nested lists of shape (C, H, W), already preprocessed as the model card says.

Each prediction is `{"label", "index", "confidence", "probabilities"}`, the probabilities in the
model's class order. Status codes: a body that does not have the documented shape is 422 (so a
schema-valid body never gets one); content this model cannot use (bad base64, a tensor of the
wrong shape, images and tensors mixed) is 400; a file that is no image is 415; more instances
than the queue holds is 413.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import numpy as np
from pydantic import BaseModel

from services.inference.errors import (
    BadInputError,
    TooLargeError,
    UnprocessableError,
    UnsupportedMediaError,
)
from services.inference.images import Prepared, tensor_stats
from services.inference.service import Answer
from slipway.contract.preprocessing import Preprocessing

LIST_KEYS = ("instances", "inputs")
IMAGE_KEYS = ("image", "b64", "data")


class KServeV1ModelStatus(BaseModel):
    name: str
    ready: bool


class KServeV1Prediction(BaseModel):
    label: str
    index: int
    confidence: float
    probabilities: list[float]


class KServeV1PredictResponse(BaseModel):
    predictions: list[KServeV1Prediction]


_B64 = {
    "type": "string",
    "format": "byte",
    "contentMediaType": "image/*",
    "description": "A base64-encoded image file (PNG, JPEG, BMP, GIF, WebP, TIFF).",
}
# A 1x1 grey PNG: the smallest request that reaches the model (the OpenAPI example).
EXAMPLE_PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR42mNoAAAAggCB2kUIOwAAAABJRU5ErkJggg=="
)
_B64_OBJECT = {"type": "object", "required": ["b64"], "properties": {"b64": _B64}}
_IMAGE_VALUE = {"oneOf": [_B64, _B64_OBJECT]}

REQUEST_SCHEMA: dict[str, Any] = {
    "title": "KServeV1PredictRequest",
    "type": "object",
    "description": "`instances` (or `inputs`, not both): images or preprocessed tensors, one "
    "kind per request.",
    "properties": {
        "instances": {"$ref": "#/$defs/KServeV1Instances"},
        "inputs": {"$ref": "#/$defs/KServeV1Instances"},
    },
    "oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}],
    "example": {"instances": [{"image": {"b64": EXAMPLE_PNG_B64}}, EXAMPLE_PNG_B64]},
    "$defs": {
        "KServeV1Instances": {
            "type": "array",
            "minItems": 1,
            "items": {"$ref": "#/$defs/KServeV1Instance"},
        },
        "KServeV1Instance": {
            "oneOf": [
                _B64,
                {"$ref": "#/$defs/KServeV1ImageObject"},
                {"$ref": "#/$defs/KServeV1Tensor"},
            ]
        },
        "KServeV1ImageObject": {
            "type": "object",
            "description": "An image under exactly one of `image`, `b64` or `data`.",
            "properties": {"image": _IMAGE_VALUE, "b64": _B64, "data": _IMAGE_VALUE},
            "oneOf": [{"required": [key]} for key in IMAGE_KEYS],
        },
        "KServeV1Tensor": {
            "type": "array",
            "description": "One preprocessed image, shape (C, H, W) of the model's input.",
            "minItems": 1,
            "items": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "array", "minItems": 1, "items": {"type": "number"}},
            },
        },
    },
}


def parse_instances(raw: bytes, content_type: str, limit: int) -> list[Any]:
    """The instances of a request body: a non-empty list of at most `limit` items."""
    if "json" not in content_type.lower():
        raise UnsupportedMediaError(
            f"expected Content-Type: application/json, got {content_type or 'none'}"
        )
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BadInputError(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise UnprocessableError("request body must be a JSON object with 'instances'")
    keys = [key for key in LIST_KEYS if key in body]
    if len(keys) != 1:
        raise UnprocessableError("request body needs exactly one of 'instances' and 'inputs'")
    items = body[keys[0]]
    if not isinstance(items, list) or not items:
        raise UnprocessableError(f"'{keys[0]}' must be a non-empty list")
    if len(items) > limit:
        raise TooLargeError(f"{len(items)} instances exceed the limit of {limit} per request")
    return items


def image_payloads(items: list[Any]) -> list[tuple[str, bytes]] | None:
    """The decoded image files when every instance is an image; None when all are tensors."""
    tensors = sum(isinstance(item, list) for item in items)
    if tensors == len(items):
        return None
    if tensors:
        raise BadInputError("instances mix images and tensors; send one kind per request")
    return [
        (f"instances[{n}]", _image_bytes(item, f"instances[{n}]")) for n, item in enumerate(items)
    ]


def _image_bytes(item: Any, label: str) -> bytes:
    if isinstance(item, dict):
        keys = [key for key in IMAGE_KEYS if key in item]
        if len(keys) != 1:
            raise UnprocessableError(f"{label}: an image object needs exactly one of {IMAGE_KEYS}")
        value = item[keys[0]]
        if keys[0] != "b64" and isinstance(value, dict) and "b64" in value:
            value = value["b64"]
        label = f"{label}.{keys[0]}"
        item = value
    if not isinstance(item, str):
        raise UnprocessableError(
            f"{label}: expected a base64 string, an object holding one, or a tensor (nested lists)"
        )
    text = item.partition(",")[2] if item.startswith("data:") else item
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadInputError(f"{label}: not valid base64: {exc}") from exc


def tensor_inputs(items: list[Any], transform: Preprocessing) -> list[Prepared]:
    """Each instance as a float32 (C, H, W) array of the model's input shape, with statistics."""
    shape = tuple(transform.input_shape)
    inputs = []
    for n, item in enumerate(items):
        try:
            array = np.asarray(item)
        except (ValueError, TypeError, RecursionError) as exc:
            raise BadInputError(f"instances[{n}]: not a tensor (ragged nested lists)") from exc
        if array.shape != shape:
            raise BadInputError(
                f"instances[{n}] has shape {list(array.shape)}; expected {list(shape)} "
                "(one preprocessed image; send image files as base64 instead)"
            )
        if array.dtype.kind not in "iuf":
            raise BadInputError(f"instances[{n}]: a tensor holds numbers only")
        with np.errstate(over="ignore"):
            values = np.ascontiguousarray(array, dtype=np.float32)
        if not np.isfinite(values).all():
            raise BadInputError(f"instances[{n}]: NaN, infinity or a value beyond float32")
        inputs.append(tensor_stats(values, transform))
    return inputs


def predictions(answer: Answer) -> list[dict[str, Any]]:
    """One `{"label", "index", "confidence", "probabilities"}` per instance."""
    classes = answer.model.classes
    out = []
    for pred in answer.predictions:
        top = int(np.argmax(pred.probs))
        out.append(
            {
                "label": classes[top],
                "index": top,
                "confidence": float(pred.probs[top]),
                "probabilities": pred.probs.astype(float).tolist(),
            }
        )
    return out
