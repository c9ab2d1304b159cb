"""`POST /v1/explain`: the occlusion map of one image's top class, as JSON or as a PNG.

The image comes as `/v1/predict` takes it (multipart field `files`, or the raw body). With
`Accept: image/png` the answer is the overlay itself; otherwise JSON with the numeric grid and
the overlay in base64.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from services.inference.deps import Authorized, Service
from services.inference.errors import UnprocessableError
from services.inference.explain import elapsed_ms, explain_file
from services.inference.metrics import EXPLAIN_ROUTE
from services.inference.routes_v1 import ERRORS, MULTIPART_BODY, read_files
from services.inference.schemas import ExplainResponse

router = APIRouter(tags=["v1"], dependencies=Authorized)

_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}},
}


@router.post(
    EXPLAIN_ROUTE,
    response_model=ExplainResponse,
    responses=_RESPONSES,
    openapi_extra=MULTIPART_BODY,
)
async def explain(
    request: Request,
    service: Service,
    patch: Annotated[
        int | None, Query(ge=1, le=4096, description="Patch side (default: the setting).")
    ] = None,
    stride: Annotated[
        int | None, Query(ge=1, le=4096, description="Patch step (default: the setting).")
    ] = None,
    model: Annotated[str | None, Query(description="Served model name (default: main).")] = None,
) -> Any:
    """Occlusion sensitivity of the top class for one image: how much its probability drops
    when each patch is hidden. Costs `forwards` images of batcher time; refused with 503 before
    predictions are when the service is loaded."""
    began = time.perf_counter()
    slot = service.slot(model)
    payloads = await read_files(request, 1)
    if len(payloads) != 1:
        raise UnprocessableError("explain takes exactly one image")
    label, payload = payloads[0]
    explanation = await explain_file(service, slot, label, payload, patch, stride)
    if "image/png" in request.headers.get("accept", ""):
        return Response(explanation.png(), media_type="image/png")
    return explanation.to_dict(elapsed_ms(began))
