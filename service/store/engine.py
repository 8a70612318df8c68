"""Async SQLAlchemy engine over asyncpg, built from a libpq-style URL."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

# Errors after which a connection is unusable and must not go back into the pool.
DISCONNECT_ERRORS = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # The server is shutting down or starting up: admin shutdown, cannot connect now.
    asyncpg.exceptions.OperatorInterventionError,
    OSError,
)
# A statement that runs longer fails, so a frozen database yields a 503 in seconds.
COMMAND_TIMEOUT_SECONDS = 10


def create_engine(database_url: str, *, pool_size: int = 10) -> AsyncEngine:
    """Create an engine whose connections asyncpg opens from the URL as given.

    asyncpg parses the URL itself, so every form libpq accepts (unix socket hosts in
    ``?host=``, ``sslmode``, several hosts) works without SQLAlchemy rewriting it.
    """

    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(
            database_url,
            command_timeout=COMMAND_TIMEOUT_SECONDS,
            timeout=COMMAND_TIMEOUT_SECONDS,
        )

    return create_async_engine(
        "postgresql+asyncpg://",
        async_creator=connect,
        pool_size=pool_size,
        max_overflow=pool_size,
        # No pre-ping: it would add a round trip to every event. A disconnect error
        # invalidates the connection instead, so a restart costs a few 503s.
        pool_timeout=10,
    )


@contextlib.asynccontextmanager
async def driver_connection(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """Lend a pooled connection as asyncpg's own, in autocommit, for prepared SQL."""
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver: asyncpg.Connection = raw.driver_connection
        try:
            yield driver
        except DISCONNECT_ERRORS:
            await connection.invalidate()
            raise
        except BaseException:
            # SQLAlchemy resets only transactions it began itself, so a cancelled
            # request must not hand a connection inside a transaction to the next one.
            if driver.is_in_transaction():
                await connection.invalidate()
            raise


async def driver_of(connection: AsyncConnection) -> asyncpg.Connection:
    """Return the asyncpg connection under ``connection``, inside its transaction."""
    raw = await connection.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection
    return driver
