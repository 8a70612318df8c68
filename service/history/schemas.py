"""Response types of the job history endpoint."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from service.jobs.schemas import JobStatus


class AttemptSummary(msgspec.Struct, kw_only=True):
    """Outcome of one attempt of a job: its state when it ended, or now if current."""

    attempt: int
    status: Annotated[
        JobStatus,
        Meta(description="The job's status at the end of this attempt, or now."),
    ]
    started_at: Annotated[
        datetime | None,
        Meta(description="processing_started_at of the attempt."),
    ]
    ended_at: Annotated[
        datetime | None,
        Meta(
            description="processing_completed_at of the attempt, or null while it runs."
        ),
    ]
    error_message: str | None
    error_type: Annotated[
        str | None,
        Meta(description="error_details.exception_type of a failed attempt."),
    ]
    entries: Annotated[
        int, Meta(description="Number of history entries of the attempt.")
    ]


class HistoryEntry(msgspec.Struct, kw_only=True):
    """One recorded change of a job."""

    id: Annotated[
        int,
        Meta(description="Entry id. Within one job, a higher id was committed later."),
    ]
    attempt: Annotated[
        int,
        Meta(
            description="The job's attempt after the change, so a retry entry opens "
            "the attempt it created."
        ),
    ]
    seq: Annotated[
        int | None, Meta(description="The reporter's counter, if the event had one.")
    ]
    type: Annotated[
        str,
        Meta(
            description="A worker event (started, progress, heartbeat, completed, "
            "failed, cancelled, deleted), an operator action (cancel, retry) or a "
            "change by the tracker (registered, forward_failed, and others)."
        ),
    ]
    actor: Annotated[
        str,
        Meta(
            description="Who made the change: worker, api, worker:<token name>, "
            "api:<token name> or tracker."
        ),
    ]
    status: Annotated[JobStatus, Meta(description="The job's status after the change.")]
    changes: Annotated[
        dict[str, Any],
        Meta(description="The job fields that changed, with their new values."),
    ]
    occurred_at: Annotated[
        datetime,
        Meta(
            description="When the change happened as the reporter states it, "
            "capped at received_at."
        ),
    ]
    received_at: Annotated[
        datetime, Meta(description="When the tracker recorded the change.")
    ]


class JobHistory(msgspec.Struct, kw_only=True):
    """A job's history: a summary per attempt and one page of entries, oldest first.

    Consecutive progress events of one attempt that arrive within a second of the
    first are merged into one entry, which carries the latest values. Consecutive
    heartbeats are merged the same way.
    """

    job_id: int
    collection_id: int
    attempts: Annotated[
        int, Meta(description="Number of attempts so far: the job's current attempt.")
    ]
    by_attempt: Annotated[
        list[AttemptSummary],
        Meta(description="Every attempt, whatever the attempt filter and page."),
    ]
    items: list[HistoryEntry]
    has_more: Annotated[
        bool, Meta(description="True when entries after this page exist now.")
    ]
    next_after: Annotated[
        int | None,
        Meta(
            description="The value of after that reads the entries following this "
            "page: the last item's id, or the after given when the page is empty. "
            "Reading from it again later returns the entries recorded since."
        ),
    ]
