"""Async SQLAlchemy engine over asyncpg, built from a libpq-style URL."""

from __future__ import annotations

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def create_engine(database_url: str, *, pool_size: int = 10) -> AsyncEngine:
    """Create an engine whose connections asyncpg opens from the URL as given.

    asyncpg parses the URL itself, so every form libpq accepts (unix socket hosts in
    ``?host=``, ``sslmode``, several hosts) works without SQLAlchemy rewriting it.
    """

    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(database_url, command_timeout=60)

    return create_async_engine(
        "postgresql+asyncpg://",
        async_creator=connect,
        pool_size=pool_size,
        max_overflow=pool_size,
        # No pre-ping: it would add a round trip to every event. A disconnect error
        # invalidates the whole pool instead, so one request sees a restart (as a 503).
        pool_timeout=10,
    )
