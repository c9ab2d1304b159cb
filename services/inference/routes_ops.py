"""Probes, metrics, fault injection, the web page and offline API docs.

`/healthz`, `/readyz` and `/metrics` never need the token: kubelet probes and Prometheus scrapes
carry none. The page and the docs are static; the calls they make need the token when one is set.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from prometheus_client import generate_latest
from pydantic import BaseModel, Field

from services.inference.deps import Authorized, Service
from services.inference.schemas import Readiness

STATIC_DIR = Path(__file__).parent / "static"
# What generate_latest writes; prometheus_client's CONTENT_TYPE_LATEST names a newer version.
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
DOCS_ASSETS = "/docs-assets"

router = APIRouter()
admin = APIRouter(prefix="/admin", tags=["admin"], dependencies=Authorized)


@router.get("/healthz", tags=["probes"])
async def healthz() -> dict[str, str]:
    """Liveness: the process and its event loop answer. Never depends on the model."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    tags=["probes"],
    responses={
        200: {"model": Readiness, "description": "Ready."},
        503: {"model": Readiness, "description": "Loading, or draining before shutdown."},
    },
)
async def readyz(service: Service) -> JSONResponse:
    """Readiness: 503 until the main model is loaded and warmed, and while draining."""
    models = {
        name: (slot.current.version if slot.current else None)
        for name, slot in service.slots.items()
    }
    if service.ready:
        return JSONResponse({"status": "ready", "models": models})
    status = "draining" if service.draining else "loading"
    body: dict[str, Any] = {"status": status, "models": models}
    if service.loader.last_error:
        body["errors"] = service.loader.last_error
    return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})


class PrometheusText(Response):
    """The Prometheus text exposition format 0.0.4, which every Prometheus version scrapes."""

    media_type = PROMETHEUS_TEXT


@router.get(
    "/metrics",
    tags=["probes"],
    response_class=PrometheusText,
    responses={
        200: {
            "description": "Prometheus text exposition format 0.0.4.",
            "content": {PROMETHEUS_TEXT: {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(request: Request) -> PrometheusText:
    """Prometheus exposition of this app's registry."""
    registry = request.app.state.metrics.registry
    return PrometheusText(generate_latest(registry))


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    """The web page: pick or drop an image, see the top classes. No external resources."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


class FaultRequest(BaseModel):
    mode: Literal["error", "slow", "off"]
    seconds: Annotated[float, Field(ge=0, le=600)] = 1.0
    duration_s: Annotated[float, Field(ge=0, description="Auto-off after this; 0 = never.")] = 0
    model: Annotated[
        str, Field(description="Only this served model (e.g. `<name>-staging`); empty: all.")
    ] = ""


@admin.get("/fault")
async def get_fault(service: Service) -> dict[str, Any]:
    fault = service.worker.fault
    return {
        "mode": fault.current(),
        "seconds": fault.seconds,
        "until": fault.until or None,
        "model": fault.model or None,
    }


@admin.post("/fault")
async def set_fault(service: Service, body: FaultRequest) -> dict[str, Any]:
    """Make inference fail (`error`: 500s) or stall `seconds` per batch (`slow`) until `off`."""
    import time

    if body.model:
        service.slot(body.model)  # 404 for a model this service does not serve
    fault = service.worker.fault
    fault.seconds = body.seconds if body.mode == "slow" else 0.0
    fault.until = time.time() + body.duration_s if body.duration_s and body.mode != "off" else 0.0
    fault.model = body.model if body.mode != "off" else ""
    fault.mode = body.mode
    return await get_fault(service)


def docs_assets() -> Path | None:
    """Swagger UI and ReDoc bundles shipped by the `fastapi-offline` package, when installed."""
    try:
        folder = Path(str(resources.files("fastapi_offline") / "static"))
    except ModuleNotFoundError:
        return None
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def docs_router(title: str, assets: Path | None) -> APIRouter:
    """`/docs` and `/redoc` served from local files; without them, a plain offline page."""
    docs = APIRouter(include_in_schema=False)
    fallback = None if assets is not None else (STATIC_DIR / "docs.html").read_text()

    @docs.get("/docs")
    async def swagger() -> HTMLResponse:
        if fallback is not None:
            return HTMLResponse(fallback)
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{title} - API docs",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )

    @docs.get("/redoc")
    async def redoc() -> HTMLResponse:
        if fallback is not None:
            return HTMLResponse(fallback)
        return get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{title} - API reference",
            redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )

    return docs
