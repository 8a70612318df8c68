"""Fixtures: a real PostgreSQL, a migrated template database, a copy per test."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.config import Settings
from service.store import migrate
from service.store.embedded import EmbeddedPostgres
from service.store.engine import create_engine
from tests.backend import FakeBackend


def with_database(url: str, name: str) -> str:
    """Return ``url`` pointing at database ``name``, keeping host and options."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server: TEST_DATABASE_URL, or an embedded one for this session."""
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    with tempfile.TemporaryDirectory(prefix="tracker-test-pg-") as directory:
        server = EmbeddedPostgres(Path(directory) / "pgdata", delete_on_stop=True)
        yield server.start()
        server.stop()


@pytest.fixture(scope="session")
async def template_database(postgres_url: str) -> AsyncIterator[str]:
    """A database migrated once per session, copied for every test."""
    name = f"tracker_template_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(postgres_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    engine = create_engine(with_database(postgres_url, name), pool_size=1)
    await migrate.upgrade(engine)
    await engine.dispose()
    yield name
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture
async def database_url(postgres_url: str, template_database: str) -> AsyncIterator[str]:
    """A fresh copy of the migrated template for one test."""
    name = f"tracker_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
        yield with_database(postgres_url, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Settings for a test app: fast polling and backoff so retries finish quickly."""
    return Settings(
        database_url=database_url,
        dispatch_interval_seconds=0.05,
        retry_backoff_seconds=0.05,
        retry_backoff_max_seconds=0.2,
        retry_max_tries=3,
        backend_timeout_seconds=2.0,
        db_pool_size=5,
    )


ClientFactory = Callable[..., Any]


@pytest.fixture
async def make_client(settings: Settings) -> AsyncIterator[ClientFactory]:
    """Start apps with setting overrides; each runs its lifespan until the test ends."""
    clients: list[AsyncTestClient[Any]] = []

    async def start(**overrides: Any) -> AsyncTestClient[Any]:
        app = create_app(msgspec.structs.replace(settings, **overrides))
        client: AsyncTestClient[Any] = AsyncTestClient(app=app)
        await client.__aenter__()
        clients.append(client)
        return client

    yield start
    for client in reversed(clients):
        await client.__aexit__(None, None, None)


@pytest.fixture
async def client(make_client: ClientFactory) -> AsyncTestClient[Any]:
    """A client of an app with auth off and no backend."""
    started: AsyncTestClient[Any] = await make_client()
    return started


@pytest.fixture
async def backend() -> AsyncIterator[FakeBackend]:
    """A real HTTP server on loopback that plays the knowledge-base backend."""
    server = FakeBackend()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def tracked_client(
    make_client: ClientFactory, backend: FakeBackend
) -> AsyncTestClient[Any]:
    """A client of an app that forwards retries to the fake backend."""
    started: AsyncTestClient[Any] = await make_client(
        backend_url=backend.url, backend_token="backend-secret"
    )
    return started


JOB_DEFAULTS: dict[str, Any] = {
    "collection_id": 1,
    "collection_name": "Docs",
    "owner": "alice",
    "plugin_name": "markitdown_ingest",
    "plugin_params": {"chunk_size": 1000},
    "source": "file",
}


async def register(client: AsyncTestClient[Any], **fields: Any) -> dict[str, Any]:
    """Register a job with defaults overridden by ``fields`` and return it."""
    response = await client.post("/ingestion-jobs", json={**JOB_DEFAULTS, **fields})
    assert response.status_code in {200, 201}, response.text
    job: dict[str, Any] = response.json()
    return job


async def send_event(
    client: AsyncTestClient[Any], job_id: int, **event: Any
) -> dict[str, Any]:
    """Post one event and return the response body, which must come with a 200."""
    response = await client.post(f"/ingestion-jobs/{job_id}/events", json=event)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer
