"""Worker endpoints: register a job and report its events, one or many at once."""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from litestar import Controller, Request, Response, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, PathParameter
from sqlalchemy.ext.asyncio import AsyncEngine

from service.auth import actor, require_scope
from service.errors import JobNotFound, StateConflict
from service.events.schemas import (
    BatchEvent,
    BatchItemResult,
    BatchResult,
    Event,
    EventBatch,
    EventResult,
)
from service.events.store import apply_event, lock_jobs
from service.http.openapi import WORKER_SECURITY, errors
from service.jobs.records import job_from_row
from service.jobs.schemas import Job, JobCreate
from service.jobs.store import JobStore
from service.limits import BIGINT_MAX
from service.store.engine import driver_connection

JobId = Annotated[
    int, PathParameter(ge=1, le=BIGINT_MAX, description="Ingestion job id.")
]
Engine = NamedDependency[AsyncEngine]


class WorkerController(Controller):
    """Endpoints that a backend and its workers call."""

    guards = [require_scope("worker")]  # noqa: RUF012 - Litestar reads this class attribute
    tags = ["worker"]  # noqa: RUF012 - Litestar reads this class attribute
    security = WORKER_SECURITY

    @post(
        "/ingestion-jobs",
        summary="Register a job",
        description="201 with a new job; 200 with the existing one when the collection "
        "already has a job with this external_id.",
        responses={
            200: ResponseSpec(
                Job, description="The job already registered under external_id."
            ),
            **errors(400, 401, 403, 413, 503),
        },
    )
    async def register(
        self,
        request: Request[Any, Any, Any],
        jobs: NamedDependency[JobStore],
        data: JSONBody[JobCreate],
    ) -> Response[Job]:
        job, created = await jobs.register(data, actor(request, "worker"))
        return Response(job, status_code=201 if created else 200)

    @post(
        "/ingestion-jobs/{job_id:int}/events",
        status_code=200,
        summary="Report one event",
        description="200 also when the event changes nothing: then applied is false "
        "and reason is duplicate, stale_attempt or job_terminal.",
        responses=errors(400, 401, 403, 404, 409, 413, 503),
    )
    async def report_event(
        self,
        request: Request[Any, Any, Any],
        engine: Engine,
        job_id: JobId,
        data: JSONBody[Event],
    ) -> EventResult:
        async with driver_connection(engine) as connection, connection.transaction():
            outcome = await apply_event(
                connection, job_id, data, actor(request, "worker")
            )
        return EventResult(
            applied=outcome.applied,
            reason=outcome.reason,
            cancel_requested=outcome.cancel_requested,
            job=job_from_row(outcome.row),
        )

    @post(
        "/ingestion-events",
        status_code=200,
        summary="Report events of many jobs",
        description="Applies the events in order in one transaction. An unknown job "
        "or an attempt ahead of the job fails only its own event: reason not_found "
        "or attempt_ahead, with a detail.",
        responses=errors(400, 401, 403, 413, 503),
    )
    async def report_events(
        self,
        request: Request[Any, Any, Any],
        engine: Engine,
        data: JSONBody[EventBatch],
    ) -> BatchResult:
        results: list[BatchItemResult] = []
        reporter = actor(request, "worker")
        async with driver_connection(engine) as connection, connection.transaction():
            await lock_jobs(connection, sorted({event.job_id for event in data.events}))
            for event in data.events:
                results.append(await _apply_in_batch(connection, event, reporter))
        return BatchResult(results=results)


async def _apply_in_batch(
    connection: asyncpg.Connection, event: BatchEvent, reporter: str
) -> BatchItemResult:
    """Apply one event of a batch; an unknown job or attempt fails only that event."""
    try:
        outcome = await apply_event(connection, event.job_id, event, reporter)
    except JobNotFound as exc:
        return BatchItemResult(
            job_id=event.job_id,
            applied=False,
            reason="not_found",
            cancel_requested=False,
            detail=exc.detail,
        )
    except StateConflict as exc:
        return BatchItemResult(
            job_id=event.job_id,
            applied=False,
            reason="attempt_ahead",
            cancel_requested=False,
            detail=exc.detail,
        )
    return BatchItemResult(
        job_id=event.job_id,
        applied=outcome.applied,
        reason=outcome.reason,
        cancel_requested=outcome.cancel_requested,
    )
