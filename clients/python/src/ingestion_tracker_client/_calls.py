"""Requests of the query API and the polling schedule of ``wait()``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ingestion_tracker_client._errors import (
    ServiceUnavailable,
    TrackerConnectionError,
    TrackerError,
)
from ingestion_tracker_client._models import Job, JobPage
from ingestion_tracker_client._transport import Params

logger = logging.getLogger("ingestion_tracker_client")

T = TypeVar("T")


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API request and the type its response body decodes to."""

    method: str
    path: str
    result: type[T]
    params: Params | None = None
    body: object = None


def collection_path(collection_id: int) -> str:
    return f"/collections/{require_id(collection_id, 'collection_id')}"


def job_path(collection_id: int, job_id: int) -> str:
    job = require_id(job_id, "job_id")
    return f"{collection_path(collection_id)}/ingestion-jobs/{job}"


def require_id(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    return value


def list_call(
    collection_id: int,
    status: str | Sequence[str] | None,
    limit: int,
    offset: int,
    sort_by: str,
    sort_order: str,
) -> Call[JobPage]:
    params: Params = {
        "limit": limit,
        "offset": offset,
        "sort_by": sort_by,
        "sort_order": sort_order,
    }
    if status is not None:
        params["status"] = status if isinstance(status, str) else ",".join(status)
    path = f"{collection_path(collection_id)}/ingestion-jobs"
    return Call("GET", path, JobPage, params=params)


def retry_call(
    collection_id: int, job_id: int, override_params: dict[str, Any] | None
) -> Call[Job]:
    body = None if override_params is None else {"override_params": override_params}
    return Call("POST", f"{job_path(collection_id, job_id)}/retry", Job, body=body)


class Poll:
    """Delays between the reads of ``wait()``, doubling up to a maximum."""

    def __init__(
        self,
        timeout: float,
        interval: float,
        max_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout < 0:
            raise ValueError(f"timeout must be 0 or more seconds, got {timeout}")
        if interval <= 0:
            raise ValueError(f"poll_interval must be above 0 seconds, got {interval}")
        if max_interval < interval:
            raise ValueError(
                f"max_interval ({max_interval}) must be at least poll_interval "
                f"({interval})"
            )
        self.timeout = timeout
        self._interval = interval
        self._max_interval = max_interval
        self._clock = clock
        self._deadline = clock() + timeout
        self.last_job: Job | None = None
        self.last_error: TrackerError | None = None

    def next_delay(self) -> float | None:
        """Return seconds to sleep before the next read, or None past the deadline."""
        remaining = self._deadline - self._clock()
        if remaining <= 0:
            return None
        delay = min(self._interval, remaining)
        self._interval = min(self._interval * 2, self._max_interval)
        return delay

    def record(self, job: Job | None, error: TrackerError | None) -> None:
        if job is not None:
            self.last_job = job
        self.last_error = error

    def timed_out(self, collection_id: int, job_id: int) -> TimeoutError:
        subject = f"Ingestion job {job_id} in collection {collection_id}"
        if self.last_job is not None:
            state = f"is still {self.last_job.status}"
        else:
            state = f"could not be read ({self.last_error})"
        return TimeoutError(
            f"{subject} {state} after {self.timeout} seconds of waiting; pass a "
            "longer timeout to wait(), or check that a worker is running the job"
        )


# A tracker restart or a database outage should not end a long wait early.
TRANSIENT_ERRORS = (TrackerConnectionError, ServiceUnavailable)


def log_transient(job_id: int, error: TrackerError) -> None:
    logger.debug(
        "Reading ingestion job %s failed while waiting; trying again: %s",
        job_id,
        error,
        extra={"action": "wait_read_failed", "job_id": job_id},
    )
