"""HTTP layer of the drift monitor: health, metrics, a JSON summary and the HTML report."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.drift.embedding import load_embedding_reference
from services.drift.metrics import DriftMetrics
from services.drift.monitor import DriftMonitor
from services.drift.reference import reference_ref, resolve_reference
from services.drift.report import render_report
from services.drift.settings import Settings

log = logging.getLogger("services.drift")


class State:
    """What the background loop shares with the request handlers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = DriftMetrics(settings.psi_threshold)
        self.monitor: DriftMonitor | None = None
        self.error = "starting"
        self.lock = threading.Lock()  # the window changes in the loop's thread
        self.resolved_at = 0.0

    def cycle(self) -> None:
        """Load the reference if needed, then read and evaluate once."""
        if self.monitor is None:
            self.monitor = DriftMonitor.from_settings(self.settings)
            self.resolved_at = time.monotonic()
            log.info("reference loaded from %s", self.settings.reference)
        else:
            self.refresh_reference()
        before, invalid = self.monitor.records_read, self.monitor.invalid
        with self.lock:
            evaluation = self.monitor.run_once()
        self.metrics.update(
            evaluation, self.monitor.records_read - before, self.monitor.invalid - invalid
        )
        self.error = ""
        log.debug("evaluated %d record(s), drift=%s", evaluation.window_size, evaluation.drift)

    def refresh_reference(self) -> None:
        """Follow a reference that can move (an alias, the newest version, an object-store
        folder): when it names another model, judge against that one. A pinned version and a
        local file are read once."""
        s = self.settings
        due = time.monotonic() - self.resolved_at >= s.reference_refresh_s
        ref = reference_ref(s.reference)
        if ref.is_local or not ref.follows or not (s.reference_refresh_s and due):
            return
        assert self.monitor is not None
        self.resolved_at = time.monotonic()
        try:
            reference = resolve_reference(s.reference, s.mlflow_tracking_uri)
        except Exception as exc:  # keep judging against the reference already loaded
            log.warning("cannot refresh the reference from %s: %s", s.reference, exc)
            return
        if reference != self.monitor.reference:
            embedding = load_embedding_reference(s.reference, s.mlflow_tracking_uri)
            with self.lock:
                self.monitor.set_reference(reference)
                self.monitor.embeddings.reference = embedding
            log.info("%s now points to another reference; using it", s.reference)

    async def loop(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.cycle)
            except Exception as exc:  # keep serving; readiness and the log say what is wrong
                self.error = str(exc)
                log.error("drift evaluation failed: %s", exc)
            await asyncio.sleep(self.settings.interval_s)


async def get_state(request: Request) -> State:
    return request.app.state.drift


StateDep = Annotated[State, Depends(get_state)]


def _not_ready(state: State) -> JSONResponse:
    return JSONResponse(
        {"detail": f"no evaluation yet: {state.error}"},
        status_code=503,
        headers={"Retry-After": str(max(int(state.settings.interval_s), 1))},
    )


def create_app(settings: Settings) -> FastAPI:
    """Build the app; the evaluation loop runs for the app's lifetime."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(app.state.drift.loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app = FastAPI(title="slipway drift monitor", lifespan=lifespan)
    app.state.drift = State(settings)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", response_model=None)
    def readyz(state: StateDep) -> dict[str, str] | JSONResponse:
        if state.monitor is None or state.monitor.last is None:
            return _not_ready(state)
        return {"status": "ready"}

    @app.get("/metrics")
    def metrics(state: StateDep) -> Response:
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/drift", response_model=None)
    def summary(state: StateDep) -> dict[str, Any] | JSONResponse:
        if state.monitor is None or state.monitor.last is None:
            return _not_ready(state)
        with state.lock:  # the count and the verdict of the same cycle, never a mix
            body = state.monitor.last.to_dict()
            body["records_read"] = state.monitor.records_read
            body["invalid_records"] = state.monitor.invalid
        body["reference"] = state.settings.reference
        body["error"] = state.error or None
        return body

    @app.get("/report", response_class=HTMLResponse, response_model=None)
    def report(state: StateDep) -> HTMLResponse | JSONResponse:
        if state.monitor is None or state.monitor.last is None:
            return _not_ready(state)
        with state.lock:
            page = render_report(state.monitor, state.monitor.last)
        return HTMLResponse(page)

    return app
