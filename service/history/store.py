"""SQL for reading a job's history with a summary of each of its attempts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.errors import JobNotFound
from service.history.schemas import AttemptSummary, HistoryEntry, JobHistory
from service.store.tables import history, jobs

logger = structlog.get_logger(__name__)

_ENTRY_COLUMNS = (
    history.c.id,
    history.c.attempt,
    history.c.seq,
    history.c.type,
    history.c.actor,
    history.c.status,
    history.c.changes,
    history.c.occurred_at,
    history.c.received_at,
)


def _snapshot_time(
    snapshot: sa.ColumnElement[Any], field: str
) -> sa.ColumnElement[Any]:
    """Read a timestamp field of a job snapshot, which stores it as RFC 3339 text."""
    return sa.cast(snapshot[field].as_string(), sa.DateTime(timezone=True))


def _attempt_summaries(job_id: int) -> sa.Select[Any]:
    """Select each attempt's entry count and the job as its latest entry left it."""
    ranked = (
        sa.select(
            history.c.attempt,
            history.c.job,
            sa.func.count().over(partition_by=history.c.attempt).label("entries"),
            sa.func.row_number()
            .over(partition_by=history.c.attempt, order_by=history.c.id.desc())
            .label("newest_first"),
        )
        .where(history.c.job_id == job_id)
        .subquery()
    )
    # Only the latest row's snapshot is parsed, because the filter runs first.
    snapshot = ranked.c.job
    return (
        sa.select(
            ranked.c.attempt,
            snapshot["status"].as_string().label("status"),
            _snapshot_time(snapshot, "processing_started_at").label("started_at"),
            _snapshot_time(snapshot, "processing_completed_at").label("ended_at"),
            snapshot["error_message"].as_string().label("error_message"),
            snapshot[("error_details", "exception_type")]
            .as_string()
            .label("error_type"),
            ranked.c.entries,
        )
        .where(ranked.c.newest_first == 1)
        .order_by(ranked.c.attempt)
    )


def _summary(row: RowMapping) -> AttemptSummary:
    return AttemptSummary(
        attempt=row["attempt"],
        status=row["status"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        error_message=row["error_message"],
        error_type=row["error_type"],
        entries=row["entries"],
    )


def _error_type(details: Any) -> str | None:
    if not isinstance(details, dict):
        return None
    value = details.get("exception_type")
    return value if isinstance(value, str) else None


def summarise_attempts(
    job: RowMapping, recorded: Sequence[RowMapping]
) -> list[AttemptSummary]:
    """Summarise attempts 1 to the job's current one, oldest first.

    The current attempt is read from the job row. In the same snapshot it matches
    the attempt's latest entry, and it also exists for a job registered before
    history was kept. An earlier attempt without entries ended failed, because only
    a failed job can be retried.
    """
    by_attempt = {row["attempt"]: _summary(row) for row in recorded}
    summaries: list[AttemptSummary] = []
    for attempt in range(1, job["attempt"]):
        earlier = by_attempt.get(attempt)
        if earlier is None:
            earlier = AttemptSummary(
                attempt=attempt,
                status="failed",
                started_at=None,
                ended_at=None,
                error_message=None,
                error_type=None,
                entries=0,
            )
        summaries.append(earlier)

    current = by_attempt.get(job["attempt"])
    summaries.append(
        AttemptSummary(
            attempt=job["attempt"],
            status=job["status"],
            started_at=job["processing_started_at"],
            ended_at=job["processing_completed_at"],
            error_message=job["error_message"],
            error_type=_error_type(job["error_details"]),
            entries=0 if current is None else current.entries,
        )
    )
    return summaries


class HistoryStore:
    """History queries over one engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        # The job, the summaries and the page come from one snapshot, so they agree.
        self._reader = engine.execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )

    async def read(
        self,
        collection_id: int,
        job_id: int,
        *,
        attempt: int | None,
        after: int | None,
        limit: int,
    ) -> JobHistory:
        """Return the job's attempts and up to ``limit`` entries after ``after``.

        Raises JobNotFound for an unknown job or a job of another collection.
        """
        async with self._reader.connect() as connection:
            job = await _read_job(connection, collection_id, job_id)
            result = await connection.execute(_attempt_summaries(job_id))
            recorded = result.mappings().all()
            rows = await _read_page(connection, job_id, attempt, after, limit + 1)

        has_more = len(rows) > limit
        items = [HistoryEntry(**row) for row in rows[:limit]]
        logger.debug(
            "job_history_read", job_id=job_id, entries=len(items), has_more=has_more
        )
        return JobHistory(
            job_id=job_id,
            collection_id=collection_id,
            attempts=job["attempt"],
            by_attempt=summarise_attempts(job, recorded),
            items=items,
            has_more=has_more,
            next_after=items[-1].id if items else after,
        )


async def _read_job(
    connection: AsyncConnection, collection_id: int, job_id: int
) -> RowMapping:
    statement = sa.select(
        jobs.c.attempt,
        jobs.c.status,
        jobs.c.processing_started_at,
        jobs.c.processing_completed_at,
        jobs.c.error_message,
        jobs.c.error_details,
    ).where(jobs.c.id == job_id, jobs.c.collection_id == collection_id)
    row = (await connection.execute(statement)).mappings().first()
    if row is None:
        raise JobNotFound(job_id, collection_id)
    return row


async def _read_page(
    connection: AsyncConnection,
    job_id: int,
    attempt: int | None,
    after: int | None,
    limit: int,
) -> Sequence[RowMapping]:
    conditions = [history.c.job_id == job_id]
    if attempt is not None:
        conditions.append(history.c.attempt == attempt)
    if after is not None:
        conditions.append(history.c.id > after)
    statement = (
        sa.select(*_ENTRY_COLUMNS)
        .where(*conditions)
        .order_by(history.c.id)
        .limit(limit)
    )
    return (await connection.execute(statement)).mappings().all()
