"""SQL of the liveness sweep: flag silent processing jobs stalled, fail dead ones.

A job's silence is the time since its last event, or since it started processing when
no event arrived yet, in whole seconds. Every function runs inside the caller's
transaction, which must hold the sweep lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg
import msgspec

from service.history.recorder import TRACKER_ACTOR, Change, record
from service.store.tables import JOB_COLUMNS

# A fixed 64-bit key of its own, so sweeps never contend with MIGRATION_LOCK_KEY.
SWEEP_LOCK_KEY = 7_304_618_230_114_522

TRY_LOCK = "SELECT pg_try_advisory_xact_lock($1)"
# The sweep's "now": an injected clock's time, else the database clock, because
# last_event_at is written with the database clock.
SWEEP_TIME = "SELECT COALESCE($1::timestamptz, now())"

# $3 is when the tracker started watching; silence before it is not counted, because
# workers could not report while no tracker was reachable.
_SILENT_SECONDS = (
    "floor(extract(epoch FROM $1::timestamptz - GREATEST("
    "COALESCE(last_event_at, processing_started_at, updated_at), "
    "$3::timestamptz)))::bigint"
)
# Candidates are locked with SKIP LOCKED, so a job that an event is updating right now
# is left to the next sweep, which reads the job after that event.
SELECT_TIMED_OUT = (
    f"SELECT {JOB_COLUMNS}, {_SILENT_SECONDS} AS silent_seconds "  # noqa: S608
    "FROM ingestion_jobs WHERE status = 'processing' "
    f"AND {_SILENT_SECONDS} > heartbeat_timeout_seconds "
    "ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED"
)
SELECT_STALLED = (
    f"SELECT {JOB_COLUMNS}, {_SILENT_SECONDS} AS silent_seconds "  # noqa: S608
    "FROM ingestion_jobs WHERE status = 'processing' AND stalled_at IS NULL "
    f"AND {_SILENT_SECONDS} > stall_timeout_seconds "
    f"AND {_SILENT_SECONDS} <= heartbeat_timeout_seconds "
    "ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED"
)

_RETURNING = ", ".join(f"j.{column}" for column in JOB_COLUMNS.split(", "))
FAIL = (
    "UPDATE ingestion_jobs AS j SET status = 'failed', "  # noqa: S608
    "processing_completed_at = $1, updated_at = $1, stalled_at = NULL, "
    "error_message = t.error_message, error_details = t.error_details::jsonb "
    "FROM unnest($2::bigint[], $3::text[], $4::text[]) "
    "AS t(id, error_message, error_details) "
    f"WHERE j.id = t.id RETURNING {_RETURNING}"
)
FLAG_STALLED = (
    "UPDATE ingestion_jobs AS j SET stalled_at = $1, updated_at = $1 "  # noqa: S608
    f"WHERE j.id = ANY($2::bigint[]) RETURNING {_RETURNING}"
)

TIMEOUT_EXCEPTION_TYPE = "HeartbeatTimeout"
TIMEOUT_STAGE = "liveness"


@dataclass(frozen=True, slots=True)
class SilentJob:
    """A job changed by a sweep, with the silence that made it change."""

    job_id: int
    attempt: int
    silent_seconds: int
    timeout_seconds: int


async def try_sweep_lock(connection: asyncpg.Connection) -> bool:
    """Take the sweep lock for the transaction, or return False if it is taken."""
    locked: bool = await connection.fetchval(TRY_LOCK, SWEEP_LOCK_KEY)
    return locked


async def sweep_time(
    connection: asyncpg.Connection, clock_time: datetime | None
) -> datetime:
    """Return ``clock_time``, or the database clock when it is None."""
    now: datetime = await connection.fetchval(SWEEP_TIME, clock_time)
    return now


def timeout_message(silent_seconds: int, timeout_seconds: int) -> str:
    """Build the error message of a job failed for its heartbeat timeout."""
    return (
        f"No event arrived for {silent_seconds} s, longer than the heartbeat timeout "
        f"of {timeout_seconds} s, so the worker is presumed lost. Retry the job to "
        "run it again."
    )


def _timeout_details(old: asyncpg.Record) -> str:
    details = {
        "exception_type": TIMEOUT_EXCEPTION_TYPE,
        "stage": TIMEOUT_STAGE,
        "silent_seconds": old["silent_seconds"],
        "heartbeat_timeout_seconds": old["heartbeat_timeout_seconds"],
        "last_event_at": old["last_event_at"],
    }
    return msgspec.json.encode(details).decode()


async def fail_timed_out(
    connection: asyncpg.Connection,
    now: datetime,
    limit: int,
    watching_since: datetime | None,
) -> list[SilentJob]:
    """Fail up to ``limit`` jobs silent past their heartbeat timeout."""
    old_rows = await connection.fetch(SELECT_TIMED_OUT, now, limit, watching_since)
    if not old_rows:
        return []

    messages = [
        timeout_message(old["silent_seconds"], old["heartbeat_timeout_seconds"])
        for old in old_rows
    ]
    details = [_timeout_details(old) for old in old_rows]
    ids = [old["id"] for old in old_rows]
    new_rows = await connection.fetch(FAIL, now, ids, messages, details)

    await _record_all(connection, "timed_out", now, old_rows, new_rows)
    return [_silent_job(old, old["heartbeat_timeout_seconds"]) for old in old_rows]


async def flag_stalled(
    connection: asyncpg.Connection,
    now: datetime,
    limit: int,
    watching_since: datetime | None,
) -> list[SilentJob]:
    """Flag up to ``limit`` jobs silent past their stall timeout as stalled."""
    old_rows = await connection.fetch(SELECT_STALLED, now, limit, watching_since)
    if not old_rows:
        return []

    ids = [old["id"] for old in old_rows]
    new_rows = await connection.fetch(FLAG_STALLED, now, ids)

    await _record_all(connection, "stalled", now, old_rows, new_rows)
    return [_silent_job(old, old["stall_timeout_seconds"]) for old in old_rows]


async def _record_all(
    connection: asyncpg.Connection,
    change_type: str,
    now: datetime,
    old_rows: list[asyncpg.Record],
    new_rows: list[asyncpg.Record],
) -> None:
    """Append one history row per changed job, pairing new and old rows by id."""
    old_by_id = {old["id"]: old for old in old_rows}
    change = Change(type=change_type, actor=TRACKER_ACTOR, occurred_at=now)
    for new in new_rows:
        await record(connection, change, new, old_by_id[new["id"]])


def _silent_job(old: asyncpg.Record, timeout_seconds: int) -> SilentJob:
    return SilentJob(
        job_id=old["id"],
        attempt=old["attempt"],
        silent_seconds=old["silent_seconds"],
        timeout_seconds=timeout_seconds,
    )
