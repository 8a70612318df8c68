"""Bearer-token guards for the two scopes: ``worker`` and ``api``."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from service.config import Settings, split_token

Scope = Literal["api", "worker"]
Guard = Callable[
    [ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]
]
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="ingestion-tracker"'}
ACTOR_STATE_KEY = "token_name"


def _match(token: str, entries: Sequence[str]) -> tuple[bool, str | None]:
    """Compare with every configured token in constant time, never stopping early.

    Returns whether one matched and the name of the entry that did, if it has one.
    """
    candidate = token.encode()
    found = False
    matched_name: str | None = None
    for entry in entries:
        name, known = split_token(entry)
        equal = hmac.compare_digest(candidate, known.encode())
        found |= equal
        if equal:
            matched_name = name
    return found, matched_name


def actor(connection: ASGIConnection[Any, Any, Any, Any], scope: Scope) -> str:
    """Name the caller for the job history: ``scope:token-name``, or the scope alone."""
    name: str | None = connection.state.get(ACTOR_STATE_KEY)
    return scope if name is None else f"{scope}:{name}"


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
        found, name = _match(token, tokens[scope])
        if found:
            connection.state[ACTOR_STATE_KEY] = name
            return
        if _match(token, tokens[other])[0]:
            raise PermissionDeniedException(
                f"This token has the {other} scope; this endpoint needs a token of the "
                f"{scope} scope"
            )
        raise NotAuthorizedException("Invalid bearer token", headers=CHALLENGE)

    return guard
