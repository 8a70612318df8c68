"""Command line: ``ingestion-tracker serve`` and ``ingestion-tracker migrate``."""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import msgspec
import structlog
import uvicorn
from litestar import Litestar

from service.app import create_app
from service.config import ConfigError, Settings, load_settings, validate
from service.history.feed import ChangeFeed
from service.logging import configure_logging
from service.store import migrate
from service.store.embedded import EmbeddedPostgres
from service.store.engine import create_engine

logger = structlog.get_logger(__name__)

ENVIRONMENT_HELP = """\
environment:
  DATABASE_URL            postgresql:// URL (libpq forms, unix socket hosts included);
                          unset: an embedded PostgreSQL in TRACKER_DATA_DIR
  TRACKER_DATA_DIR        data directory of the embedded PostgreSQL
  TRACKER_API_TOKENS      comma-separated bearer tokens for queries, streams, retry
                          and cancel; NAME:TOKEN names one in the job history
  TRACKER_WORKER_TOKENS   comma-separated bearer tokens for registration and events;
                          NAME:TOKEN as above
  TRACKER_HOST, TRACKER_PORT
                          bind address and port (default 127.0.0.1, 8080)
  TRACKER_STALL_TIMEOUT_SECONDS, TRACKER_HEARTBEAT_TIMEOUT_SECONDS
                          silence before a processing job shows stalled (60) and
                          before it is failed (600)
  TRACKER_BACKEND_URL     base URL of the backend that receives forwarded retries
  TRACKER_BACKEND_TOKEN   bearer token sent to the backend
  See README.md for every variable, its default and its unit.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ingestion-tracker",
        description="Track document-ingestion jobs of a knowledge-base backend.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="migrate the database and serve the HTTP API",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--host", help="address to bind (default: TRACKER_HOST or 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=int, help="TCP port to listen on (default: TRACKER_PORT or 8080)"
    )
    commands.add_parser(
        "migrate",
        help="apply pending database migrations and exit",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


@contextmanager
def _database(settings: Settings) -> Iterator[Settings]:
    """Yield settings with a database URL, starting the embedded server if unset."""
    if settings.database_url is not None:
        yield settings
        return
    embedded = EmbeddedPostgres(settings.data_dir / "pgdata")
    url = embedded.start()
    try:
        yield msgspec.structs.replace(settings, database_url=url)
    finally:
        embedded.stop()


async def _migrate(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=1)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()


class _Stopped(Exception):
    """SIGINT or SIGTERM arrived after the HTTP server shut down."""


# Streams still open this long into a shutdown are cut, and their clients reconnect.
STREAM_SHUTDOWN_GRACE_SECONDS = 3


def _stop_on_signal(signum: int, frame: object) -> None:
    raise _Stopped(signal.Signals(signum).name)


class _StreamEndingServer(uvicorn.Server):
    """A uvicorn server that ends the open event streams when shutdown begins.

    Uvicorn waits for open responses before it runs the lifespan shutdown, so
    streams that end first let it finish at once, without cancelling them.
    """

    def __init__(self, config: uvicorn.Config, app: Litestar) -> None:
        super().__init__(config)
        self._app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        feed: ChangeFeed | None = self._app.state.get("feed")
        if feed is not None:
            feed.end_streams()
        await super().shutdown(sockets=sockets)


def _serve(settings: Settings) -> None:
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        server_header=False,
        # Event streams never finish on their own, so without a limit a shutdown
        # would wait for every open stream's client to leave.
        timeout_graceful_shutdown=STREAM_SHUTDOWN_GRACE_SECONDS,
    )
    # Uvicorn shuts down gracefully and then re-raises the signal it caught. These
    # handlers turn that into an exception, so the embedded PostgreSQL is stopped too.
    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGINT, _stop_on_signal)
    logger.info("http_server_starting", host=settings.host, port=settings.port)
    try:
        _StreamEndingServer(config, app).run()
    except _Stopped as stopped:
        logger.info("http_server_stopped", signal=str(stopped))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit status."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        overrides = {key: getattr(args, key, None) for key in ("host", "port")}
        settings = msgspec.structs.replace(
            settings,
            **{key: value for key, value in overrides.items() if value is not None},
        )
        validate(settings)
    except ConfigError as exc:
        print(f"ingestion-tracker: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)

    with _database(settings) as ready:
        if args.command == "migrate":
            assert ready.database_url is not None
            asyncio.run(_migrate(ready.database_url))
        else:
            _serve(ready)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
