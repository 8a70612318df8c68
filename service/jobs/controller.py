"""Frontend endpoints: list, read, summarise, retry and cancel a collection's jobs."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import Body, FromQuery, PathParameter, QueryParameter

from service.auth import actor, require_scope
from service.errors import InvalidInput, ServiceUnavailable
from service.http.conditional import (
    CONDITIONAL_GET,
    ETAG_HEADERS,
    NOT_MODIFIED,
    Conditional,
)
from service.http.openapi import API_SECURITY, errors
from service.jobs.schemas import (
    JOB_STATUSES,
    CollectionStatus,
    Job,
    JobPage,
    JobStatus,
    RetryRequest,
    SortField,
    SortOrder,
)
from service.jobs.store import JobStore
from service.limits import BIGINT_MAX
from service.retries.store import RetryStore, not_retryable

CollectionId = Annotated[
    int, PathParameter(ge=1, le=BIGINT_MAX, description="Collection id.")
]
JobId = Annotated[
    int, PathParameter(ge=1, le=BIGINT_MAX, description="Ingestion job id.")
]
Jobs = NamedDependency[JobStore]
Retries = NamedDependency[RetryStore]


def parse_statuses(values: list[str] | None) -> list[JobStatus]:
    """Read ``status`` given once comma-separated, repeated, or both."""
    statuses: list[JobStatus] = []
    for value in values or []:
        for name in value.split(","):
            name = name.strip()
            if not name:
                continue
            if name not in JOB_STATUSES:
                raise InvalidInput(
                    f"Invalid query parameter status: {name!r} is not a job status; "
                    f"allowed values: {', '.join(JOB_STATUSES)}"
                )
            statuses.append(name)
    return statuses


class CollectionJobsController(Controller):
    """Jobs of one collection, as a frontend reads and steers them."""

    path = "/collections/{collection_id:int}"
    guards = [require_scope("api")]  # noqa: RUF012 - Litestar reads this class attribute
    tags = ["jobs"]  # noqa: RUF012 - Litestar reads this class attribute
    security = API_SECURITY

    @get(
        "/ingestion-jobs",
        summary="List a collection's ingestion jobs",
        description="Pages never skip or repeat a job: ties in the sort break on id.",
        dependencies=CONDITIONAL_GET,
        response_headers=ETAG_HEADERS,
        responses={**NOT_MODIFIED, **errors(400, 401, 403, 503)},
    )
    async def list_jobs(
        self,
        jobs: Jobs,
        conditional: Conditional,
        collection_id: CollectionId,
        status: Annotated[
            list[str] | None,
            QueryParameter(
                description="One status, several comma-separated, or repeated."
            ),
        ] = None,
        limit: Annotated[
            int, QueryParameter(ge=1, le=200, description="Page size.")
        ] = 50,
        offset: Annotated[
            int, QueryParameter(ge=0, le=BIGINT_MAX, description="Jobs to skip.")
        ] = 0,
        sort_by: FromQuery[SortField] = "created_at",
        sort_order: FromQuery[SortOrder] = "desc",
    ) -> Response[JobPage]:
        page = await jobs.list(
            collection_id,
            statuses=parse_statuses(status),
            limit=limit,
            offset=offset,
            sort_by=sort_by,
            sort_order=sort_order,
        )
        return conditional.respond(page)

    @get(
        "/ingestion-jobs/{job_id:int}",
        summary="Read one ingestion job",
        dependencies=CONDITIONAL_GET,
        response_headers=ETAG_HEADERS,
        responses={**NOT_MODIFIED, **errors(400, 401, 403, 404, 503)},
    )
    async def get_job(
        self,
        jobs: Jobs,
        conditional: Conditional,
        collection_id: CollectionId,
        job_id: JobId,
    ) -> Response[Job]:
        return conditional.respond(await jobs.get(collection_id, job_id))

    @get(
        "/ingestion-status",
        summary="Summarise a collection's ingestion",
        dependencies=CONDITIONAL_GET,
        response_headers=ETAG_HEADERS,
        responses={**NOT_MODIFIED, **errors(400, 401, 403, 503)},
    )
    async def get_status(
        self, jobs: Jobs, conditional: Conditional, collection_id: CollectionId
    ) -> Response[CollectionStatus]:
        return conditional.respond(await jobs.summary(collection_id))

    @post(
        "/ingestion-jobs/{job_id:int}/retry",
        status_code=200,
        summary="Retry a failed job",
        description="Moves the job to pending as attempt + 1 and forwards it to the "
        "backend's ingest API. 503 without Retry-After when TRACKER_BACKEND_URL is "
        "not set.",
        responses=errors(400, 401, 403, 404, 409, 413, 503),
    )
    async def retry_job(
        self,
        request: Request[Any, Any, Any],
        jobs: Jobs,
        retries: Retries,
        collection_id: CollectionId,
        job_id: JobId,
        data: Annotated[
            RetryRequest | None, Body(description="Optional overrides.")
        ] = None,
    ) -> Job:
        dispatcher = request.app.state.dispatcher
        if dispatcher is None:
            # A job that could not be retried anyway gets its 404 or 409 first.
            job = await jobs.get(collection_id, job_id)
            if job.status != "failed":
                raise not_retryable(job_id, job.status)
            raise ServiceUnavailable(
                "Retries cannot be forwarded because TRACKER_BACKEND_URL is not set; "
                "an operator must set it to the backend's base URL and restart the "
                "tracker",
                retry_after=None,
            )
        overrides = data.override_params if data is not None else None
        job = await retries.request_retry(
            collection_id, job_id, overrides, actor(request, "api")
        )
        dispatcher.wake()
        return job

    @post(
        "/ingestion-jobs/{job_id:int}/cancel",
        status_code=200,
        summary="Cancel a pending or processing job",
        description="The job is cancelled at once and shows cancel_requested_at. The "
        "worker learns it from the response to its next event and confirms it with a "
        "cancelled event, which sets cancel_acknowledged_at.",
        responses=errors(400, 401, 403, 404, 409, 503),
    )
    async def cancel_job(
        self,
        request: Request[Any, Any, Any],
        jobs: Jobs,
        collection_id: CollectionId,
        job_id: JobId,
    ) -> Job:
        return await jobs.cancel(collection_id, job_id, actor(request, "api"))
