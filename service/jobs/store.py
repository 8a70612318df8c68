"""SQL for registering, reading, listing, summarising and cancelling jobs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy import RowMapping
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.errors import InvalidInput, JobNotFound, StateConflict
from service.history.causes import UNKNOWN_TYPE
from service.history.recorder import Change, record
from service.jobs.records import job_from_row
from service.jobs.schemas import (
    CollectionStatus,
    FailureGroup,
    Job,
    JobCreate,
    JobPage,
    JobStatus,
    ProcessingDurations,
    SortField,
    SortOrder,
    StatusCounts,
)
from service.limits import PARAMS_MAX_BYTES, clean_json, clean_text, encoded_size
from service.store.engine import driver_connection, driver_of
from service.store.tables import SELECT_JOB, history, jobs

logger = structlog.get_logger(__name__)

SELECT_JOB_IN_COLLECTION = f"{SELECT_JOB} AND collection_id = $2"

RECENT_FAILURES = 5
FAILURE_GROUPS = 10
# The summary's failure groups and durations cover this window up to the database
# clock at the start of the summary's transaction.
SUMMARY_WINDOW = sa.text("interval '24 hours'")
_TEXT_FIELDS = (
    "collection_name",
    "owner",
    "original_filename",
    "file_path",
    "file_url",
    "content_type",
    "plugin_name",
    "external_id",
)


def check_plugin_params(params: dict[str, Any], field: str) -> dict[str, Any]:
    """Return ``params`` without NULs; raise InvalidInput when it is over the limit."""
    if encoded_size(params) > PARAMS_MAX_BYTES:
        raise InvalidInput(
            f"Invalid {field}: encoded size exceeds {PARAMS_MAX_BYTES} bytes"
        )
    cleaned: dict[str, Any] = clean_json(params)
    return cleaned


def check_urls(params: dict[str, Any], field: str) -> None:
    """Raise InvalidInput unless ``params`` has no urls or a non-empty list of them."""
    urls = params.get("urls")
    if urls is None:
        return
    if isinstance(urls, list) and urls and all(isinstance(u, str) and u for u in urls):
        return
    raise InvalidInput(
        f"Invalid {field}: expected a non-empty list of URL strings, which a retry of "
        "a url job re-submits"
    )


def _timeouts(data: JobCreate, defaults: Timeouts) -> tuple[int, int]:
    """Return the stall and heartbeat timeouts of a new job."""
    stall = data.stall_timeout_seconds or defaults.stall_seconds
    heartbeat = data.heartbeat_timeout_seconds
    if heartbeat is None:
        return stall, max(defaults.heartbeat_seconds, stall)
    if heartbeat < stall:
        raise InvalidInput(
            f"Invalid heartbeat_timeout_seconds: {heartbeat} is below the stall "
            f"timeout of {stall} s; it must be at least stall_timeout_seconds, "
            "because a job is flagged stalled before it is failed"
        )
    return stall, heartbeat


def _registration_values(data: JobCreate, defaults: Timeouts) -> dict[str, Any]:
    if data.source == "url" and not (data.file_url or data.plugin_params.get("urls")):
        raise InvalidInput(
            "Invalid file_url: a job with source 'url' needs file_url or "
            "plugin_params.urls, which a retry re-submits"
        )
    if data.source == "url":
        check_urls(data.plugin_params, "plugin_params.urls")
    values: dict[str, Any] = {
        "collection_id": data.collection_id,
        "file_size": data.file_size,
        "plugin_params": check_plugin_params(data.plugin_params, "plugin_params"),
        "source": data.source,
        "status": data.status,
    }
    values["stall_timeout_seconds"], values["heartbeat_timeout_seconds"] = _timeouts(
        data, defaults
    )
    for field in _TEXT_FIELDS:
        value = getattr(data, field)
        values[field] = None if value is None else clean_text(value)
    if data.status == "processing":
        values["processing_started_at"] = sa.func.now()
        values["last_event_at"] = sa.func.now()
    return values


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Liveness timeouts of jobs registered without their own."""

    stall_seconds: int = 60
    heartbeat_seconds: int = 600


async def lock_job(
    connection: AsyncConnection, job_id: int, collection_id: int
) -> RowMapping:
    """Lock a job's row for the transaction and return it; raise JobNotFound."""
    statement = (
        sa.select(jobs)
        .where(jobs.c.id == job_id, jobs.c.collection_id == collection_id)
        .with_for_update()
    )
    row = (await connection.execute(statement)).mappings().first()
    if row is None:
        raise JobNotFound(job_id, collection_id)
    return row


