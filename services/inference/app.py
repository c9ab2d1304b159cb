"""`create_app(settings)`: the FastAPI application of the inference service.

The lifespan starts the inference thread and loads each served model in the background:
`/healthz` answers at once, `/readyz` turns 200 only when every model is loaded and warmed.
On shutdown it reports not ready, answers every accepted request and flushes the prediction log.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from services.inference import routes_explain, routes_kserve, routes_ops, routes_v1, routes_v2
from services.inference.admission import AdmissionMiddleware
from services.inference.dataplane import DataPlane, server_version
from services.inference.errors import install_handlers
from services.inference.metrics import Metrics
from services.inference.middleware import BodyLimitMiddleware, ObservabilityMiddleware
from services.inference.openapi import openapi_builder
from services.inference.service import InferenceService
from services.inference.settings import Settings

log = logging.getLogger(__name__)

DESCRIPTION = """Image classification with dynamic batching.

* `POST /v1/predict`: multipart upload (`files`, one or many), returns the top-k classes.
* KServe V1: `GET /v1/models`, `GET /v1/models/{name}`, `POST /v1/models/{name}:predict` with
  `{"instances": [...]}`: base64 images or preprocessed (C, H, W) tensors.
* Open Inference Protocol v2 (KServe, Triton): `/v2/models/{name}/infer` with an `input`
  tensor (FP32 or UINT8) or a BYTES `image` tensor of image files, as JSON or with the binary
  tensor data extension; the same protocol over gRPC on its own port.
* `GET /metrics` for Prometheus; `/healthz` and `/readyz` for probes.

Errors are JSON `{"error": "..."}`. When a token is configured, send
`Authorization: Bearer <token>`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build an app with its own metrics registry, batcher and models (nothing global)."""
    settings = settings or Settings()
    metrics = Metrics()
    service = InferenceService(settings, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        log.info(
            "serving %s on %s:%s (backend %s, batch <= %d, wait <= %g ms, queue <= %d)",
            ", ".join(service.slots), settings.host, settings.port, settings.backend,
            settings.max_batch_size, settings.max_batch_wait_ms, settings.max_queue,
        )  # fmt: skip
        try:
            yield
        finally:
            await service.stop()

    assets = routes_ops.docs_assets()
    app = FastAPI(
        title="slipway inference",
        version=server_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.service = service
    app.state.dataplane = DataPlane(service)
    install_handlers(app)
    app.include_router(routes_ops.router)
    app.include_router(routes_ops.docs_router(app.title, assets))
    if settings.fault_injection:
        app.include_router(routes_ops.admin)
    app.include_router(routes_v1.router)
    app.include_router(routes_explain.router)
    app.include_router(routes_kserve.router)
    app.include_router(routes_v2.health)
    app.include_router(routes_v2.router)
    app.openapi = openapi_builder(app, auth=bool(settings.auth_token))  # type: ignore[method-assign]
    app.mount("/static", StaticFiles(directory=routes_ops.STATIC_DIR), name="static")
    if assets is not None:
        app.mount(routes_ops.DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_upload_bytes)
    app.add_middleware(
        AdmissionMiddleware,
        worker=service.worker,
        default_model=service.main.name,
        models=set(service.slots),
    )
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(
        ObservabilityMiddleware,
        metrics=metrics,
        default_model=service.main.name,
        models=set(service.slots),
        variant_of=service.variants.variant_of,
    )
    _add_schemas(app, routes_v2.openapi_schemas())
    return app


def _add_schemas(app: FastAPI, schemas: dict[str, Any]) -> None:
    """Put models that routes reference by hand (a body FastAPI does not parse) into
    `components/schemas` of the OpenAPI document, so every `$ref` resolves."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            components = document.setdefault("components", {}).setdefault("schemas", {})
            for name, schema in schemas.items():
                components.setdefault(name, schema)
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]
