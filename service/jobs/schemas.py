"""Request and response types of the job endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from service.config import TIMEOUT_MAX_SECONDS
from service.limits import BIGINT_MAX

JobStatus = Literal[
    "pending", "processing", "completed", "failed", "cancelled", "deleted"
]
JobSource = Literal["file", "url", "base"]
SortField = Literal[
    "created_at",
    "updated_at",
    "status",
    "original_filename",
    "file_size",
    "processing_started_at",
]
SortOrder = Literal["asc", "desc"]

JOB_STATUSES: tuple[JobStatus, ...] = (
    "pending",
    "processing",
    "completed",
    "failed",
    "cancelled",
    "deleted",
)

Id = Annotated[
    int, Meta(ge=1, le=BIGINT_MAX, description="A positive 64-bit integer id.")
]
ShortText = Annotated[str, Meta(max_length=255)]
PathText = Annotated[str, Meta(max_length=4096)]


class Progress(msgspec.Struct, kw_only=True):
    """Progress of the current attempt."""

    current: int
    total: int
    percentage: float
    message: str | None


class Job(msgspec.Struct, kw_only=True):
    """An ingestion job as the tracker stores it."""

    id: int
    job_id: Annotated[int, Meta(description="The same value as id, for compatibility.")]
    collection_id: int
    collection_name: str | None
    owner: str | None
    original_filename: str | None
    file_path: str | None
    file_url: str | None
    file_size: int | None
    content_type: str | None
    plugin_name: str
    plugin_params: dict[str, Any]
    source: JobSource
    external_id: str | None
    status: JobStatus
    attempt: int
    document_count: int
    progress: Progress
    error_message: str | None
    error_details: dict[str, Any] | None
    processing_stats: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    processing_started_at: datetime | None
    processing_completed_at: datetime | None
    processing_duration_seconds: float | None
    cancel_requested_at: datetime | None
    cancel_acknowledged_at: Annotated[
        datetime | None,
        Meta(description="When the worker confirmed a requested cancel."),
    ]
    last_event_at: datetime | None
    stalled: Annotated[
        bool,
        Meta(
            description="True while a processing job has had no event for "
            "stall_timeout_seconds."
        ),
    ]
    stall_timeout_seconds: int
    heartbeat_timeout_seconds: Annotated[
        int,
        Meta(
            description="A processing job with no event for this long is failed, "
            "which makes it retryable."
        ),
    ]


class JobCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A job a backend registers when it accepts an ingest request."""

    collection_id: Id
    plugin_name: ShortText
    source: JobSource = "file"
    collection_name: ShortText | None = None
    owner: ShortText | None = None
    original_filename: Annotated[str, Meta(max_length=1024)] | None = None
    file_path: PathText | None = None
    file_url: PathText | None = None
    file_size: Annotated[int, Meta(ge=0, le=BIGINT_MAX)] | None = None
    content_type: ShortText | None = None
    plugin_params: dict[str, Any] = msgspec.field(default_factory=dict)
    external_id: ShortText | None = None
    status: Literal["pending", "processing"] = "pending"
    stall_timeout_seconds: (
        Annotated[
            int,
            Meta(
                ge=1,
                le=TIMEOUT_MAX_SECONDS,
                description="Seconds without an event before the job shows stalled; "
                "the tracker's default if absent.",
            ),
        ]
        | None
    ) = None
    heartbeat_timeout_seconds: (
        Annotated[
            int,
            Meta(
                ge=1,
                le=TIMEOUT_MAX_SECONDS,
                description="Seconds without an event before the job is failed; at "
                "least stall_timeout_seconds; the tracker's default if absent.",
            ),
        ]
        | None
    ) = None


class JobPage(msgspec.Struct, kw_only=True):
    """One page of a collection's jobs."""

    total: int
    items: list[Job]
    limit: int
    offset: int
    has_more: bool


class StatusCounts(msgspec.Struct, kw_only=True):
    """Number of jobs in each status."""

    pending: int = 0
    processing: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    deleted: int = 0


class FailureGroup(msgspec.Struct, kw_only=True):
    """Failed attempts that share an exception type and a normalised message."""

    exception_type: Annotated[
        str,
        Meta(
            description="error_details.exception_type of the failed job, or "
            "UnknownError when the worker sent none."
        ),
    ]
    message: Annotated[
        str,
        Meta(
            description="First line of the error message, with URLs, UUIDs, quoted "
            "values, times, paths, file names, hex ids and numbers replaced by "
            "placeholders such as <url>, <str>, <path> and <n>. At most 200 "
            "characters."
        ),
    ]
    count: Annotated[
        int,
        Meta(
            description="Failed attempts in the group. A job that failed, was "
            "retried and failed again counts twice."
        ),
    ]
    newest_job_id: Annotated[
        int, Meta(description="The job of the group's most recent failure.")
    ]
    last_failed_at: Annotated[
        datetime, Meta(description="When the tracker received that failure.")
    ]


class ProcessingDurations(msgspec.Struct, kw_only=True):
    """Percentiles of processing_duration_seconds over recently completed jobs."""

    completed_jobs: Annotated[
        int,
        Meta(
            description="Jobs with status completed whose processing_completed_at "
            "is in the last 24 hours."
        ),
    ]
    p50_seconds: Annotated[
        float | None,
        Meta(
            description="Median duration in seconds, interpolated linearly. Null "
            "without completions."
        ),
    ]
    p95_seconds: Annotated[
        float | None,
        Meta(
            description="95th percentile duration in seconds, interpolated linearly. "
            "Null without completions."
        ),
    ]


class CollectionStatus(msgspec.Struct, kw_only=True):
    """Ingestion summary of one collection."""

    collection_id: int
    collection_name: str | None
    total_jobs: int
    by_status: StatusCounts
    currently_processing: int
    stalled: Annotated[
        int,
        Meta(
            description="Processing jobs flagged as stalled because they sent no "
            "event for their stall_timeout_seconds. The next event clears the flag."
        ),
    ]
    recent_failures: list[Job]
    failures_last_24h: Annotated[
        list[FailureGroup],
        Meta(
            description="Failed attempts received in the last 24 hours, grouped by "
            "exception type and normalised message. At most 10 groups, the largest "
            "first and, among equal counts, the most recent first."
        ),
    ]
    oldest_processing_job: Job | None
    processing_duration_last_24h: Annotated[
        ProcessingDurations,
        Meta(
            description="Processing durations of jobs completed in the last 24 hours."
        ),
    ]


class RetryRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Optional body of a retry: parameters merged over the job's plugin_params."""

    override_params: dict[str, Any] | None = None
