"""Open Inference Protocol v2 over REST, as KServe, Triton and MLServer speak it.

A thin adapter: `oip_rest` turns JSON or binary bodies into the dataplane's `InferRequest` and
encodes its answer; inputs, outputs and their rules are the dataplane's (`dataplane.py`).
Errors are `{"error": "<message>"}`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from services.inference.dataplane import DataPlane
from services.inference.deps import Authorized
from services.inference.kserve_v1 import EXAMPLE_PNG_B64 as EXAMPLE
from services.inference.metrics import OIP_INFER_ROUTE
from services.inference.oip_rest import BINARY_MEDIA, encode_response, read_request
from services.inference.routes_v1 import ERRORS
from services.inference.schemas import (
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    ServerMetadata,
)
from slipway.oip.tensors import HEADER_LENGTH

health = APIRouter(prefix="/v2", tags=["v2"])
router = APIRouter(prefix="/v2", tags=["v2"], dependencies=Authorized)

_SCHEMAS = "#/components/schemas/"


async def get_dataplane(request: Request) -> DataPlane:
    return request.app.state.dataplane


Plane = Annotated[DataPlane, Depends(get_dataplane)]


@health.get("/health/live")
async def live() -> dict[str, bool]:
    """Liveness: the process answers; never touches the model."""
    return {"live": True}


@health.get("/health/ready", responses={503: {"description": "not ready"}})
async def ready(plane: Plane) -> JSONResponse:
    """Readiness: 200 when the main model is loaded, 503 before that and while draining."""
    ok = plane.ready
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


@router.get("", response_model=ServerMetadata)
async def server_metadata(plane: Plane) -> dict[str, Any]:
    """Server name, version and protocol extensions (`binary_tensor_data`, `classification`)."""
    return plane.server_metadata()


@router.get("/models/{name}", response_model=ModelMetadata, responses=ERRORS)
@router.get("/models/{name}/versions/{version}", response_model=ModelMetadata, responses=ERRORS)
async def model_metadata(plane: Plane, name: str, version: str | None = None) -> dict[str, Any]:
    return plane.model_metadata(name, version)


@router.get("/models/{name}/ready", responses=ERRORS)
@router.get("/models/{name}/versions/{version}/ready", responses=ERRORS)
async def model_ready(plane: Plane, name: str, version: str | None = None) -> JSONResponse:
    ok = plane.model_ready(name, version)
    return JSONResponse({"name": name, "ready": ok}, status_code=200 if ok else 503)


_BINARY = {"schema": {"type": "string", "format": "binary"}}
_LENGTH_HEADER = {
    "description": "Length of the JSON object at the start of a binary body (binary tensor "
    "data extension); the raw tensors follow it.",
    "schema": {"type": "integer", "minimum": 0},
}
_INFER_DOC: dict[str, Any] = {
    "parameters": [{"name": HEADER_LENGTH, "in": "header", "required": False, **_LENGTH_HEADER}],
    "requestBody": {
        "required": True,
        "description": "An inference request as JSON; or, with the "
        f"`{HEADER_LENGTH}` header, that many bytes of JSON followed by the raw tensors "
        "announced by `binary_data_size` (little-endian, row-major; BYTES elements as a 4-byte "
        "length and the bytes). Bodies may be gzip- or deflate-encoded.",
        "content": {
            "application/json": {
                "schema": {"$ref": _SCHEMAS + InferenceRequest.__name__},
                "example": {
                    "inputs": [
                        {"name": "image", "shape": [1], "datatype": "BYTES", "data": [EXAMPLE]}
                    ]
                },
            },
            BINARY_MEDIA: _BINARY,
        },
    },
    "responses": {
        "200": {
            "description": "JSON; `application/octet-stream` (JSON, then raw outputs) when any "
            "output was asked for in binary.",
            "headers": {HEADER_LENGTH: _LENGTH_HEADER},
            "content": {BINARY_MEDIA: _BINARY},
        }
    },
}


def openapi_schemas() -> dict[str, Any]:
    """The request body's schema and the models it nests, for `components/schemas`."""
    schema = InferenceRequest.model_json_schema(ref_template=_SCHEMAS + "{model}")
    nested = schema.pop("$defs", {})
    return {InferenceRequest.__name__: schema, **nested}


@router.post(
    "/models/{name}/infer",
    response_model=InferenceResponse,
    responses=ERRORS,
    openapi_extra=_INFER_DOC,
)
@router.post(
    "/models/{name}/versions/{version}/infer",
    response_model=InferenceResponse,
    responses=ERRORS,
    openapi_extra=_INFER_DOC,
)
async def infer(request: Request, plane: Plane, name: str, version: str | None = None) -> Response:
    """Run inference on one input: `input` (FP32 or UINT8 [N, C, H, W]) or `image` (BYTES [N])."""
    slot = plane.model(name, version)[0]  # 404 / 503 before reading the body
    chosen, routed = plane.service.variants.route(request.scope, slot, version)
    limit = request.app.state.settings.max_upload_bytes
    inference, binary = await read_request(request, limit)
    answer = await plane.infer(name, version, inference, OIP_INFER_ROUTE, chosen)
    routed.version = answer.model_version
    return encode_response(answer, binary)
