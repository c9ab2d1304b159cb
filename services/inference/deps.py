"""FastAPI dependencies shared by the routers: the app's service and the bearer-token check."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from services.inference.errors import UnauthorizedError
from services.inference.service import InferenceService


def get_service(request: Request) -> InferenceService:
    return request.app.state.service


def require_token(request: Request) -> None:
    """401 unless `Authorization: Bearer <AUTH_TOKEN>` matches (when a token is configured)."""
    token = request.app.state.settings.auth_token
    if not token:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not token_matches(given, token):
        raise UnauthorizedError("missing or wrong bearer token (Authorization: Bearer <token>)")


def token_matches(given: str, token: str) -> bool:
    """Constant-time comparison of bytes: a header with non-ASCII text is a wrong token, not
    the TypeError `compare_digest` raises for such strings."""
    return hmac.compare_digest(given.strip().encode("utf-8", "replace"), token.encode("utf-8"))


Service = Annotated[InferenceService, Depends(get_service)]
Authorized = [Depends(require_token)]
