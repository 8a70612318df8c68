"""Liveness of the service and its database."""

from __future__ import annotations

import asyncio

import msgspec
import sqlalchemy as sa
import structlog
from litestar import Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from sqlalchemy.ext.asyncio import AsyncEngine

logger = structlog.get_logger(__name__)

PING_TIMEOUT_SECONDS = 3.0


class Health(msgspec.Struct, kw_only=True):
    """Whether the service can reach its database."""

    status: str
    database: str


@get(
    "/health",
    tags=["health"],
    summary="Check the service and its database",
    responses={503: ResponseSpec(Health, description="The database is unreachable.")},
)
async def health(engine: NamedDependency[AsyncEngine]) -> Response[Health]:
    """Return 200 when PostgreSQL runs a query, 503 when it does not."""
    try:
        async with (
            asyncio.timeout(PING_TIMEOUT_SECONDS),
            engine.connect() as connection,
        ):
            await connection.execute(sa.text("SELECT 1"))
    except Exception as exc:
        logger.warning("health_check_failed", error=f"{type(exc).__name__}: {exc}")
        return Response(
            Health(status="unavailable", database="unreachable"),
            status_code=503,
            headers={"Retry-After": "5"},
        )
    return Response(Health(status="ok", database="ok"), status_code=200)
