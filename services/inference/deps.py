"""FastAPI dependencies shared by the routers: the app's service and the bearer-token check.

The token check depends on FastAPI's `HTTPBearer`, so the OpenAPI document names the bearer
scheme on every guarded operation (`openapi.py` drops it again when no token is configured).
The gRPC adapter uses the same `token_matches`. Dependencies are `async def` although they
never wait: FastAPI runs a plain `def` dependency on its thread pool, a hand-off per request
that costs more CPU than the dependency itself.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.inference.errors import UnauthorizedError
from services.inference.service import InferenceService

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="`Authorization: Bearer <token>`, the service's AUTH_TOKEN.",
)


async def get_service(request: Request) -> InferenceService:
    return request.app.state.service


async def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """401 unless `Authorization: Bearer <AUTH_TOKEN>` matches (when a token is configured)."""
    token = request.app.state.settings.auth_token
    if not token:
        return
    given = credentials.credentials if credentials else ""
    if not given or not token_matches(given, token):
        raise UnauthorizedError("missing or wrong bearer token (Authorization: Bearer <token>)")


def token_matches(given: str, token: str) -> bool:
    """Constant-time comparison of bytes: a header with non-ASCII text is a wrong token, not
    the TypeError `compare_digest` raises for such strings."""
    return hmac.compare_digest(given.strip().encode("utf-8", "replace"), token.encode("utf-8"))


Service = Annotated[InferenceService, Depends(get_service)]
Authorized = [Depends(require_token)]
