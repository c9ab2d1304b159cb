"""Open Inference Protocol v2 over REST/JSON, as KServe, Triton and MLServer speak it.

Inputs: `input` (FP32, shape [N, C, H, W], already preprocessed) or `image` (BYTES, shape [N]:
base64-encoded image files, KServe's way of carrying binary data in JSON; decoded and
preprocessed by the service). Outputs: `probabilities` and `logits` (FP32 [N, K]) and `label`
(BYTES [N], the top class). Errors are `{"error": "<message>"}`.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from importlib import metadata
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from services.inference.deps import Authorized, Service
from services.inference.errors import (
    BadInputError,
    ModelNotFoundError,
    TooLargeError,
    UnsupportedMediaError,
)
from services.inference.images import tensor_stats
from services.inference.model import LoadedModel, ModelSlot
from services.inference.routes_v1 import ERRORS
from services.inference.schemas import (
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    RequestInput,
    ServerMetadata,
)
from services.inference.service import Answer, InferenceService

health = APIRouter(prefix="/v2", tags=["v2"])
router = APIRouter(prefix="/v2", tags=["v2"], dependencies=Authorized)

TENSOR_INPUT = "input"
IMAGE_INPUT = "image"
OUTPUTS = ("probabilities", "logits", "label")
INFER_ROUTE = "/v2/models/{name}/infer"


def _version() -> str:
    try:
        return metadata.version("slipway")
    except metadata.PackageNotFoundError:
        return "0"


@health.get("/health/live")
async def live() -> dict[str, bool]:
    """Liveness: the process answers; never touches the model."""
    return {"live": True}


@health.get("/health/ready", responses={503: {"description": "not ready"}})
async def ready(service: Service) -> JSONResponse:
    """Readiness: 200 when the main model is loaded, 503 before that and while draining."""
    ok = service.ready
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


@router.get("", response_model=ServerMetadata)
async def server_metadata() -> dict[str, Any]:
    return {"name": "slipway", "version": _version(), "extensions": []}


def _model(
    service: InferenceService, name: str, version: str | None
) -> tuple[ModelSlot, LoadedModel]:
    slot = service.slot(name)
    model = service.current(slot)
    if version is not None and version != model.version:
        raise ModelNotFoundError(
            f"model {name!r} has no version {version!r} (serving {model.version})"
        )
    return slot, model


def _metadata(model: LoadedModel) -> dict[str, Any]:
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


@router.get("/models/{name}", response_model=ModelMetadata, responses=ERRORS)
@router.get("/models/{name}/versions/{version}", response_model=ModelMetadata, responses=ERRORS)
async def model_metadata(service: Service, name: str, version: str | None = None) -> dict[str, Any]:
    return _metadata(_model(service, name, version)[1])


@router.get("/models/{name}/ready", responses=ERRORS)
@router.get("/models/{name}/versions/{version}/ready", responses=ERRORS)
async def model_ready(service: Service, name: str, version: str | None = None) -> JSONResponse:
    slot = service.slot(name)
    ok = slot.current is not None and not service.draining
    if ok and version is not None and slot.current.version != version:
        raise ModelNotFoundError(f"model {name!r} has no version {version!r}")
    return JSONResponse({"name": name, "ready": ok}, status_code=200 if ok else 503)


_INFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": InferenceRequest.model_json_schema()}},
    }
}


@router.post(
    "/models/{name}/infer",
    response_model=InferenceResponse,
    response_model_exclude_none=True,
    responses=ERRORS,
    openapi_extra=_INFER_BODY,
)
@router.post(
    "/models/{name}/versions/{version}/infer",
    response_model=InferenceResponse,
    response_model_exclude_none=True,
    responses=ERRORS,
    openapi_extra=_INFER_BODY,
)
async def infer(
    request: Request, service: Service, name: str, version: str | None = None
) -> dict[str, Any]:
    """Run inference on one input tensor (`input` FP32 or `image` BYTES)."""
    slot, model = _model(service, name, version)
    body = await _parse(request)
    if len(body.inputs) != 1:
        raise BadInputError(f"expected exactly one input ({TENSOR_INPUT!r} or {IMAGE_INPUT!r})")
    wanted = [o.name for o in body.outputs] if body.outputs else list(OUTPUTS)
    unknown = sorted(set(wanted) - set(OUTPUTS))
    if unknown:
        raise BadInputError(f"unknown output(s) {unknown}; available: {list(OUTPUTS)}")
    tensor = body.inputs[0]
    limit = service.worker.max_queue
    if tensor.name == TENSOR_INPUT:
        inputs = _tensor_inputs(tensor, model, limit)
        answer = await service.predict_tensors(slot, inputs, INFER_ROUTE)
    elif tensor.name == IMAGE_INPUT:
        answer = await service.predict_files(slot, _image_payloads(tensor, limit), INFER_ROUTE)
    else:
        raise BadInputError(
            f"unknown input {tensor.name!r}; expected {TENSOR_INPUT!r} (FP32 [N, C, H, W]) "
            f"or {IMAGE_INPUT!r} (BYTES [N], base64-encoded image files)"
        )
    return _response(answer, wanted, body.id)


async def _parse(request: Request) -> InferenceRequest:
    content_type = request.headers.get("content-type", "application/json").lower()
    if "json" not in content_type:
        raise UnsupportedMediaError(f"expected application/json, got {content_type}")
    raw = await request.body()
    try:
        return InferenceRequest.model_validate(json.loads(raw))
    except json.JSONDecodeError as exc:
        raise BadInputError(f"request body is not valid JSON: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadInputError(f"invalid inference request: {where}: {first['msg']}") from exc


def _tensor_inputs(tensor: RequestInput, model: LoadedModel, limit: int) -> list[Any]:
    expected = model.transform.input_shape
    if tensor.datatype != "FP32":
        raise BadInputError(f"input {TENSOR_INPUT!r} must be FP32, got {tensor.datatype}")
    shape = tuple(tensor.shape)
    if len(shape) != 4 or shape[1:] != expected or shape[0] < 1:
        want = [-1, *expected]
        raise BadInputError(f"input {TENSOR_INPUT!r} has shape {list(shape)}; expected {want}")
    if shape[0] > limit:
        raise TooLargeError(f"batch of {shape[0]} exceeds the limit of {limit}")
    try:
        array = np.asarray(tensor.data, dtype=np.float32)
    except (ValueError, TypeError) as exc:
        raise BadInputError(f"input {TENSOR_INPUT!r}: data is not a numeric tensor") from exc
    if array.size != int(np.prod(shape)):
        raise BadInputError(
            f"input {TENSOR_INPUT!r}: {array.size} values do not fill shape {list(shape)}"
        )
    if not np.isfinite(array).all():
        raise BadInputError(f"input {TENSOR_INPUT!r}: data holds NaN or infinity")
    batch = np.ascontiguousarray(array.reshape(shape))
    return [tensor_stats(row, model.transform) for row in batch]


def _image_payloads(tensor: RequestInput, limit: int) -> list[tuple[str, bytes]]:
    if tensor.datatype != "BYTES":
        raise BadInputError(f"input {IMAGE_INPUT!r} must be BYTES, got {tensor.datatype}")
    count = len(tensor.data)
    if count < 1 or tensor.shape not in ([count], [count, 1]):
        raise BadInputError(
            f"input {IMAGE_INPUT!r}: shape {tensor.shape} does not match {count} items"
        )
    if count > limit:
        raise TooLargeError(f"batch of {count} exceeds the limit of {limit}")
    payloads = []
    for n, item in enumerate(tensor.data):
        if not isinstance(item, str):
            raise BadInputError(f"{IMAGE_INPUT}[{n}]: expected a base64 string")
        text = item.split(",", 1)[1] if item.startswith("data:") else item
        try:
            payloads.append((f"{IMAGE_INPUT}[{n}]", base64.b64decode(text, validate=True)))
        except (binascii.Error, ValueError) as exc:
            raise BadInputError(f"{IMAGE_INPUT}[{n}]: not valid base64: {exc}") from exc
    return payloads


def _response(answer: Answer, wanted: list[str], request_id: str | None) -> dict[str, Any]:
    model = answer.model
    probs = np.stack([p.probs for p in answer.predictions])
    n, k = probs.shape
    outputs = []
    for name in wanted:
        if name == "label":
            labels = [model.classes[int(i)] for i in probs.argmax(axis=1)]
            outputs.append({"name": name, "shape": [n], "datatype": "BYTES", "data": labels})
        else:
            values = (
                probs
                if name == "probabilities"
                else np.stack([p.logits for p in answer.predictions])
            )
            data = values.astype(np.float32).ravel().tolist()
            outputs.append({"name": name, "shape": [n, k], "datatype": "FP32", "data": data})
    return {
        "model_name": model.served_name,
        "model_version": model.version,
        "id": request_id or str(uuid.uuid4()),
        "outputs": outputs,
    }
