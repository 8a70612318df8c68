"""Bearer-token guards for the two scopes: ``worker`` and ``api``."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from service.config import Settings

Scope = Literal["api", "worker"]
Guard = Callable[
    [ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]
]
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="ingestion-tracker"'}


def _matches(token: str, tokens: Sequence[str]) -> bool:
    """Compare with every configured token in constant time, never stopping early."""
    candidate = token.encode()
    found = False
    for known in tokens:
        found |= hmac.compare_digest(candidate, known.encode())
    return found


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def require_scope(scope: Scope) -> Guard:
    """Build a guard that admits tokens of ``scope``; a no-op while auth is disabled."""
    other: Scope = "worker" if scope == "api" else "api"

    async def guard(
        connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
    ) -> None:
        settings: Settings = connection.app.state.settings
        if not settings.auth_enabled:
            return
        tokens = {"api": settings.api_tokens, "worker": settings.worker_tokens}
        token = _bearer(connection.headers.get("authorization"))
        if token is None:
            raise NotAuthorizedException(
                "Missing bearer token: send the header 'Authorization: Bearer <token>'",
                headers=CHALLENGE,
            )
        if _matches(token, tokens[scope]):
            return
        if _matches(token, tokens[other]):
            raise PermissionDeniedException(
                f"This token has the {other} scope; this endpoint needs a token of the "
                f"{scope} scope"
            )
        raise NotAuthorizedException("Invalid bearer token", headers=CHALLENGE)

    return guard
