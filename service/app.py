"""Application factory: wires stores, routes, the retry dispatcher and lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import structlog
from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import Settings, load_settings
from service.errors import EXCEPTION_HANDLERS
from service.events.controller import WorkerController
from service.health import health
from service.history.controller import JobHistoryController
from service.history.feed import ChangeFeed
from service.history.stream import StreamController
from service.http.middleware import request_logging
from service.http.openapi import COMPONENTS
from service.http.request import TrackerRequest
from service.jobs.controller import CollectionJobsController
from service.jobs.store import JobStore, Timeouts
from service.liveness import LivenessSweeper
from service.logging import configure_logging
from service.retries.dispatcher import RetryDispatcher
from service.retries.forwarding import BackendForwarder
from service.retries.store import RetryStore
from service.store import migrate
from service.store.engine import create_engine

logger = structlog.get_logger(__name__)

VERSION = "0.1.0"


def _provide(name: str) -> Provide:
    def provider(state: State) -> Any:
        return state[name]

    return Provide(provider, sync_to_thread=False)


def _start_dispatcher(app: Litestar, engine: AsyncEngine) -> asyncio.Task[None] | None:
    settings: Settings = app.state.settings
    app.state.dispatcher = None
    if settings.backend_url is None:
        logger.warning(
            "retry_forwarding_disabled", reason="TRACKER_BACKEND_URL is not set"
        )
        return None
    client = httpx.AsyncClient(
        timeout=settings.backend_timeout_seconds,
        transport=app.state.get("backend_transport"),
    )
    app.state.backend_client = client
    dispatcher = RetryDispatcher(
        RetryStore(engine),
        BackendForwarder(
            client,
            settings.backend_url,
            settings.backend_token,
            max_file_bytes=settings.retry_max_file_bytes,
        ),
        backoff_seconds=settings.retry_backoff_seconds,
        backoff_max_seconds=settings.retry_backoff_max_seconds,
        max_tries=settings.retry_max_tries,
        poll_seconds=settings.dispatch_interval_seconds,
        request_timeout_seconds=settings.backend_timeout_seconds,
    )
    app.state.dispatcher = dispatcher
    return asyncio.create_task(dispatcher.run(), name="retry-dispatcher")


@contextlib.asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    """Open the database, migrate it, run the dispatcher; undo all of it on shutdown."""
    settings: Settings = app.state.settings
    if settings.database_url is None:
        raise RuntimeError(
            "DATABASE_URL is not set; start the service with `ingestion-tracker serve`"
        )
    engine = create_engine(settings.database_url, pool_size=settings.db_pool_size)
    await migrate.upgrade(engine)
    app.state.engine = engine
    app.state.jobs = JobStore(
        engine,
        Timeouts(
            stall_seconds=settings.stall_timeout_seconds,
            heartbeat_seconds=settings.heartbeat_timeout_seconds,
        ),
    )
    app.state.retries = RetryStore(engine)
    feed = ChangeFeed(
        engine,
        settings.database_url,
        buffer_events=settings.stream_buffer_events,
    )
    # Started before the background tasks, so a failure here leaves none behind.
    try:
        await feed.start()
    except BaseException:
        await engine.dispose()
        raise
    app.state.feed = feed
    task = _start_dispatcher(app, engine)
    sweeper = asyncio.create_task(
        LivenessSweeper(engine, interval_seconds=settings.sweep_interval_seconds).run(),
        name="liveness-sweeper",
    )
    logger.info(
        "service_started",
        auth="enabled"
        if settings.auth_enabled
        else "disabled (loopback only, no tokens set)",
        retry_forwarding=settings.backend_url is not None,
    )
    try:
        yield
    finally:
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        await feed.stop()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await app.state.backend_client.aclose()
        await engine.dispose()
        logger.info("service_stopped")


def create_app(
    settings: Settings, *, backend_transport: httpx.AsyncBaseTransport | None = None
) -> Litestar:
    """Build the application; tests pass ``backend_transport`` to fake the backend."""
    openapi = OpenAPIConfig(
        title="Ingestion tracker",
        version=VERSION,
        description=(
            "Tracks asynchronous document-ingestion jobs of a knowledge-base backend."
        ),
        path="/schema",
        render_plugins=[ScalarRenderPlugin()],
        components=COMPONENTS,
    )
    cors = (
        # Browser code reads ETag to poll with If-None-Match.
        CORSConfig(allow_origins=list(settings.cors_origins), expose_headers=["ETag"])
        if settings.cors_origins
        else None
    )
    return Litestar(
        route_handlers=[
            CollectionJobsController,
            JobHistoryController,
            StreamController,
            WorkerController,
            health,
        ],
        dependencies={
            "engine": _provide("engine"),
            "jobs": _provide("jobs"),
            "retries": _provide("retries"),
        },
        state=State({"settings": settings, "backend_transport": backend_transport}),
        lifespan=[lifespan],
        middleware=[request_logging],
        request_class=TrackerRequest,
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=openapi,
        cors_config=cors,
        request_max_body_size=settings.max_body_bytes,
        logging_config=None,
    )


def app_from_environment() -> Litestar:
    """Build the application from environment variables (ASGI factory mode)."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
