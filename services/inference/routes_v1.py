"""slipway's v1 API: `/v1/models` and `/v1/predict` (multipart upload of one or many images,
or one image as the raw body).

`GET /v1/models` answers KServe V1's list (`models`: the served names) and slipway's details of
each model beside it, so a KServe client and the web page read the same route. The KServe V1
model routes (`/v1/models/{name}`, `:predict`) are in `routes_kserve`.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request
from starlette.datastructures import UploadFile

from services.inference.deps import Authorized, Service
from services.inference.errors import TooLargeError, UnprocessableError, UnsupportedMediaError
from services.inference.schemas import ErrorBody, ModelsResponse, PredictResponse

router = APIRouter(prefix="/v1", tags=["v1"], dependencies=Authorized)

RAW_BODY_LABEL = "body"  # the `file` of a prediction whose image was the raw request body

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 404, 413, 415, 422, 500, 503)
}
MULTIPART_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"type": "string", "format": "binary"},
                            "description": "One or more image files (field repeated).",
                        }
                    },
                }
            },
            "image/*": {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": "One image file as the whole body (no multipart encoding).",
                }
            },
        },
    }
}


@router.get("/models", response_model=ModelsResponse, responses=ERRORS)
async def list_models(service: Service) -> dict[str, Any]:
    """Served model names (KServe V1), the default one, each one's version, alias, classes,
    architecture, metrics and dataset (`details`), and the canary or shadow split (`traffic`)."""
    details = []
    for slot in service.slots.values():
        if slot.current is not None:
            details.append({**slot.current.about(), "ready": True})
        else:
            details.append({"name": slot.name, "ready": False, "source": slot.source.source})
    return {
        "models": list(service.slots),
        "default": service.main.name,
        "details": details,
        "traffic": service.variants.describe(),
    }


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses=ERRORS,
    openapi_extra=MULTIPART_BODY,
)
async def predict(
    request: Request,
    service: Service,
    top_k: Annotated[int, Query(ge=1, le=1000, description="Classes returned per image.")] = 5,
    model: Annotated[str | None, Query(description="Served model name (default: main).")] = None,
) -> dict[str, Any]:
    """Classify uploaded images: multipart field `files` (repeated for several), or one image
    as the raw body with `Content-Type: image/...` (cheaper: no multipart parsing). In canary
    mode the staging model may answer (`model`, header `X-Slipway-Variant: canary`)."""
    began = time.perf_counter()
    slot, routed = service.variants.route(request.scope, service.slot(model))
    payloads = await read_files(request, service.worker.max_queue)
    answer = await service.predict_files(slot, payloads, "/v1/predict")
    routed.version = answer.model.version
    classes = answer.model.classes
    k = min(top_k, len(classes))
    results = []
    for (label, _), item, pred in zip(payloads, answer.inputs, answer.predictions, strict=True):
        order = np.argsort(-pred.probs, kind="stable")[:k]
        results.append(
            {
                "file": label,
                "top_class": classes[int(order[0])],
                "confidence": float(pred.probs[order[0]]),
                "top_k": [
                    {"class": classes[int(i)], "probability": float(pred.probs[i])} for i in order
                ],
                "width": item.width,
                "height": item.height,
            }
        )
    latency_ms = (time.perf_counter() - began) * 1000
    return {
        "model": answer.model.served_name,
        "version": answer.model.version,
        "predictions": results,
        "latency_ms": round(latency_ms, 3),
    }


async def read_files(request: Request, max_files: int) -> list[tuple[str, bytes]]:
    """The uploaded images of a v1 request: multipart field `files` or the raw body."""
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";")[0].strip().lower()
    if media.startswith("image/") or media == "application/octet-stream":
        return [(RAW_BODY_LABEL, await request.body())]
    if media != "multipart/form-data":
        raise UnsupportedMediaError(
            f"expected multipart/form-data with image files in field 'files', or one image as "
            f"the body with Content-Type image/*, got {content_type or 'no content type'}"
        )
    async with request.form(max_files=max_files + 1, max_fields=100) as form:
        uploads = form.getlist("files")
        if not uploads:
            raise UnprocessableError("no image in multipart field 'files'")
        if len(uploads) > max_files:
            raise TooLargeError(f"too many files in one request (limit {max_files})")
        payloads = []
        for n, upload in enumerate(uploads):
            if not isinstance(upload, UploadFile):
                raise UnprocessableError("field 'files' must hold files, not text")
            label = upload.filename or f"file{n}"
            declared = (upload.content_type or "").split(";")[0].strip().lower()
            if declared and not (
                declared.startswith("image/") or declared == "application/octet-stream"
            ):
                raise UnsupportedMediaError(f"{label}: content type {declared} is not an image")
            payloads.append((label, await upload.read()))
    return payloads
