"""Request and response types of the worker event endpoints."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from service.jobs.schemas import Id, Job
from service.limits import BIGINT_MAX, INT_MAX

EventType = Literal[
    "started", "progress", "heartbeat", "completed", "failed", "cancelled", "deleted"
]
# Reasons a valid event changed nothing. duplicate: its seq is not above the last
# applied one. stale_attempt: the job was retried since. job_terminal: the job is
# completed, failed, cancelled or deleted.
IgnoredReason = Literal["duplicate", "stale_attempt", "job_terminal"]
# Only in batch results, where an event that fails on its own does not fail the batch.
BatchErrorReason = Literal["not_found", "attempt_ahead"]

MAX_BATCH_EVENTS = 1000

Count = Annotated[int, Meta(ge=0, le=BIGINT_MAX)]


class Event(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One progress or status report from a worker."""

    type: EventType
    attempt: (
        Annotated[
            int,
            Meta(
                ge=1,
                le=INT_MAX,
                description="Attempt the event belongs to; the job's current one if "
                "absent. Events of an older attempt change nothing.",
            ),
        ]
        | None
    ) = None
    seq: (
        Annotated[
            int,
            Meta(
                ge=0,
                le=BIGINT_MAX,
                description="Counter raised with every event of an attempt; an event "
                "whose seq is not above the last applied one changes nothing.",
            ),
        ]
        | None
    ) = None
    occurred_at: (
        Annotated[
            datetime,
            Meta(
                description="When it happened; UTC if it has no offset; now if absent."
            ),
        ]
        | None
    ) = None
    current: Count | None = None
    total: Count | None = None
    message: str | None = None
    document_count: Annotated[int, Meta(ge=0, le=INT_MAX)] | None = None
    processing_stats: dict[str, Any] | None = None
    error_message: str | None = None
    error_details: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        """Read occurred_at without an offset as UTC; reject times before year 1 UTC."""
        if self.occurred_at is None:
            return
        moment = self.occurred_at
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        try:
            self.occurred_at = moment.astimezone(UTC)
        except OverflowError:
            raise ValueError("occurred_at must be after 0001-01-01T00:00:00Z") from None


class BatchEvent(Event, kw_only=True, forbid_unknown_fields=True):
    """An event inside a batch, naming its job."""

    job_id: Id


class EventBatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Events for many jobs, applied in order."""

    events: Annotated[list[BatchEvent], Meta(max_length=MAX_BATCH_EVENTS)]


class EventResult(msgspec.Struct, kw_only=True):
    """The response to one event: whether it changed the job, and the job now."""

    applied: bool
    reason: IgnoredReason | None
    cancel_requested: bool
    job: Job


class BatchItemResult(msgspec.Struct, kw_only=True):
    """The response to one event of a batch, with a detail for a batch-only reason."""

    job_id: int
    applied: bool
    reason: IgnoredReason | BatchErrorReason | None
    cancel_requested: bool
    detail: str | None = None


class BatchResult(msgspec.Struct, kw_only=True):
    """Responses to a batch, in the order of its events."""

    results: list[BatchItemResult]
