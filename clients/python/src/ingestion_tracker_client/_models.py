"""Response types of the tracker's HTTP API, decoded with msgspec.

Unknown fields are ignored and most fields have defaults, so a newer tracker that adds
fields still decodes. ``status`` and ``source`` are plain strings for the same reason:
a status added by a later tracker version must not make a whole page undecodable.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

JOB_STATUSES: tuple[str, ...] = (
    "pending",
    "processing",
    "completed",
    "failed",
    "cancelled",
    "deleted",
)
# Statuses that only a retry (failed) or nothing at all moves a job out of.
TERMINAL_STATUSES: frozenset[str] = frozenset(
    {"completed", "failed", "cancelled", "deleted"}
)


class Progress(msgspec.Struct, kw_only=True, frozen=True):
    """Progress of a job's current attempt; ``percentage`` is 0.0 to 100.0."""

    current: int = 0
    total: int = 0
    percentage: float = 0.0
    message: str | None = None


class Job(msgspec.Struct, kw_only=True, frozen=True):
    """An ingestion job as the tracker stores it; times are timezone-aware UTC.

    ``stalled`` is True while a processing job has sent no event for
    ``stall_timeout_seconds``. ``cancel_acknowledged_at`` is when the worker
    confirmed a cancel with a ``cancelled`` event. Trackers older than these fields
    leave them at their defaults.
    """

    id: int
    collection_id: int
    status: str
    attempt: int = 1
    job_id: int | None = None
    collection_name: str | None = None
    owner: str | None = None
    original_filename: str | None = None
    file_path: str | None = None
    file_url: str | None = None
    file_size: int | None = None
    content_type: str | None = None
    plugin_name: str | None = None
    plugin_params: dict[str, Any] = msgspec.field(default_factory=dict)
    source: str | None = None
    external_id: str | None = None
    document_count: int = 0
    progress: Progress = msgspec.field(default_factory=Progress)
    error_message: str | None = None
    error_details: dict[str, Any] | None = None
    processing_stats: dict[str, Any] | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    processing_started_at: datetime | None = None
    processing_completed_at: datetime | None = None
    processing_duration_seconds: float | None = None
    cancel_requested_at: datetime | None = None
    cancel_acknowledged_at: datetime | None = None
    last_event_at: datetime | None = None
    stalled: bool = False
    stall_timeout_seconds: int | None = None
    heartbeat_timeout_seconds: int | None = None

    @property
    def is_terminal(self) -> bool:
        """Whether the job is completed, failed, cancelled or deleted."""
        return self.status in TERMINAL_STATUSES


class JobPage(msgspec.Struct, kw_only=True, frozen=True):
    """One page of a collection's jobs and the total across all pages."""

    total: int
    items: list[Job]
    limit: int
    offset: int
    has_more: bool


class StatusCounts(msgspec.Struct, kw_only=True, frozen=True):
    """Number of jobs in each status."""

    pending: int = 0
    processing: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    deleted: int = 0


class FailureGroup(msgspec.Struct, kw_only=True, frozen=True):
    """Failed attempts of the last 24 hours that share a cause."""

    exception_type: str
    # The error message with urls, ids, paths and numbers replaced by placeholders.
    message: str
    count: int
    newest_job_id: int
    last_failed_at: datetime


class ProcessingDurations(msgspec.Struct, kw_only=True, frozen=True):
    """Median and 95th percentile of recent processing times, in seconds."""

    completed_jobs: int = 0
    p50_seconds: float | None = None
    p95_seconds: float | None = None


class CollectionStatus(msgspec.Struct, kw_only=True, frozen=True):
    """Ingestion summary of one collection."""

    collection_id: int
    total_jobs: int
    by_status: StatusCounts
    collection_name: str | None = None
    currently_processing: int = 0
    recent_failures: list[Job] = msgspec.field(default_factory=list)
    oldest_processing_job: Job | None = None
    # Absent from trackers older than the job history.
    stalled: int = 0
    failures_last_24h: list[FailureGroup] = msgspec.field(default_factory=list)
    processing_duration_last_24h: ProcessingDurations = msgspec.field(
        default_factory=ProcessingDurations
    )


class EventResult(msgspec.Struct, kw_only=True, frozen=True):
    """The tracker's result for one event of a batch.

    ``reason`` is None when the event was applied; otherwise ``duplicate``,
    ``stale_attempt`` or ``job_terminal``, or ``not_found`` or ``attempt_ahead``
    with a ``detail``.
    """

    job_id: int
    applied: bool
    reason: str | None = None
    cancel_requested: bool = False
    detail: str | None = None


class EventResults(msgspec.Struct, kw_only=True, frozen=True):
    """Response body of ``POST /ingestion-events``: one result per event, in order."""

    results: list[EventResult]
