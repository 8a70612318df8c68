"""Worker clients: register jobs and create reporters, used with a ``worker`` token."""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal, Self, TypedDict, Unpack

import httpx

from ingestion_tracker_client._async_reporter import AsyncJobReporter
from ingestion_tracker_client._calls import require_id
from ingestion_tracker_client._events import BIGINT_MAX, INT_MAX
from ingestion_tracker_client._models import Job
from ingestion_tracker_client._options import ReporterOptions
from ingestion_tracker_client._reporter import JobReporter
from ingestion_tracker_client._transport import (
    DEFAULT_TIMEOUT,
    AsyncHTTP,
    SyncHTTP,
    decode,
)

# Headers the tracker adds when it forwards a retry to the backend's ingest API.
JOB_ID_HEADER = "X-Ingestion-Job-Id"
ATTEMPT_HEADER = "X-Ingestion-Attempt"


class JobFields(TypedDict, total=False):
    """Optional fields of a job registration, as ``POST /ingestion-jobs`` takes them."""

    collection_name: str
    owner: str
    original_filename: str
    file_path: str
    file_url: str
    file_size: int
    content_type: str
    plugin_params: dict[str, Any]
    external_id: str
    status: Literal["pending", "processing"]
    stall_timeout_seconds: int
    heartbeat_timeout_seconds: int


def _registration(
    collection_id: int, plugin_name: str, source: str, fields: JobFields
) -> dict[str, Any]:
    return {
        "collection_id": require_id(collection_id, "collection_id"),
        "plugin_name": plugin_name,
        "source": source,
        **fields,
    }


def _check_ids(job_id: int, attempt: int | None) -> None:
    """Raise for ids the tracker would reject, which would fail every batch."""
    if not 1 <= require_id(job_id, "job_id") <= BIGINT_MAX:
        raise ValueError(f"job_id must be from 1 to {BIGINT_MAX}, got {job_id}")
    if attempt is not None and not 1 <= require_id(attempt, "attempt") <= INT_MAX:
        raise ValueError(f"attempt must be from 1 to {INT_MAX}, got {attempt}")


def _options(
    flush_interval: float,
    max_buffer: int,
    close_timeout: float,
    backoff: tuple[float, float],
    heartbeat_interval: float | None,
) -> ReporterOptions:
    return ReporterOptions(
        flush_interval=flush_interval,
        max_buffer=max_buffer,
        close_timeout=close_timeout,
        backoff_initial=backoff[0],
        backoff_max=backoff[1],
        heartbeat_interval=heartbeat_interval,
    )


def _check_open(closed: bool, owner: str) -> None:
    if closed:
        raise RuntimeError(
            f"Cannot create a reporter because this {owner} is closed; create "
            "reporters before closing it."
        )


def resume_from_headers(headers: Mapping[str, str]) -> tuple[int, int] | None:
    """Read ``(job_id, attempt)`` from the headers of a retry the tracker forwarded.

    Header names match in any case. Returns None when neither header is present, as
    on a first ingest request. Raises ValueError when only one is present or a value
    is not a positive integer.
    """
    canonical_names = {
        JOB_ID_HEADER.lower(): JOB_ID_HEADER,
        ATTEMPT_HEADER.lower(): ATTEMPT_HEADER,
    }
    found: dict[str, str] = {}
    for name, value in headers.items():
        if name.lower() in canonical_names:
            found[canonical_names[name.lower()]] = value
    if not found:
        return None
    if len(found) == 1:
        (present,) = found
        missing = ATTEMPT_HEADER if present == JOB_ID_HEADER else JOB_ID_HEADER
        raise ValueError(f"The request has a {present} header but no {missing} header")
    return _positive(found, JOB_ID_HEADER), _positive(found, ATTEMPT_HEADER)


def _positive(headers: dict[str, str], name: str) -> int:
    value = headers[name].strip()
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        raise ValueError(f"Header {name} must be a positive integer, got {value!r}")
    return int(value)


