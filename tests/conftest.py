"""Fixtures: a real PostgreSQL, a migrated template database, a copy per test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import msgspec
import pytest
import uvicorn
from litestar import Litestar
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


# Servers over real HTTP. Litestar's AsyncTestClient (2.25, in
# litestar/testing/transport.py) runs each request to completion through a blocking
# portal, so requests gathered on it run one after another. Tests that need requests
# to overlap, event streams, or another process that calls the app serve it with
# uvicorn on loopback instead.

SERVER_START_TIMEOUT_SECONDS = 10
# Connections still open at teardown, such as event streams, are cut after this.
SERVER_STOP_TIMEOUT_SECONDS = 1
ServeAsgi = Callable[..., Awaitable[str]]
ServeApp = Callable[..., Awaitable[httpx.AsyncClient]]


def bind_loopback() -> socket.socket:
    """Bind a TCP socket to a free port on 127.0.0.1, so its URL is known early."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def loopback_url(sock: socket.socket) -> str:
    """Return the base URL of a socket bound by ``bind_loopback``."""
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


class LoopbackServer(uvicorn.Server):
    """A uvicorn server that leaves SIGINT and SIGTERM to pytest.

    Several servers run in one test, and each would install and later restore its
    own signal handlers (uvicorn 0.55, ``Server.capture_signals``).
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
    try:
        await server.serve(sockets=[sock])
    except SystemExit as exit_:
        # uvicorn calls sys.exit when the app's lifespan start-up fails.
        raise RuntimeError(
            f"uvicorn exited with code {exit_.code} while starting the app on "
            f"{loopback_url(sock)}; the uvicorn.error log names the cause"
        ) from None


async def _wait_until_started(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    """Wait until ``server`` has run the app's start-up and listens for requests."""
    async with asyncio.timeout(SERVER_START_TIMEOUT_SECONDS):
        while not server.started:  # uvicorn exposes no start event
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started serving")
            await asyncio.sleep(0.01)


async def _stop(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    await task


@pytest.fixture
async def serve_asgi() -> AsyncIterator[ServeAsgi]:
    """Serve Litestar apps with uvicorn on loopback and return each one's base URL.

    Call it as ``await serve_asgi(app)``, or with a socket from ``bind_loopback`` whose
    URL another app needs before this one starts. Servers stop when the test ends,
    the last started first.
    """
    async with contextlib.AsyncExitStack() as servers:

        async def start(app: Litestar, sock: socket.socket | None = None) -> str:
            sock = sock if sock is not None else bind_loopback()
            config = uvicorn.Config(
                app,
                lifespan="on",
                log_config=None,
                timeout_graceful_shutdown=SERVER_STOP_TIMEOUT_SECONDS,
            )
            server = LoopbackServer(config)
            task = asyncio.create_task(_serve(server, sock), name="uvicorn")
            try:
                await _wait_until_started(server, task)
            except BaseException:
                server.should_exit = True
                raise
            servers.push_async_callback(_stop, server, task)
            return loopback_url(sock)

        yield start


@pytest.fixture
async def serve_app(
    settings: Settings, serve_asgi: ServeAsgi
) -> AsyncIterator[ServeApp]:
    """Serve trackers over HTTP on loopback and return a client of each.

    ``await serve_app(**overrides)`` builds the app with ``create_app`` from the test's
    settings with ``overrides`` replaced. Several trackers may run at once, for
    example two replicas on one database.
    """
    async with contextlib.AsyncExitStack() as clients:

        async def start(**overrides: Any) -> httpx.AsyncClient:
            app = create_app(msgspec.structs.replace(settings, **overrides))
            url = await serve_asgi(app)
            client = httpx.AsyncClient(base_url=url, timeout=30)
            return await clients.enter_async_context(client)

        yield start


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
