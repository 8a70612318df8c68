"""Worker SDK and query client of the ingestion tracker.

``TrackerClient`` reads, steers and watches jobs with an ``api`` token. ``WorkerClient``
registers jobs and creates a ``JobReporter`` per job, which sends progress and status
events in the background with a ``worker`` token. Both have asyncio flavours.
"""

from ingestion_tracker_client._async_reporter import AsyncJobReporter
from ingestion_tracker_client._errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidResponse,
    JobCancelled,
    JobNotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    TrackerConnectionError,
    TrackerError,
    TrackerHTTPError,
    Unauthorized,
)
from ingestion_tracker_client._models import (
    JOB_STATUSES,
    TERMINAL_STATUSES,
    CollectionStatus,
    EventResult,
    FailureGroup,
    Job,
    JobPage,
    ProcessingDurations,
    Progress,
    StatusCounts,
)
from ingestion_tracker_client._query import AsyncTrackerClient, TrackerClient
from ingestion_tracker_client._reporter import JobReporter
from ingestion_tracker_client._sse import ServerSentEvent, SSEParser
from ingestion_tracker_client._transport import __version__
from ingestion_tracker_client._watchers import AsyncJobWatch, JobWatch
from ingestion_tracker_client._worker import (
    AsyncWorkerClient,
    JobFields,
    WorkerClient,
    resume_from_headers,
)

__all__ = [
    "JOB_STATUSES",
    "TERMINAL_STATUSES",
    "AsyncJobReporter",
    "AsyncJobWatch",
    "AsyncTrackerClient",
    "AsyncWorkerClient",
    "BadRequest",
    "CollectionStatus",
    "Conflict",
    "EventResult",
    "FailureGroup",
    "Forbidden",
    "InvalidResponse",
    "Job",
    "JobCancelled",
    "JobFields",
    "JobNotFound",
    "JobPage",
    "JobReporter",
    "JobWatch",
    "PayloadTooLarge",
    "ProcessingDurations",
    "Progress",
    "SSEParser",
    "ServerSentEvent",
    "ServiceUnavailable",
    "StatusCounts",
    "TrackerClient",
    "TrackerConnectionError",
    "TrackerError",
    "TrackerHTTPError",
    "Unauthorized",
    "WorkerClient",
    "__version__",
    "resume_from_headers",
]
