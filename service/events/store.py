"""Apply worker events to jobs, each as one conditional UPDATE."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from service.errors import JobNotFound, StateConflict
from service.events.schemas import Event, IgnoredReason
from service.limits import (
    ERROR_MESSAGE_MAX_CHARS,
    PROGRESS_MESSAGE_MAX_CHARS,
    bound_error_details,
    bound_stats,
    truncate,
)
from service.store.tables import jobs

logger = structlog.get_logger(__name__)

ACTIVE = ("pending", "processing")
STATUS_CHANGES = {"started", "completed", "failed", "cancelled", "deleted"}
DEFAULT_ERROR_MESSAGE = "The worker reported a failure without a message"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one event did to its job."""

    applied: bool
    reason: IgnoredReason | None
    row: RowMapping

    @property
    def cancel_requested(self) -> bool:
        return self.row["cancel_requested_at"] is not None


def _occurred(event: Event) -> sa.ColumnElement[Any]:
    """Return the event time, never later than the database clock."""
    if event.occurred_at is None:
        return sa.func.now()
    moment = event.occurred_at
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return sa.func.least(sa.literal(moment, sa.DateTime(timezone=True)), sa.func.now())


def _changes(event: Event) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Return the column updates for ``event`` and the statuses it may start from."""
    occurred = _occurred(event)
    started = sa.func.coalesce(jobs.c.processing_started_at, occurred)
    message = (
        None
        if event.message is None
        else truncate(event.message, PROGRESS_MESSAGE_MAX_CHARS)
    )
    kind = event.type

    if kind == "heartbeat":
        return {}, ACTIVE
    if kind in {"started", "progress"}:
        values: dict[str, Any] = {
            "status": "processing",
            "processing_started_at": started,
        }
        if event.current is not None:
            values["progress_current"] = event.current
        if event.total is not None:
            values["progress_total"] = event.total
        if message is not None:
            values["progress_message"] = message
        return values, ACTIVE
    if kind == "completed":
        values = {
            "status": "completed",
            "processing_started_at": started,
            "processing_completed_at": occurred,
        }
        if event.document_count is not None:
            values["document_count"] = event.document_count
        if event.processing_stats is not None:
            values["processing_stats"] = bound_stats(event.processing_stats)
        if message is not None:
            values["progress_message"] = message
        return values, ACTIVE
    if kind == "failed":
        values = {
            "status": "failed",
            "processing_completed_at": occurred,
            "error_message": truncate(
                event.error_message or DEFAULT_ERROR_MESSAGE, ERROR_MESSAGE_MAX_CHARS
            ),
            "error_details": (
                None
                if event.error_details is None
                else bound_error_details(event.error_details)
            ),
        }
        return values, ACTIVE
    if kind == "cancelled":
        return {"status": "cancelled", "processing_completed_at": occurred}, ACTIVE
    # deleted: any status but deleted itself may move there.
    return {"status": "deleted"}, (
        "pending",
        "processing",
        "completed",
        "failed",
        "cancelled",
    )


async def apply_event(
    connection: AsyncConnection, job_id: int, event: Event
) -> Outcome:
    """Apply ``event`` to job ``job_id`` if its attempt, seq and status allow it.

    Raises JobNotFound for an unknown job and StateConflict for an attempt the job has
    not reached. Other events that change nothing return an Outcome with a reason.
    """
    values, allowed_from = _changes(event)
    values["last_event_at"] = sa.func.now()
    if event.type != "heartbeat":
        values["updated_at"] = sa.func.now()
    if event.seq is not None:
        values["last_seq"] = event.seq

    conditions = [jobs.c.id == job_id, jobs.c.status.in_(allowed_from)]
    if event.attempt is not None:
        conditions.append(jobs.c.attempt == event.attempt)
    if event.seq is not None:
        conditions.append(
            sa.or_(jobs.c.last_seq.is_(None), jobs.c.last_seq < event.seq)
        )

    statement = sa.update(jobs).where(*conditions).values(values).returning(*jobs.c)
    row = (await connection.execute(statement)).mappings().first()
    if row is not None:
        _log_applied(job_id, event, row)
        return Outcome(applied=True, reason=None, row=row)

    current = (
        (await connection.execute(sa.select(jobs).where(jobs.c.id == job_id)))
        .mappings()
        .first()
    )
    if current is None:
        raise JobNotFound(job_id)
    reason = _ignored_reason(event, current)
    logger.info(
        "event_ignored",
        job_id=job_id,
        attempt=current["attempt"],
        event_type=event.type,
        event_attempt=event.attempt,
        seq=event.seq,
        reason=reason,
    )
    return Outcome(applied=False, reason=reason, row=current)


def _ignored_reason(event: Event, current: RowMapping) -> IgnoredReason:
    """Explain why the conditional UPDATE matched no row, from the job as it is now."""
    if event.attempt is not None and event.attempt < current["attempt"]:
        return "stale_attempt"
    if event.attempt is not None and event.attempt > current["attempt"]:
        raise StateConflict(
            f"Event attempt {event.attempt} is ahead of ingestion job {current['id']}, "
            f"which is at attempt {current['attempt']}; report the job's current "
            "attempt"
        )
    if current["status"] not in ACTIVE:
        return "job_terminal"
    # The only guard left is seq: it was not above the last applied one.
    return "duplicate"


def _log_applied(job_id: int, event: Event, row: RowMapping) -> None:
    log = logger.info if event.type in STATUS_CHANGES else logger.debug
    log(
        "event_applied",
        job_id=job_id,
        attempt=row["attempt"],
        event_type=event.type,
        seq=event.seq,
        status=row["status"],
    )
