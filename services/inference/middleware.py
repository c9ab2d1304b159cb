"""ASGI middleware: request metrics by route template, and the upload size limit.

Both are plain ASGI (not `BaseHTTPMiddleware`), so they add little per request and see every
response, including errors raised before a route runs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.inference.errors import BodyTooLarge
from services.inference.metrics import Metrics
from services.inference.variants import routed_of

log = logging.getLogger(__name__)

UNMATCHED_ROUTE = "unmatched"
# Probes and scrapes are not traffic: a 503 from /readyz while loading is not an error rate.
UNCOUNTED_ROUTES = frozenset(
    {"/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"}
)


class ObservabilityMiddleware:
    """Count and time every HTTP request by `{model, route, code, variant}` with bounded labels.

    A prediction route marks the slot it chose (`variants.mark`): the request counts under the
    model that answered, and its response says which variant and version that was.
    """

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        default_model: str,
        models: set[str],
        variant_of: Callable[[str], str],
    ):
        self.app = app
        self.metrics = metrics
        self.default_model = default_model
        self.models = models
        self.variant_of = variant_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                routed = routed_of(scope)
                if routed is not None:
                    headers = [*message.get("headers", []), *routed.headers()]
                    message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            status = 500
            raise
        finally:
            self._observe(scope, status, time.perf_counter() - began)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or UNMATCHED_ROUTE
        if template in UNCOUNTED_ROUTES:
            return
        routed = routed_of(scope)
        if routed is not None:
            model, variant = routed.model, routed.variant
        else:
            model = self._model(scope)
            variant = self.variant_of(model)
        code = f"{min(max(status // 100, 1), 5)}xx"
        self.metrics.requests.labels(model, template, code, variant).inc()
        self.metrics.request_duration.labels(model, template, variant).observe(seconds)

    def _model(self, scope: Scope) -> str:
        name = (scope.get("path_params") or {}).get("name")
        if name is None and scope.get("query_string"):
            from urllib.parse import parse_qs

            query = parse_qs(scope["query_string"].decode("latin-1"))
            name = (query.get("model") or [None])[0]
        return name if name in self.models else self.default_model


class BodyLimitMiddleware:
    """413 for uploads over `limit` bytes: by Content-Length up front, else while streaming."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await _reject(send, self.limit)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _reject(send: Send, limit: int) -> None:
    message = f"request body exceeds the limit of {limit} bytes"
    await send_error(send, 413, message, [(b"connection", b"close")])


async def send_error(
    send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Answer `{"error": message}` straight from ASGI middleware, before any route runs."""
    payload = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
