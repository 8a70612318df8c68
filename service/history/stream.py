"""Server-sent event streams of one job's changes or of a whole collection's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
import structlog
from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, PathParameter, QueryParameter
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncEngine

from service.auth import require_scope
from service.history.feed import (
    READ_BATCH,
    START,
    TERMINAL_STATUSES,
    ChangeFeed,
    Cursor,
    Subscription,
    check_not_ahead,
    has_rows_after,
    latest_of_job,
    replay,
    sse_message,
)
from service.http.openapi import API_SECURITY, errors
from service.jobs.schemas import Job
from service.jobs.store import JobStore
from service.limits import BIGINT_MAX

logger = structlog.get_logger(__name__)

EVENT_STREAM = "text/event-stream"
# Browsers reconnect this many milliseconds after a stream drops.
RECONNECT_MILLISECONDS = 2000
OPENING = f"retry: {RECONNECT_MILLISECONDS}\n\n".encode()
KEEPALIVE = b": keep-alive\n\n"
STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    # nginx buffers responses without this header, which would hold events back.
    "X-Accel-Buffering": "no",
}

CollectionId = Annotated[
    int, PathParameter(ge=1, le=BIGINT_MAX, description="Collection id.")
]
JobId = Annotated[
    int, PathParameter(ge=1, le=BIGINT_MAX, description="Ingestion job id.")
]
LastEventIdHeader = Annotated[
    str | None,
    HeaderParameter(
        name="Last-Event-ID",
        description="The id of the last message received; the stream replays every "
        "change after it. Browsers send it when they reconnect.",
    ),
]
LastEventIdQuery = Annotated[
    str | None,
    QueryParameter(
        name="last_event_id",
        description="The same as the Last-Event-ID header, for clients that cannot "
        "set headers; the header wins when both are sent.",
    ),
]

_STREAM_DESCRIPTION = (
    "Each change is one message: `id` is the stream position and `data` is the job in "
    "the shape of GET .../ingestion-jobs/{job_id}. Lines starting with ':' keep idle "
    "connections open. Reconnect with Last-Event-ID to get every change after that "
    "message from the job history, in order and once: progress changes at most about "
    "one a second per job, every status change. A client too slow to keep up is "
    "disconnected and catches up the same way."
)


async def _start_position(
    engine: AsyncEngine, header: str | None, query: str | None
) -> Cursor | None:
    if header is not None and header.strip():
        source, value = "Last-Event-ID header", header
    elif query is not None and query.strip():
        source, value = "query parameter last_event_id", query
    else:
        return None
    after = Cursor.parse(value, source)
    await check_not_ahead(engine, after, source)
    return after


def _feed(request: Request[Any, Any, Any]) -> ChangeFeed:
    feed: ChangeFeed = request.app.state.feed
    return feed


def _event_stream(content: AsyncIterator[bytes]) -> Stream:
    return Stream(content, media_type=EVENT_STREAM, headers=STREAM_HEADERS)


async def _live(
    subscription: Subscription, after: Cursor, keepalive_seconds: float
) -> AsyncIterator[tuple[Cursor, str, bytes]]:
    """Yield the feed's changes after ``after``; keep-alives while it is quiet.

    Ends when the subscription overflows or the service shuts down.
    """
    while True:
        try:
            async with asyncio.timeout(keepalive_seconds):
                change = await subscription.buffer.get()
        except TimeoutError:
            yield after, "", KEEPALIVE
            continue
        if change is None:
            logger.info(
                "stream_ended_early",
                collection_id=subscription.collection_id,
                job_id=subscription.job_id,
                reason="client too slow or service stopping",
                cursor=str(after),
            )
            return
        # The replay already sent changes up to where it stopped.
        if change.cursor <= after:
            continue
        after = change.cursor
        yield after, change.status, change.message


class StreamController(Controller):
    """Live streams of job changes, with replay from the job history."""

    path = "/collections/{collection_id:int}"
    guards = [require_scope("api")]  # noqa: RUF012 - Litestar reads this class attribute
    tags = ["streams"]  # noqa: RUF012 - Litestar reads this class attribute
    security = API_SECURITY

    @get(
        "/ingestion-jobs/{job_id:int}/stream",
        summary="Stream one job's changes",
        description="Server-sent events. Starts with the job as it is, unless "
        "Last-Event-ID asks for a replay; ends after the job reaches completed, "
        "failed, cancelled or deleted. A reconnect to a finished job with nothing "
        "new gets 204, which stops browsers from reconnecting. " + _STREAM_DESCRIPTION,
        media_type=EVENT_STREAM,
        responses={
            204: ResponseSpec(
                None,
                description="The job is finished and nothing changed after "
                "Last-Event-ID.",
            ),
            **errors(400, 401, 403, 404, 503),
        },
    )
    async def stream_job(
        self,
        request: Request[Any, Any, Any],
        jobs: NamedDependency[JobStore],
        engine: NamedDependency[AsyncEngine],
        collection_id: CollectionId,
        job_id: JobId,
        last_event_id: LastEventIdHeader = None,
        last_event_id_query: LastEventIdQuery = None,
    ) -> Stream | Response[None]:
        after = await _start_position(engine, last_event_id, last_event_id_query)
        job = await jobs.get(collection_id, job_id)
        # A final row that is committed but not yet readable still counts as new.
        if (
            after is not None
            and job.status in TERMINAL_STATUSES
            and not await has_rows_after(engine, job_id, after)
        ):
            return Response(None, status_code=204)
        keepalive = request.app.state.settings.stream_keepalive_seconds
        return _event_stream(
            self._job_events(_feed(request), engine, job, after, keepalive)
        )

    @staticmethod
    async def _job_events(
        feed: ChangeFeed,
        engine: AsyncEngine,
        job: Job,
        after: Cursor | None,
        keepalive_seconds: float,
    ) -> AsyncIterator[bytes]:
        # Subscribed before reading the history, so no change falls between the two.
        subscription = feed.subscribe(job.collection_id, job.id)
        logger.info(
            "stream_opened",
            collection_id=job.collection_id,
            job_id=job.id,
            after=None if after is None else str(after),
        )
        try:
            yield OPENING
            if after is None:
                latest = await latest_of_job(engine, job.id)
                if latest is None:
                    # No readable history yet, so the job as read, at the very start.
                    after, status = START, str(job.status)
                    yield sse_message(START, msgspec.json.encode(job).decode())
                else:
                    after, status = latest.cursor, latest.status
                    yield latest.message
                if status in TERMINAL_STATUSES:
                    return
            else:
                replayed_status: str | None = None
                async for cursor, status, message in _replayed(
                    engine, after, job.collection_id, job.id
                ):
                    after, replayed_status = cursor, status
                    yield message
                if replayed_status in TERMINAL_STATUSES:
                    return
            async for _, status, message in _live(
                subscription, after, keepalive_seconds
            ):
                yield message
                if status in TERMINAL_STATUSES:
                    return
        finally:
            feed.unsubscribe(subscription)
            logger.info("stream_closed", collection_id=job.collection_id, job_id=job.id)

    @get(
        "/ingestion-stream",
        summary="Stream the changes of a collection's jobs",
        description="Server-sent events for every job of the collection. Without "
        "Last-Event-ID it starts with a message that has only an id, the position "
        "to reconnect from, and then sends changes as they happen. "
        + _STREAM_DESCRIPTION,
        media_type=EVENT_STREAM,
        responses={**errors(400, 401, 403, 503)},
    )
    async def stream_collection(
        self,
        request: Request[Any, Any, Any],
        engine: NamedDependency[AsyncEngine],
        collection_id: CollectionId,
        last_event_id: LastEventIdHeader = None,
        last_event_id_query: LastEventIdQuery = None,
    ) -> Stream:
        after = await _start_position(engine, last_event_id, last_event_id_query)
        keepalive = request.app.state.settings.stream_keepalive_seconds
        return _event_stream(
            self._collection_events(
                _feed(request), engine, collection_id, after, keepalive
            )
        )

    @staticmethod
    async def _collection_events(
        feed: ChangeFeed,
        engine: AsyncEngine,
        collection_id: int,
        resume_after: Cursor | None,
        keepalive_seconds: float,
    ) -> AsyncIterator[bytes]:
        subscription = feed.subscribe(collection_id, None)
        # No await since subscribing: every change after this position reaches it.
        after = feed.cursor if resume_after is None else resume_after
        logger.info(
            "stream_opened",
            collection_id=collection_id,
            after=None if resume_after is None else str(resume_after),
        )
        try:
            yield OPENING
            if resume_after is not None:
                async for cursor, _, message in _replayed(
                    engine, after, subscription.collection_id, None
                ):
                    after = cursor
                    yield message
            else:
                yield f"id: {after}\n\n".encode()
            async for _, _, message in _live(subscription, after, keepalive_seconds):
                yield message
        finally:
            feed.unsubscribe(subscription)
            logger.info("stream_closed", collection_id=subscription.collection_id)


async def _replayed(
    engine: AsyncEngine, after: Cursor, collection_id: int, job_id: int | None
) -> AsyncIterator[tuple[Cursor, str, bytes]]:
    """Yield every readable history row after ``after``, page by page."""
    while True:
        page = await replay(engine, after, collection_id=collection_id, job_id=job_id)
        for change in page:
            after = change.cursor
            yield change.cursor, change.status, change.message
        if len(page) < READ_BATCH:
            return
