"""Start everything the demo needs on loopback and stop it again.

One process hosts it all: an embedded PostgreSQL in a temporary directory, the
tracker, the reference backend and a page server for ``url_ingest``, each served by
uvicorn on a port that the operating system picks.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from litestar import Litestar, MediaType, get

from examples.ingest_backend import BackendConfig
from examples.ingest_backend import create_app as create_backend
from examples.ingest_backend.runner import JobRunner
from service.app import create_app as create_tracker
from service.config import Settings
from service.logging import configure_logging
from service.store.embedded import EmbeddedPostgres

DOCUMENTS_DIR = Path(__file__).parent / "documents"
# Seconds that one server may take to start accepting requests.
START_TIMEOUT_SECONDS = 30.0


@dataclass
class Stack:
    """URLs of the running servers and the backend's runner."""

    tracker_url: str
    backend_url: str
    pages_url: str
    runner: JobRunner


def bind_loopback() -> socket.socket:
    """Bind a socket to a free loopback port, so its URL is known before serving."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def url_of(sock: socket.socket) -> str:
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


class QuietServer(uvicorn.Server):
    """A uvicorn server that leaves SIGINT and SIGTERM to asyncio.run.

    Three servers share this process, and each would install its own handlers, so
    Ctrl-C would stop only the last one. asyncio.run cancels the main task instead,
    and the ``finally`` blocks stop every server.
    """

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@asynccontextmanager
async def serve(app: Litestar, sock: socket.socket) -> AsyncIterator[None]:
    """Serve ``app`` on ``sock`` until the block ends."""
    config = uvicorn.Config(app, log_config=None, lifespan="on", access_log=False)
    server = QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(START_TIMEOUT_SECONDS):
            while not server.started:  # uvicorn exposes no start event
                if task.done():
                    await task
                    raise RuntimeError(f"Server on {url_of(sock)} exited at start-up")
                await asyncio.sleep(0.02)
        yield
    finally:
        server.should_exit = True
        await task
        sock.close()


def pages_app() -> Litestar:
    """Serve the bundled HTML page at ``/page.html``."""

    @get("/page.html", media_type=MediaType.HTML)
    async def page() -> bytes:
        return (DOCUMENTS_DIR / "page.html").read_bytes()

    return Litestar([page], logging_config=None)


def quiet_logging() -> None:
    """Let only errors of the servers reach the output, so the checks stay readable."""
    configure_logging("error", "console")


@asynccontextmanager
async def embedded_postgres(directory: Path) -> AsyncIterator[str]:
    """Start PostgreSQL in ``directory``, yield its URL, then stop and delete it."""
    server = EmbeddedPostgres(directory / "pgdata", delete_on_stop=True)
    try:
        yield await asyncio.to_thread(server.start)
    finally:
        await asyncio.to_thread(server.stop)


@asynccontextmanager
async def running_stack() -> AsyncIterator[Stack]:
    """Start the database and the three servers, and stop them when the block exits."""
    async with AsyncExitStack() as stack:
        directory = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="tracker-demo-"))
        )
        database_url = await stack.enter_async_context(embedded_postgres(directory))
        tracker_sock, backend_sock, pages_sock = (bind_loopback() for _ in range(3))
        tracker_url, backend_url = url_of(tracker_sock), url_of(backend_sock)

        settings = Settings(
            database_url=database_url,
            backend_url=backend_url,
            data_dir=directory,
            dispatch_interval_seconds=0.1,
            retry_backoff_seconds=0.1,
            retry_backoff_max_seconds=1.0,
            retry_max_tries=3,
            backend_timeout_seconds=5.0,
            db_pool_size=5,
        )
        backend = create_backend(
            BackendConfig(
                tracker_url=tracker_url,
                data_dir=directory / "uploads",
                public_url=backend_url,
                flush_interval_seconds=0.1,
            )
        )
        tracker = create_tracker(settings)
        # Litestar's default logging config, which the backend app uses, resets the
        # root logger as the app is built, so apply the demo's quiet logging again.
        quiet_logging()
        await stack.enter_async_context(serve(tracker, tracker_sock))
        await stack.enter_async_context(serve(backend, backend_sock))
        await stack.enter_async_context(serve(pages_app(), pages_sock))
        yield Stack(
            tracker_url=tracker_url,
            backend_url=backend_url,
            pages_url=url_of(pages_sock),
            runner=backend.state.backend.runner,
        )