class WorkerClient:
    """Blocking worker client, which registers jobs and creates JobReporters.

    Reporters share this client's connections. ``close()`` closes the reporters still
    open, each delivering its events within its own ``close_timeout``.
    """

    def __init__(
        self,
        *,
        base_url: str,
        token: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._timeout = timeout
        self._http = SyncHTTP(
            owner=type(self).__name__,
            base_url=base_url,
            token=token,
            timeout=timeout,
            transport=transport,
        )
        self._reporters: weakref.WeakSet[JobReporter] = weakref.WeakSet()
        # Worker threads may create reporters while another thread closes the client.
        self._reporters_lock = threading.Lock()

    def register(
        self,
        *,
        collection_id: int,
        plugin_name: str,
        source: str = "file",
        **fields: Unpack[JobFields],
    ) -> Job:
        """Register a job and return it.

        Registering an ``external_id`` that the collection already has returns the
        existing job instead of a new one.
        """
        body = _registration(collection_id, plugin_name, source, fields)
        return decode(self._http.request("POST", "/ingestion-jobs", body=body), Job)

    def reporter(
        self,
        job_id: int,
        *,
        attempt: int | None = None,
        flush_interval: float = 0.5,
        max_buffer: int = 1000,
        close_timeout: float = 10.0,
        backoff: tuple[float, float] = (0.2, 10.0),
        heartbeat_interval: float | None = 20.0,
    ) -> JobReporter:
        """Create a reporter for one job and attempt, with times in seconds.

        Events are sent at most every ``flush_interval``, a final status at once.
        While the tracker is down, at most about ``max_buffer`` events wait, and sends
        are retried after delays from ``backoff[0]`` doubling up to ``backoff[1]``.
        Once a batch was sent, a ``heartbeat`` goes out whenever nothing else was sent
        for ``heartbeat_interval`` seconds, until the final status or close; None
        sends none. Keep it below the job's ``stall_timeout_seconds`` (60 by
        default), or a long silent step shows the job as stalled.
        """
        _check_open(self._http.closed, type(self).__name__)
        _check_ids(job_id, attempt)
        options = _options(
            flush_interval, max_buffer, close_timeout, backoff, heartbeat_interval
        )
        reporter = JobReporter(
            self._http,
            job_id,
            attempt=attempt,
            options=options,
            request_timeout=self._timeout,
        )
        with self._reporters_lock:
            self._reporters.add(reporter)
        return reporter

    def close(self) -> None:
        """Close the open reporters, then the connections."""
        with self._reporters_lock:
            reporters = list(self._reporters)
        now = time.monotonic()
        closing = [(item, item._begin_close(now)) for item in reporters]
        for reporter, deadline in closing:
            reporter._finish_close(deadline)
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class AsyncWorkerClient:
    """Asyncio worker client, which registers jobs and creates AsyncJobReporters.

    See WorkerClient for the options. ``aclose()`` closes the open reporters first.
    """

    def __init__(
        self,
        *,
        base_url: str,
        token: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._timeout = timeout
        self._http = AsyncHTTP(
            owner=type(self).__name__,
            base_url=base_url,
            token=token,
            timeout=timeout,
            transport=transport,
        )
        self._reporters: weakref.WeakSet[AsyncJobReporter] = weakref.WeakSet()

    async def register(
        self,
        *,
        collection_id: int,
        plugin_name: str,
        source: str = "file",
        **fields: Unpack[JobFields],
    ) -> Job:
        """Register a job and return it; see WorkerClient.register."""
        body = _registration(collection_id, plugin_name, source, fields)
        response = await self._http.request("POST", "/ingestion-jobs", body=body)
        return decode(response, Job)

    def reporter(
        self,
        job_id: int,
        *,
        attempt: int | None = None,
        flush_interval: float = 0.5,
        max_buffer: int = 1000,
        close_timeout: float = 10.0,
        backoff: tuple[float, float] = (0.2, 10.0),
        heartbeat_interval: float | None = 20.0,
    ) -> AsyncJobReporter:
        """Create a reporter on the running event loop; see WorkerClient.reporter."""
        _check_open(self._http.closed, type(self).__name__)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "AsyncWorkerClient.reporter() must be called with an event loop "
                "running, because the reporter sends from a task on that loop; use "
                "WorkerClient outside asyncio."
            ) from None
        _check_ids(job_id, attempt)
        options = _options(
            flush_interval, max_buffer, close_timeout, backoff, heartbeat_interval
        )
        reporter = AsyncJobReporter(
            self._http,
            job_id,
            attempt=attempt,
            options=options,
            request_timeout=self._timeout,
        )
        self._reporters.add(reporter)
        return reporter

    async def aclose(self) -> None:
        """Close the open reporters concurrently, then the connections."""
        reporters = list(self._reporters)
        await asyncio.gather(*(reporter.aclose() for reporter in reporters))
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
