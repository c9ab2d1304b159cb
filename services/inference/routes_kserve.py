"""KServe V1 routes: model readiness and `:predict`, a thin shell over `InferenceService`.

`GET /v1/models` (the list, shared with slipway's own v1 API) lives in `routes_v1`. Parsing and
the prediction shape are in `kserve_v1`; batching, overload shedding, metrics (route label
`/v1/models/{name}:predict`), the prediction log and the bearer token apply as on every route.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from services.inference import kserve_v1
from services.inference.deps import Authorized, Service
from services.inference.metrics import KSERVE_PREDICT_ROUTE
from services.inference.routes_v1 import ERRORS
from services.inference.schemas import ErrorBody

# `:predict` comes first: for a method neither route serves, the first route whose path matches
# answers 405, and its `Allow` must name POST (`/v1/models/{name}` matches `x:predict` too).
router = APIRouter(prefix="/v1/models", tags=["kserve-v1"], dependencies=Authorized)

_STATUS_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody},
    404: {"model": ErrorBody},
    503: {
        "model": kserve_v1.KServeV1ModelStatus,
        "description": "Loading, or draining before shutdown.",
    },
}
_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": kserve_v1.REQUEST_SCHEMA}},
    }
}


@router.post(
    "/{name}:predict",
    response_model=kserve_v1.KServeV1PredictResponse,
    responses=ERRORS,
    openapi_extra=_PREDICT_BODY,
)
async def predict(request: Request, service: Service, name: str) -> dict[str, Any]:
    """Classify `instances`: base64 images or preprocessed (C, H, W) tensors."""
    slot, routed = service.variants.route(request.scope, service.slot(name))
    model = service.current(slot)
    content_type = request.headers.get("content-type", "application/json")
    items = kserve_v1.parse_instances(await request.body(), content_type, service.worker.max_queue)
    images = kserve_v1.image_payloads(items)
    if images is not None:
        answer = await service.predict_files(slot, images, KSERVE_PREDICT_ROUTE)
    else:
        inputs = kserve_v1.tensor_inputs(items, model.transform)
        answer = await service.predict_tensors(slot, inputs, KSERVE_PREDICT_ROUTE)
    routed.version = answer.model.version
    return {"predictions": kserve_v1.predictions(answer)}


@router.get("/{name}", response_model=kserve_v1.KServeV1ModelStatus, responses=_STATUS_ERRORS)
async def model_status(service: Service, name: str) -> dict[str, Any] | JSONResponse:
    """Whether the model is ready: 200 `{"name", "ready": true}`, else 503 with `ready: false`."""
    slot = service.slot(name)
    if slot.ready and not service.draining:
        return {"name": slot.name, "ready": True}
    return JSONResponse(
        {"name": slot.name, "ready": False}, status_code=503, headers={"Retry-After": "1"}
    )
