"""Alembic revisions against an empty database: schema, downgrade, advisory lock."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from service.store import migrate
from service.store.engine import create_engine
from service.store.tables import JOB_SOURCES, JOB_STATUSES, metadata
from tests.conftest import with_database

WAIT_SECONDS = 10.0

TABLES_QUERY = """
SELECT table_name FROM information_schema.tables
WHERE table_schema = 'public' AND table_name <> 'alembic_version'
ORDER BY table_name
"""
ENUM_TYPES_QUERY = """
SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE t.typtype = 'e' AND n.nspname = 'public'
ORDER BY t.typname
"""
ENUM_LABELS_QUERY = """
SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid
WHERE t.typname = $1
ORDER BY e.enumsortorder
"""
WAITING_ADVISORY_LOCKS_QUERY = """
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND NOT granted
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


@pytest.fixture
async def empty_database_url(postgres_url: str) -> AsyncIterator[str]:
    """A database with no schema at all, dropped when the test ends."""
    name = f"tracker_migrations_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield with_database(postgres_url, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def engine(empty_database_url: str) -> AsyncIterator[AsyncEngine]:
    created = create_engine(empty_database_url, pool_size=1)
    yield created
    await created.dispose()


async def schema_differences(engine: AsyncEngine) -> list[Any]:
    """Compare the database schema with the table metadata, column types included."""

    def compare(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        differences: list[Any] = compare_metadata(context, metadata)
        return differences

    async with engine.connect() as connection:
        return await connection.run_sync(compare)


async def fetch_column(database_url: str, query: str, *args: Any) -> list[Any]:
    connection = await asyncpg.connect(database_url)
    try:
        return [record[0] for record in await connection.fetch(query, *args)]
    finally:
        await connection.close()


def head_revision() -> str:
    head = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
    assert head is not None
    return head


async def test_upgrade_matches_table_metadata(engine: AsyncEngine) -> None:
    await migrate.upgrade(engine)

    assert await schema_differences(engine) == []


async def test_upgrade_creates_enum_labels_in_order(
    engine: AsyncEngine, empty_database_url: str
) -> None:
    await migrate.upgrade(engine)

    statuses = await fetch_column(empty_database_url, ENUM_LABELS_QUERY, "job_status")
    sources = await fetch_column(empty_database_url, ENUM_LABELS_QUERY, "job_source")
    assert tuple(statuses) == JOB_STATUSES
    assert tuple(sources) == JOB_SOURCES


async def test_upgrade_records_head_revision(
    engine: AsyncEngine, empty_database_url: str
) -> None:
    await migrate.upgrade(engine)

    versions = await fetch_column(
        empty_database_url, "SELECT version_num FROM alembic_version"
    )
    assert versions == [head_revision()]


async def test_downgrade_removes_tables_and_types(
    engine: AsyncEngine, empty_database_url: str
) -> None:
    await migrate.upgrade(engine)
    await migrate.downgrade(engine)

    tables = await fetch_column(empty_database_url, TABLES_QUERY)
    enum_types = await fetch_column(empty_database_url, ENUM_TYPES_QUERY)
    versions = await fetch_column(
        empty_database_url, "SELECT version_num FROM alembic_version"
    )
    assert tables == []
    assert enum_types == []
    assert versions == []


async def test_upgrade_after_downgrade_restores_schema(
    engine: AsyncEngine, empty_database_url: str
) -> None:
    await migrate.upgrade(engine)
    await migrate.downgrade(engine)
    await migrate.upgrade(engine)

    tables = await fetch_column(empty_database_url, TABLES_QUERY)
    assert tables == ["ingestion_job_history", "ingestion_jobs", "retry_outbox"]
    assert await schema_differences(engine) == []


async def test_concurrent_upgrades_both_succeed(
    engine: AsyncEngine, empty_database_url: str
) -> None:
    other = create_engine(empty_database_url, pool_size=1)
    try:
        await asyncio.gather(migrate.upgrade(engine), migrate.upgrade(other))
    finally:
        await other.dispose()

    versions = await fetch_column(
        empty_database_url, "SELECT version_num FROM alembic_version"
    )
    assert versions == [head_revision()]
    assert await schema_differences(engine) == []


async def test_upgrade_waits_for_migration_lock(
    engine: AsyncEngine, empty_database_url: str
) -> None:
    holder = await asyncpg.connect(empty_database_url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", migrate.MIGRATION_LOCK_KEY)
        upgrade = asyncio.create_task(migrate.upgrade(engine))
        async with asyncio.timeout(WAIT_SECONDS):
            while not await holder.fetchval(WAITING_ADVISORY_LOCKS_QUERY):
                assert not upgrade.done(), "upgrade finished while the lock was held"
                await asyncio.sleep(0.02)
        tables_while_locked = await holder.fetch(TABLES_QUERY)
        await holder.execute(
            "SELECT pg_advisory_unlock($1)", migrate.MIGRATION_LOCK_KEY
        )
        await asyncio.wait_for(upgrade, WAIT_SECONDS)
    finally:
        await holder.close()

    assert tables_while_locked == []
    assert await schema_differences(engine) == []
