"""Apply Alembic revisions under a PostgreSQL advisory lock."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import structlog
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations

logger = structlog.get_logger(__name__)

# Any fixed 64-bit key works; replicas that start together queue on it.
MIGRATION_LOCK_KEY = 7_304_618_230_114_521

SCRIPT_LOCATION = Path(migrations.__file__).parent


def alembic_config() -> Config:
    """Build an Alembic config that needs no alembic.ini."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Upgrade the schema to ``revision``; concurrent callers wait for each other."""
    await _run(
        engine, lambda config: command.upgrade(config, revision), "upgrade", revision
    )


async def downgrade(engine: AsyncEngine, revision: str = "base") -> None:
    """Downgrade the schema to ``revision``."""
    await _run(
        engine,
        lambda config: command.downgrade(config, revision),
        "downgrade",
        revision,
    )


async def _run(
    engine: AsyncEngine, action: Callable[[Config], None], name: str, revision: str
) -> None:
    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        action(config)

    logger.info("migration_started", action=name, revision=revision)
    async with engine.begin() as connection:
        # A transaction-level lock ends with the commit that makes the schema visible.
        await connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
        )
        await connection.run_sync(run)
    logger.info("migration_finished", action=name, revision=revision)
