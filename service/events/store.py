"""Apply worker events to jobs, each as one conditional UPDATE."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec
import structlog

from service.errors import JobNotFound, StateConflict
from service.events import sql
from service.events.schemas import Event, IgnoredReason
from service.history.recorder import Change, OldRow, record
from service.jobs.records import Row
from service.limits import (
    ERROR_MESSAGE_MAX_CHARS,
    PROGRESS_MESSAGE_MAX_CHARS,
    bound_error_details,
    bound_stats,
    truncate,
)
from service.store.tables import SELECT_JOB

logger = structlog.get_logger(__name__)

LOCK_JOBS = "SELECT 1 FROM ingestion_jobs WHERE id = ANY($1) ORDER BY id FOR UPDATE"
STATUS_CHANGES = {"started", "completed", "failed", "cancelled", "deleted"}
DEFAULT_ERROR_MESSAGE = "The worker reported a failure without a message"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The effect of one event on its job."""

    applied: bool
    reason: IgnoredReason | None
    row: Row

    @property
    def cancel_requested(self) -> bool:
        return self.row["cancel_requested_at"] is not None


def _json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else msgspec.json.encode(value).decode()


def _values(job_id: int, event: Event) -> dict[str, Any]:
    """Return the statement parameters of ``event``, cut to the stored limits."""
    message = event.message
    error_details = event.error_details
    stats = event.processing_stats
    return {
        "job_id": job_id,
        "attempt": event.attempt,
        "seq": event.seq,
        "occurred": event.occurred_at,
        "current": event.current,
        "total": event.total,
        "message": None
        if message is None
        else truncate(message, PROGRESS_MESSAGE_MAX_CHARS),
        "document_count": event.document_count,
        "processing_stats": _json(None if stats is None else bound_stats(stats)),
        "error_message": truncate(
            event.error_message or DEFAULT_ERROR_MESSAGE, ERROR_MESSAGE_MAX_CHARS
        ),
        "error_details": _json(
            None if error_details is None else bound_error_details(error_details)
        ),
    }


async def lock_jobs(connection: asyncpg.Connection, job_ids: list[int]) -> None:
    """Lock the rows of a batch in id order, so concurrent batches cannot deadlock."""
    await connection.execute(LOCK_JOBS, job_ids)


async def apply_event(
    connection: asyncpg.Connection, job_id: int, event: Event, actor: str
) -> Outcome:
    """Apply ``event`` to job ``job_id`` if its attempt, seq and status allow it.

    Must run inside a transaction, which an applied event's history row joins.
    Raises JobNotFound for an unknown job and StateConflict for an attempt the job has
    not reached. Other events that change nothing return an Outcome with a reason.
    """
    statement, names = sql.update_statement(
        event.type, has_attempt=event.attempt is not None, has_seq=event.seq is not None
    )
    values = _values(job_id, event)
    row = await connection.fetchrow(statement, *sql.arguments(names, values))
    if row is not None:
        change = Change(
            type=event.type, actor=actor, seq=event.seq, occurred_at=event.occurred_at
        )
        await record(connection, change, row, OldRow(row))
        _log_applied(job_id, event, row)
        return Outcome(applied=True, reason=None, row=row)

    current = await connection.fetchrow(SELECT_JOB, job_id)
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


def _ignored_reason(event: Event, current: Row) -> IgnoredReason:
    """Explain why the conditional UPDATE matched no row, from the job as it is now."""
    if event.attempt is not None and event.attempt < current["attempt"]:
        return "stale_attempt"
    if event.attempt is not None and event.attempt > current["attempt"]:
        raise StateConflict(
            f"Event attempt {event.attempt} is ahead of ingestion job {current['id']}, "
            f"which is at attempt {current['attempt']}; report the job's current "
            "attempt"
        )
    if current["status"] not in sql.ALLOWED_FROM[event.type]:
        # An acknowledged cancel, or any other terminal job.
        return "job_terminal"
    # The only guard left is seq: it was not above the last applied one.
    return "duplicate"


def _log_applied(job_id: int, event: Event, row: Row) -> None:
    log = logger.info if event.type in STATUS_CHANGES else logger.debug
    log(
        "event_applied",
        job_id=job_id,
        attempt=row["attempt"],
        event_type=event.type,
        seq=event.seq,
        status=row["status"],
    )
