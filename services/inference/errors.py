"""Typed errors of the service and their one mapping to HTTP.

Every error response is JSON `{"error": "<message>"}` (the Open Inference Protocol's error
shape, used on every route), so clients handle one format. A client's mistake is a 4xx with a
message; only a fault of the server or the model is a 5xx.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """Base class: an error with an HTTP status and a message safe to show to clients."""

    status_code = 500
    headers: dict[str, str] | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadInputError(ServiceError):
    """The request is malformed or its content cannot be used."""

    status_code = 400


class UnsupportedMediaError(ServiceError):
    status_code = 415


class TooLargeError(ServiceError):
    status_code = 413


class UnprocessableError(ServiceError):
    status_code = 422


class UnauthorizedError(ServiceError):
    status_code = 401

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.headers = {"WWW-Authenticate": "Bearer"}


class ModelNotFoundError(ServiceError):
    status_code = 404


class UnavailableError(ServiceError):
    """Not ready, overloaded, draining or timed out: retry later, perhaps on another replica."""

    status_code = 503

    def __init__(self, message: str, reason: str = "", retry_after: int = 1) -> None:
        super().__init__(message)
        self.reason = reason
        self.headers = {"Retry-After": str(retry_after)}


class InferenceError(ServiceError):
    """The model raised while computing a batch: a server fault, counted as a 5xx."""

    status_code = 500


class BodyTooLarge(StarletteHTTPException):
    """Raised from the request body stream, so it passes through FastAPI's body parsing."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds the limit of {limit} bytes")


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg", ""))
    return "; ".join(parts) or "invalid request"


def install_handlers(app: FastAPI) -> None:
    """Map every error to `{"error": ...}` with the right status, once for the whole app."""

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        if exc.status_code >= 500 and not isinstance(exc, UnavailableError):
            log.error("request failed: %s", exc.message)
        return error_response(exc.status_code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, _validation_message(exc))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, f"internal error: {type(exc).__name__}")
