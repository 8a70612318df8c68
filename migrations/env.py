"""Alembic environment: runs on the connection handed over, or on DATABASE_URL."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from service.store.engine import create_engine
from service.store.tables import metadata


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection, target_metadata=metadata, compare_type=True
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_from_environment() -> None:
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit(
            "DATABASE_URL is not set; use `ingestion-tracker migrate` instead"
        )
    engine = create_engine(url, pool_size=1)
    async with engine.begin() as connection:
        await connection.run_sync(run_on)
    await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline SQL generation is not supported; run against a database")

handed_over = context.config.attributes.get("connection")
if handed_over is not None:
    run_on(handed_over)
else:
    asyncio.run(run_from_environment())
