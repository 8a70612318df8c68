"""Prepared SQL for the event hot path, one statement shape per event type.

Events are the busiest write, so they skip SQLAlchemy's statement building and run as
fixed SQL texts that asyncpg prepares once per connection and reuses.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from service.store.tables import JOB_COLUMNS

# Every piece of SQL in this module is built from constants, never from client input.

# The event time, never later than the database clock.
_OCCURRED = "LEAST(COALESCE(:occurred::timestamptz, now()), now())"
_STARTED = f"processing_started_at = COALESCE(j.processing_started_at, {_OCCURRED})"

# Column updates of each event type, beside last_event_at, stalled_at and updated_at.
# The right-hand sides name the updated row as j, because the FROM clause brings in
# the same columns as old.
_UPDATES: dict[str, tuple[str, ...]] = {
    "heartbeat": (),
    "started": (
        "status = 'processing'",
        _STARTED,
        "progress_current = COALESCE(:current::bigint, j.progress_current)",
        "progress_total = COALESCE(:total::bigint, j.progress_total)",
        "progress_message = COALESCE(:message::text, j.progress_message)",
    ),
    "completed": (
        "status = 'completed'",
        _STARTED,
        f"processing_completed_at = {_OCCURRED}",
        "document_count = COALESCE(:document_count::integer, j.document_count)",
        "processing_stats = COALESCE(:processing_stats::jsonb, j.processing_stats)",
        "progress_message = COALESCE(:message::text, j.progress_message)",
    ),
    "failed": (
        "status = 'failed'",
        f"processing_completed_at = {_OCCURRED}",
        "error_message = :error_message::text",
        "error_details = :error_details::jsonb",
    ),
    # A cancelled event either cancels an active job or, on a job an operator
    # cancelled, acknowledges that cancel.
    "cancelled": (
        "status = 'cancelled'",
        f"processing_completed_at = COALESCE(j.processing_completed_at, {_OCCURRED})",
        "cancel_acknowledged_at = CASE WHEN j.cancel_requested_at IS NOT NULL "
        "THEN now() END",
    ),
    "deleted": ("status = 'deleted'",),
}
_UPDATES["progress"] = _UPDATES["started"]

ACTIVE = ("pending", "processing")
# The statuses each event type may move a job from; deleted applies to any but itself.
ALLOWED_FROM: dict[str, tuple[str, ...]] = dict.fromkeys(_UPDATES, ACTIVE)
ALLOWED_FROM["deleted"] = ("pending", "processing", "completed", "failed", "cancelled")
# The status condition of each event type; an unacknowledged cancel also admits the
# worker's cancelled event.
_STATUS_CONDITIONS = {
    kind: "j.status IN ({})".format(", ".join(f"'{status}'" for status in allowed))
    for kind, allowed in ALLOWED_FROM.items()
}
AWAITS_ACKNOWLEDGEMENT = (
    "(j.status = 'cancelled' AND j.cancel_requested_at IS NOT NULL "
    "AND j.cancel_acknowledged_at IS NULL)"
)
_STATUS_CONDITIONS["cancelled"] = (
    f"({_STATUS_CONDITIONS['cancelled']} OR {AWAITS_ACKNOWLEDGEMENT})"
)

# Every column of the updated row, then every column as it was, prefixed with old_.
RETURNING_NEW_AND_OLD = ", ".join(
    [f"j.{column}" for column in JOB_COLUMNS.split(", ")]
    + [f"old.{column} AS old_{column}" for column in JOB_COLUMNS.split(", ")]
)
# Locks the row and keeps its values from before the update.
_OLD_ROW = (
    f"(SELECT {JOB_COLUMNS} FROM ingestion_jobs "  # noqa: S608
    "WHERE id = :job_id FOR UPDATE) AS old"
)

_NAMED_PARAMETER = re.compile(r"(?<!:):([a-z_]+)")


@functools.cache
def update_statement(
    kind: str, *, has_attempt: bool, has_seq: bool
) -> tuple[str, tuple[str, ...]]:
    """Return the UPDATE for an event type and the parameter names of its $n slots.

    It returns the job after the update and, prefixed with ``old_``, before it.
    """
    updates = [*_UPDATES[kind], "last_event_at = now()", "stalled_at = NULL"]
    if kind != "heartbeat":
        updates.append("updated_at = now()")
    conditions = ["j.id = old.id", _STATUS_CONDITIONS[kind]]
    if has_attempt:
        conditions.append("j.attempt = :attempt::integer")
    if has_seq:
        updates.append("last_seq = :seq::bigint")
        conditions.append("(j.last_seq IS NULL OR j.last_seq < :seq::bigint)")
    named = (
        f"UPDATE ingestion_jobs AS j SET {', '.join(updates)} "  # noqa: S608
        f"FROM {_OLD_ROW} WHERE {' AND '.join(conditions)} "
        f"RETURNING {RETURNING_NEW_AND_OLD}"
    )
    return _number_parameters(named)


def _number_parameters(named: str) -> tuple[str, tuple[str, ...]]:
    """Turn ``:name`` placeholders into asyncpg's ``$n``, in order of first use."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _NAMED_PARAMETER.sub(number, named), tuple(names)


def arguments(names: tuple[str, ...], values: Mapping[str, Any]) -> list[Any]:
    """Order ``values`` for the $n slots of a statement."""
    return [values.get(name) for name in names]