def _failure_groups(collection_id: int) -> sa.Select[Any]:
    """Select the largest groups of failed attempts received within the window."""
    failures = sa.func.count().label("failures")
    last_failed_at = sa.func.max(history.c.received_at).label("last_failed_at")
    newest_first = aggregate_order_by(
        history.c.job_id, history.c.received_at.desc(), history.c.id.desc()
    )
    newest_job_id = sa.func.array_agg(newest_first)[1].label("newest_job_id")
    return (
        sa.select(
            sa.func.coalesce(history.c.error_type, UNKNOWN_TYPE).label(
                "exception_type"
            ),
            history.c.error_cause.label("message"),
            failures,
            newest_job_id,
            last_failed_at,
        )
        # The error_cause condition lets PostgreSQL use the partial index
        # ix_ingestion_job_history_failures.
        .where(
            history.c.collection_id == collection_id,
            history.c.error_cause.is_not(None),
            history.c.received_at >= sa.func.now() - SUMMARY_WINDOW,
        )
        .group_by(history.c.error_type, history.c.error_cause)
        .order_by(
            failures.desc(),
            last_failed_at.desc(),
            newest_job_id.desc(),
            history.c.error_cause,
        )
        .limit(FAILURE_GROUPS)
    )


def _processing_durations(collection_id: int) -> sa.Select[Any]:
    """Select the number and duration percentiles of completions in the window."""
    elapsed = jobs.c.processing_completed_at - jobs.c.processing_started_at
    # Clamped at zero like a job's processing_duration_seconds.
    seconds = sa.cast(sa.func.greatest(sa.extract("epoch", elapsed), 0), sa.Double)
    return sa.select(
        sa.func.count().label("completed_jobs"),
        sa.func.percentile_cont(0.5).within_group(seconds).label("p50"),
        sa.func.percentile_cont(0.95).within_group(seconds).label("p95"),
    ).where(
        jobs.c.collection_id == collection_id,
        jobs.c.status == "completed",
        jobs.c.processing_completed_at >= sa.func.now() - SUMMARY_WINDOW,
    )


