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
_STARTED = f"processing_started_at = COALESCE(processing_started_at, {_OCCURRED})"

# Column updates of each event type, beside last_event_at and updated_at.
_UPDATES: dict[str, tuple[str, ...]] = {
    "heartbeat": (),
    "started": (
        "status = 'processing'",
        _STARTED,
        "progress_current = COALESCE(:current::bigint, progress_current)",
        "progress_total = COALESCE(:total::bigint, progress_total)",
        "progress_message = COALESCE(:message::text, progress_message)",
    ),
    "completed": (
        "status = 'completed'",
        _STARTED,
        f"processing_completed_at = {_OCCURRED}",
        "document_count = COALESCE(:document_count::integer, document_count)",
        "processing_stats = COALESCE(:processing_stats::jsonb, processing_stats)",
        "progress_message = COALESCE(:message::text, progress_message)",
    ),
    "failed": (
        "status = 'failed'",
        f"processing_completed_at = {_OCCURRED}",
        "error_message = :error_message::text",
        "error_details = :error_details::jsonb",
    ),
    "cancelled": ("status = 'cancelled'", f"processing_completed_at = {_OCCURRED}"),
    "deleted": ("status = 'deleted'",),
}
_UPDATES["progress"] = _UPDATES["started"]

ACTIVE = ("pending", "processing")
# The statuses each event type may move a job from; deleted applies to any but itself.
ALLOWED_FROM: dict[str, tuple[str, ...]] = dict.fromkeys(_UPDATES, ACTIVE)
ALLOWED_FROM["deleted"] = ("pending", "processing", "completed", "failed", "cancelled")

_NAMED_PARAMETER = re.compile(r"(?<!:):([a-z_]+)")


@functools.cache
def update_statement(
    kind: str, *, has_attempt: bool, has_seq: bool
) -> tuple[str, tuple[str, ...]]:
    """Return the UPDATE for an event type and the parameter names of its $n slots."""
    updates = [*_UPDATES[kind], "last_event_at = now()"]
    if kind != "heartbeat":
        updates.append("updated_at = now()")
    allowed = ", ".join(f"'{status}'" for status in ALLOWED_FROM[kind])
    conditions = ["id = :job_id", f"status IN ({allowed})"]
    if has_attempt:
        conditions.append("attempt = :attempt::integer")
    if has_seq:
        updates.append("last_seq = :seq::bigint")
        conditions.append("(last_seq IS NULL OR last_seq < :seq::bigint)")
    named = (
        f"UPDATE ingestion_jobs SET {', '.join(updates)} "  # noqa: S608
        f"WHERE {' AND '.join(conditions)} RETURNING {JOB_COLUMNS}"
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
