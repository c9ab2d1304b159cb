"""The Open Inference Protocol's dataplane, the same for every transport.

REST/JSON, the REST binary tensor data extension and gRPC are thin adapters: each turns its
request into an `InferRequest` of named NumPy tensors, calls `DataPlane.infer`, and encodes the
`InferResponse`. Which inputs and outputs exist, their datatypes and shapes, classification,
metadata and readiness are decided here once, on top of `InferenceService` (batching, metrics,
prediction log), as KServe layers its protocols over one dataplane.

Inputs (exactly one per request):
  `input`  FP32 [N, C, H, W], already normalised; or UINT8 [N, C, H, W], pixels 0..255 at the
           model's size, normalised here with the card's mean and std (what the transform does)
  `image`  BYTES [N] or [N, 1]: encoded image files, decoded and preprocessed by the service.
           An element is raw bytes (binary REST, gRPC) or base64 text (JSON, where BYTES data
           are strings; a `data:` URL prefix is allowed)
Outputs: `probabilities`, `logits` (FP32 [N, K]), `label` (BYTES [N]). A requested FP32 output
with the `classification` parameter k is BYTES [N, k] instead: "<value>:<index>:<label>", the
k highest values first, as Triton's classification extension returns them.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np

from services.inference.errors import BadInputError, ModelNotFoundError, TooLargeError
from services.inference.images import Prepared, tensor_stats
from services.inference.model import LoadedModel, ModelSlot
from services.inference.service import Answer, InferenceService

SERVER_NAME = "slipway"
EXTENSIONS = ("binary_tensor_data", "classification")
TENSOR_INPUT = "input"
IMAGE_INPUT = "image"
OUTPUTS = ("probabilities", "logits", "label")
CLASSIFICATION = "classification"


@dataclass
class Tensor:
    """A named tensor: numeric data as its NumPy dtype, BYTES as an object array."""

    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class RequestedOutput:
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class InferRequest:
    inputs: list[Tensor]
    outputs: list[RequestedOutput] = field(default_factory=list)  # empty: every output
    id: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class InferResponse:
    model_name: str
    model_version: str
    id: str
    outputs: list[Tensor]


def server_version() -> str:
    """The package version, reported by `GET /v2`, ServerMetadata and the OpenAPI document."""
    try:
        return metadata.version("slipway")
    except metadata.PackageNotFoundError:
        return "0"


class DataPlane:
    """Metadata, readiness and inference of the served models, for any transport."""

    def __init__(self, service: InferenceService) -> None:
        self.service = service

    @property
    def ready(self) -> bool:
        return self.service.ready

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": server_version(), "extensions": list(EXTENSIONS)}

    def model(self, name: str, version: str | None = None) -> tuple[ModelSlot, LoadedModel]:
        """The slot and its loaded version: 404 for an unknown name or version, 503 loading."""
        slot = self.service.slot(name)
        model = self.service.current(slot)
        if version and version != model.version:
            raise ModelNotFoundError(
                f"model {name!r} has no version {version!r} (serving {model.version})"
            )
        return slot, model

    def model_ready(self, name: str, version: str | None = None) -> bool:
        """Loaded and not draining; an unknown model or version is 404."""
        slot = self.service.slot(name)
        model = slot.current
        ready = model is not None and not self.service.draining
        if ready and version and model is not None and model.version != version:
            raise ModelNotFoundError(f"model {name!r} has no version {version!r}")
        return ready

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        model = self.model(name, version)[1]
        c, h, w = model.transform.input_shape
        k = len(model.classes)
        return {
            "name": model.served_name,
            "versions": [model.version],
            "platform": model.backend.platform,
            "inputs": [
                {"name": TENSOR_INPUT, "datatype": "FP32", "shape": [-1, c, h, w]},
                {"name": IMAGE_INPUT, "datatype": "BYTES", "shape": [-1]},
            ],
            "outputs": [
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, k]},
                {"name": "logits", "datatype": "FP32", "shape": [-1, k]},
                {"name": "label", "datatype": "BYTES", "shape": [-1]},
            ],
        }

    async def infer(
        self,
        name: str,
        version: str | None,
        request: InferRequest,
        route: str,
        chosen: ModelSlot | None = None,
    ) -> InferResponse:
        """Validate, queue for the batcher, and answer with the requested outputs; `chosen`:
        the slot that answers instead of `name`'s (the canary's choice)."""
        slot, model = self.model(name, version)
        if chosen is not None and chosen is not slot:
            slot, model = chosen, self.service.current(chosen)
        wanted = _requested(request.outputs, len(model.classes))
        if len(request.inputs) != 1:
            raise BadInputError(
                f"expected exactly one input ({TENSOR_INPUT!r} or {IMAGE_INPUT!r}), "
                f"got {len(request.inputs)}"
            )
        tensor = request.inputs[0]
        limit = self.service.worker.max_queue
        answer: Answer
        if tensor.name == TENSOR_INPUT:
            inputs = _tensor_inputs(tensor, model, limit)
            answer = await self.service.predict_tensors(slot, inputs, route)
        elif tensor.name == IMAGE_INPUT:
            answer = await self.service.predict_files(slot, _image_payloads(tensor, limit), route)
        else:
            raise BadInputError(
                f"unknown input {tensor.name!r}; expected {TENSOR_INPUT!r} (FP32 or UINT8 "
                f"[N, C, H, W]) or {IMAGE_INPUT!r} (BYTES [N], image files)"
            )
        return InferResponse(
            model_name=answer.model.served_name,
            model_version=answer.model.version,
            id=request.id or str(uuid.uuid4()),
            outputs=_outputs(answer, wanted),
        )


def _requested(outputs: list[RequestedOutput], classes: int) -> list[tuple[str, int]]:
    """(name, classification count or 0) per output to return, checked before any work."""
    if not outputs:
        return [(name, 0) for name in OUTPUTS]
    names = [o.name for o in outputs]
    unknown = sorted(set(names) - set(OUTPUTS))
    if unknown:
        raise BadInputError(f"unknown output(s) {unknown}; available: {list(OUTPUTS)}")
    if len(set(names)) != len(names):
        raise BadInputError(f"output(s) requested twice: {names}")
    wanted = []
    for output in outputs:
        count = output.parameters.get(CLASSIFICATION)
        if count is None:
            wanted.append((output.name, 0))
            continue
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise BadInputError(
                f"output {output.name!r}: classification must be a positive integer, got {count!r}"
            )
        if output.name == "label":
            raise BadInputError("classification applies to 'probabilities' or 'logits'")
        wanted.append((output.name, min(count, classes)))
    return wanted


def _tensor_inputs(tensor: Tensor, model: LoadedModel, limit: int) -> list[Prepared]:
    transform = model.transform
    expected = transform.input_shape
    if tensor.datatype not in ("FP32", "UINT8"):
        raise BadInputError(
            f"input {TENSOR_INPUT!r} must be FP32 (normalised) or UINT8 (pixels), "
            f"got {tensor.datatype}"
        )
    shape = tuple(tensor.shape)
    if len(shape) != 4 or shape[1:] != expected or shape[0] < 1:
        raise BadInputError(
            f"input {TENSOR_INPUT!r} has shape {list(shape)}; expected {[-1, *expected]}"
        )
    if shape[0] > limit:
        raise TooLargeError(f"batch of {shape[0]} exceeds the limit of {limit}")
    if tensor.datatype == "UINT8":
        mean = np.asarray(transform.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(transform.std, dtype=np.float32)[:, None, None]
        batch = (tensor.data.astype(np.float32) / 255.0 - mean) / std
    else:
        batch = tensor.data
    batch = np.ascontiguousarray(batch, dtype=np.float32).reshape(shape)
    if not np.isfinite(batch).all():
        raise BadInputError(f"input {TENSOR_INPUT!r}: data holds NaN or infinity")
    return [tensor_stats(row, transform) for row in batch]


def _image_payloads(tensor: Tensor, limit: int) -> list[tuple[str, bytes]]:
    if tensor.datatype != "BYTES":
        raise BadInputError(f"input {IMAGE_INPUT!r} must be BYTES, got {tensor.datatype}")
    items = tensor.data.ravel().tolist()
    count = len(items)
    if count < 1 or tensor.shape not in ([count], [count, 1]):
        raise BadInputError(
            f"input {IMAGE_INPUT!r}: shape {tensor.shape} must be [N] or [N, 1] with N >= 1 "
            f"images (got {count})"
        )
    if count > limit:
        raise TooLargeError(f"batch of {count} exceeds the limit of {limit}")
    return [(f"{IMAGE_INPUT}[{n}]", _image_bytes(item, n)) for n, item in enumerate(items)]


def _image_bytes(item: object, n: int) -> bytes:
    """Raw bytes as they are; text (JSON) is base64, optionally a `data:` URL."""
    if isinstance(item, bytes):
        return item
    if not isinstance(item, str):
        raise BadInputError(f"{IMAGE_INPUT}[{n}]: expected image bytes or a base64 string")
    text = item.split(",", 1)[1] if item.startswith("data:") else item
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadInputError(f"{IMAGE_INPUT}[{n}]: not valid base64: {exc}") from exc


def _outputs(answer: Answer, wanted: list[tuple[str, int]]) -> list[Tensor]:
    classes = answer.model.classes
    probs = np.stack([p.probs for p in answer.predictions]).astype(np.float32)
    n, k = probs.shape
    outputs = []
    for name, count in wanted:
        if name == "label":
            labels = np.array([classes[int(i)] for i in probs.argmax(axis=1)], dtype=object)
            outputs.append(Tensor(name, "BYTES", [n], labels))
            continue
        values = probs if name == "probabilities" else _logits(answer)
        if count:
            outputs.append(Tensor(name, "BYTES", [n, count], _classify(values, count, classes)))
        else:
            outputs.append(Tensor(name, "FP32", [n, k], values))
    return outputs


def _logits(answer: Answer) -> np.ndarray:
    return np.stack([p.logits for p in answer.predictions]).astype(np.float32)


def _classify(values: np.ndarray, count: int, classes: list[str]) -> np.ndarray:
    """Top-`count` per row as "<value>:<index>:<label>", highest first (ties: lower index)."""
    order = np.argsort(-values, axis=1, kind="stable")[:, :count]
    rows = [
        [f"{row[i]:f}:{i}:{classes[i]}" for i in top]
        for row, top in zip(values, order, strict=True)
    ]
    out = np.empty((len(rows), count), dtype=object)
    out[:] = rows
    return out
