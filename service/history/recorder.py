"""Append a job's changes to its history and wake the streams of every replica.

Every statement that changes a job calls ``record`` in the same transaction, so the
history and the job never disagree, and the stream of a change is sent only once the
change is committed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from service.history.causes import failure_cause
from service.jobs.records import Row, job_from_row
from service.jobs.schemas import Job

NOTIFY_CHANNEL = "ingestion_job_changes"
# The actor of the tracker's own changes: stall flags, timeouts, failed forwarding.
TRACKER_ACTOR = "tracker"
# Progress and heartbeat rows of one job and attempt within this window replace each
# other, so a job reporting progress 100 times a second keeps one row a second.
RATE_BOUNDED_TYPES = frozenset({"progress", "heartbeat"})
RATE_WINDOW = "1 second"
# Fields that change with nearly every event, so listing them adds no information.
_UNTRACKED_FIELDS = frozenset({"updated_at", "last_event_at"})
_JOB_FIELDS = tuple(
    field for field in Job.__struct_fields__ if field not in _UNTRACKED_FIELDS
)

_COLUMNS = (
    "tx, job_id, collection_id, attempt, seq, type, actor, status, changes, "
    "occurred_at, error_type, error_cause, job, window_started_at"
)
# The ordering key: this transaction's id, raised to the key of the job's newest row.
# A transaction that got its id before waiting for the job's lock (a batch locking
# several jobs) would otherwise sort before a change it follows. The key is never
# below the writer's transaction id, which is all that readers rely on: a row whose
# key is below the oldest running transaction is committed or rolled back.
_ORDERING_KEY = (
    "GREATEST((pg_current_xact_id())::text::bigint, COALESCE((SELECT tx FROM "
    "ingestion_job_history WHERE job_id = $1 ORDER BY id DESC LIMIT 1), 0))"
)
_VALUES = (
    _ORDERING_KEY + ", $1, $2, $3, $4, $5, $6, $7::job_status, {changes}, "
    "LEAST(COALESCE($9::timestamptz, now()), now()), $10, $11, $12::json, {window}"
)
_NOTIFY = f"SELECT pg_notify('{NOTIFY_CHANNEL}', '') FROM inserted"  # noqa: S608

APPEND = (
    f"WITH inserted AS (INSERT INTO ingestion_job_history ({_COLUMNS}) "  # noqa: S608
    f"VALUES ({_VALUES.format(changes='$8::jsonb', window='now()')}) RETURNING id) "
    f"{_NOTIFY}"
)
# Deletes the job's newest row when it has the same type and attempt and its window is
# still open, and appends a row that carries the window and the changes of both.
_REPLACE_OR_APPEND = (
    "WITH latest AS (SELECT id, type, attempt, window_started_at "
    "FROM ingestion_job_history WHERE job_id = $1 ORDER BY id DESC LIMIT 1), "
    "replaced AS (DELETE FROM ingestion_job_history AS h USING latest "
    "WHERE h.id = latest.id AND latest.type = $5 AND latest.attempt = $3 "
    "AND latest.window_started_at > now() - interval '{window}' "
    "RETURNING h.window_started_at, h.changes), "
    "inserted AS (INSERT INTO ingestion_job_history ({columns}) VALUES ({values}) "
    "RETURNING id) {notify}"
)
REPLACE_OR_APPEND = _REPLACE_OR_APPEND.format(
    window=RATE_WINDOW,
    columns=_COLUMNS,
    values=_VALUES.format(
        changes="COALESCE((SELECT changes FROM replaced), '{}'::jsonb) || $8::jsonb",
        window="COALESCE((SELECT window_started_at FROM replaced), now())",
    ),
    notify=_NOTIFY,
)


@dataclass(frozen=True, slots=True)
class Change:
    """The cause of a job change: its history type, actor, seq and time."""

    type: str
    actor: str
    seq: int | None = None
    # The reporter's time of the change, or the database clock when None.
    occurred_at: datetime | None = None


class OldRow(Mapping[str, Any]):
    """The ``old_``-prefixed columns of an UPDATE that returns both versions."""

    __slots__ = ("_row",)

    def __init__(self, row: Row) -> None:
        self._row = row

    def __getitem__(self, key: str) -> Any:
        return self._row[f"old_{key}"]

    def __iter__(self) -> Iterator[str]:
        raise TypeError("OldRow reads columns by name only")

    def __len__(self) -> int:
        raise TypeError("OldRow reads columns by name only")


def changed_fields(before: Job | None, after: Job) -> dict[str, Any]:
    """Return the job fields whose values differ, with their new values."""
    if before is None:
        return {"status": after.status, "attempt": after.attempt}
    return {
        field: getattr(after, field)
        for field in _JOB_FIELDS
        if getattr(before, field) != getattr(after, field)
    }


async def record(
    connection: asyncpg.Connection, change: Change, new: Row, old: Row | None
) -> None:
    """Append ``change`` of the job now in ``new`` (and before in ``old``)."""
    after = job_from_row(new)
    before = None if old is None else job_from_row(old)
    error_type = error_cause = None
    if after.status == "failed" and (before is None or before.status != "failed"):
        error_type, error_cause = failure_cause(
            after.error_message, after.error_details
        )
    statement = REPLACE_OR_APPEND if change.type in RATE_BOUNDED_TYPES else APPEND
    await connection.execute(
        statement,
        after.id,
        after.collection_id,
        after.attempt,
        change.seq,
        change.type,
        change.actor,
        after.status,
        msgspec.json.encode(changed_fields(before, after)).decode(),
        change.occurred_at,
        error_type,
        error_cause,
        msgspec.json.encode(after).decode(),
    )