def _failure_group(row: sa.Row[Any]) -> FailureGroup:
    return FailureGroup(
        exception_type=row.exception_type,
        message=row.message,
        count=row.failures,
        newest_job_id=row.newest_job_id,
        last_failed_at=row.last_failed_at,
    )


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class JobStore:
    """Job queries over one engine."""

    def __init__(self, engine: AsyncEngine, timeouts: Timeouts | None = None) -> None:
        self._engine = engine
        self._timeouts = timeouts or Timeouts()
        # Total and page (or counts and lists) come from one snapshot, so they agree.
        self._reader = engine.execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )

    async def register(self, data: JobCreate, actor: str) -> tuple[Job, bool]:
        """Insert a job, or return the one already registered under its external_id.

        Returns the job and whether it was created by this call.
        """
        values = _registration_values(data, self._timeouts)
        statement = (
            pg_insert(jobs)
            .values(values)
            .on_conflict_do_nothing(
                index_elements=[jobs.c.collection_id, jobs.c.external_id]
            )
            .returning(*jobs.c)
        )
        async with self._engine.begin() as connection:
            row = (await connection.execute(statement)).mappings().first()
            if row is None:
                existing = sa.select(jobs).where(
                    jobs.c.collection_id == data.collection_id,
                    jobs.c.external_id == values["external_id"],
                )
                row = (await connection.execute(existing)).mappings().one()
                logger.info(
                    "job_already_registered", job_id=row["id"], attempt=row["attempt"]
                )
                return job_from_row(row), False
            change = Change(type="registered", actor=actor)
            await record(await driver_of(connection), change, row, None)

        logger.info(
            "job_registered",
            job_id=row["id"],
            attempt=row["attempt"],
            collection_id=row["collection_id"],
            status=row["status"],
        )
        return job_from_row(row), True

    async def get(self, collection_id: int, job_id: int) -> Job:
        """Return one job of a collection, or raise JobNotFound."""
        # The busiest read, so it runs as prepared SQL like the events.
        async with driver_connection(self._engine) as connection:
            row = await connection.fetchrow(
                SELECT_JOB_IN_COLLECTION, job_id, collection_id
            )
        if row is None:
            raise JobNotFound(job_id, collection_id)
        return job_from_row(row)

    async def list(
        self,
        collection_id: int,
        *,
        statuses: Sequence[JobStatus],
        limit: int,
        offset: int,
        sort_by: SortField,
        sort_order: SortOrder,
    ) -> JobPage:
        """Return one page of a collection's jobs with the total that match."""
        conditions = [jobs.c.collection_id == collection_id]
        if statuses:
            conditions.append(jobs.c.status.in_(statuses))
        column = jobs.c[sort_by]
        order = (
            (column.asc(), jobs.c.id.asc())
            if sort_order == "asc"
            else (
                column.desc(),
                jobs.c.id.desc(),
            )
        )
        page = (
            sa.select(jobs)
            .where(*conditions)
            .order_by(*order)
            .limit(limit)
            .offset(offset)
        )
        count = sa.select(sa.func.count()).select_from(jobs).where(*conditions)

        async with self._reader.connect() as connection:
            total = (await connection.execute(count)).scalar_one()
            rows = (await connection.execute(page)).mappings().all()

        items = [job_from_row(row) for row in rows]
        return JobPage(
            total=total,
            items=items,
            limit=limit,
            offset=offset,
            has_more=offset + len(items) < total,
        )

    async def summary(self, collection_id: int) -> CollectionStatus:
        """Count a collection's jobs by status and pick the ones that need attention."""
        in_collection = jobs.c.collection_id == collection_id
        counts = (
            sa.select(
                jobs.c.status,
                sa.func.count().label("jobs"),
                sa.func.count().filter(jobs.c.stalled_at.is_not(None)).label("stalled"),
            )
            .where(in_collection)
            .group_by(jobs.c.status)
        )
        name = (
            sa.select(jobs.c.collection_name)
            .where(in_collection, jobs.c.collection_name.is_not(None))
            .order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
            .limit(1)
        )
        failures = (
            sa.select(jobs)
            .where(in_collection, jobs.c.status == "failed")
            .order_by(jobs.c.updated_at.desc(), jobs.c.id.desc())
            .limit(RECENT_FAILURES)
        )
        oldest = (
            sa.select(jobs)
            .where(in_collection, jobs.c.status == "processing")
            .order_by(jobs.c.processing_started_at.asc().nulls_last(), jobs.c.id.asc())
            .limit(1)
        )

        # One snapshot, and one value of now() for both 24-hour windows.
        async with self._reader.connect() as connection:
            rows = (await connection.execute(counts)).all()
            by_status: dict[str, int] = {row.status: row.jobs for row in rows}
            collection_name = (await connection.execute(name)).scalar_one_or_none()
            failed_rows = (await connection.execute(failures)).mappings().all()
            oldest_row = (await connection.execute(oldest)).mappings().first()
            group_rows = (
                await connection.execute(_failure_groups(collection_id))
            ).all()
            durations = (
                await connection.execute(_processing_durations(collection_id))
            ).one()

        return CollectionStatus(
            collection_id=collection_id,
            collection_name=collection_name,
            total_jobs=sum(by_status.values()),
            by_status=StatusCounts(**by_status),
            currently_processing=by_status.get("processing", 0),
            stalled=sum(row.stalled for row in rows if row.status == "processing"),
            recent_failures=[job_from_row(row) for row in failed_rows],
            failures_last_24h=[_failure_group(row) for row in group_rows],
            oldest_processing_job=None
            if oldest_row is None
            else job_from_row(oldest_row),
            processing_duration_last_24h=ProcessingDurations(
                completed_jobs=durations.completed_jobs,
                p50_seconds=_seconds(durations.p50),
                p95_seconds=_seconds(durations.p95),
            ),
        )

    async def cancel(self, collection_id: int, job_id: int, actor: str) -> Job:
        """Cancel a pending or processing job, else raise StateConflict."""
        statement = (
            sa.update(jobs)
            .where(
                jobs.c.id == job_id,
                jobs.c.collection_id == collection_id,
                jobs.c.status.in_(("pending", "processing")),
            )
            .values(
                status="cancelled",
                stalled_at=None,
                cancel_requested_at=sa.func.now(),
                processing_completed_at=sa.func.now(),
                updated_at=sa.func.now(),
            )
            .returning(*jobs.c)
        )
        async with self._engine.begin() as connection:
            old = await lock_job(connection, job_id, collection_id)
            row = (await connection.execute(statement)).mappings().first()
            if row is None:
                raise StateConflict(
                    f"Ingestion job {job_id} is {old['status']}; only pending or "
                    "processing jobs can be cancelled"
                )
            change = Change(type="cancel", actor=actor)
            await record(await driver_of(connection), change, row, old)

        logger.info("job_cancelled", job_id=job_id, attempt=row["attempt"])
        return job_from_row(row)
