"""Query clients: list, read, summarise, retry, cancel, wait for and watch jobs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from ingestion_tracker_client._calls import (
    TRANSIENT_ERRORS,
    Call,
    Poll,
    collection_path,
    job_path,
    list_call,
    log_transient,
    retry_call,
)
from ingestion_tracker_client._models import CollectionStatus, Job, JobPage
from ingestion_tracker_client._transport import (
    DEFAULT_TIMEOUT,
    AsyncHTTP,
    SyncHTTP,
    decode,
)
from ingestion_tracker_client._watch import DEFAULT_READ_TIMEOUT, WatchMode, WatchState
from ingestion_tracker_client._watchers import AsyncJobWatch, JobWatch

T = TypeVar("T")


class TrackerClient:
    """Blocking client of the tracker's query API, used with an ``api`` token.

    ``timeout`` is in seconds per request, and None waits forever. ``transport``
    replaces httpx's network transport, for example with ``httpx.MockTransport``.
    """

    def __init__(
        self,
        *,
        base_url: str,
        token: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = SyncHTTP(
            owner=type(self).__name__,
            base_url=base_url,
            token=token,
            timeout=timeout,
            transport=transport,
        )

    def list_jobs(
        self,
        collection_id: int,
        *,
        status: str | Sequence[str] | None = None,
        limit: int = 50,
        offset: int = 0,
        sort_by: str = "created_at",
        sort_order: str = "desc",
    ) -> JobPage:
        """Return one page of a collection's jobs, optionally of some statuses only."""
        call = list_call(collection_id, status, limit, offset, sort_by, sort_order)
        return self._send(call)

    def get_job(self, collection_id: int, job_id: int) -> Job:
        """Return one job; a job of another collection raises JobNotFound too."""
        return self._send(Call("GET", job_path(collection_id, job_id), Job))

    def summary(self, collection_id: int) -> CollectionStatus:
        """Return the counts by status and recent failures of a collection."""
        path = f"{collection_path(collection_id)}/ingestion-status"
        return self._send(Call("GET", path, CollectionStatus))

    def retry(
        self,
        collection_id: int,
        job_id: int,
        *,
        override_params: dict[str, Any] | None = None,
    ) -> Job:
        """Move a failed job back to pending as its next attempt.

        Any other status raises Conflict.

        ``override_params`` replaces the job's top-level ``plugin_params`` keys.
        """
        return self._send(retry_call(collection_id, job_id, override_params))

    def cancel(self, collection_id: int, job_id: int) -> Job:
        """Cancel a pending or processing job; any other status raises Conflict."""
        path = f"{job_path(collection_id, job_id)}/cancel"
        return self._send(Call("POST", path, Job))

    def wait(
        self,
        collection_id: int,
        job_id: int,
        *,
        timeout: float = 300.0,
        poll_interval: float = 0.5,
        max_interval: float = 5.0,
    ) -> Job:
        """Poll a job until it is completed, failed, cancelled or deleted.

        Return the job. The delay between reads starts at ``poll_interval`` seconds
        and doubles up to ``max_interval``. Connection errors and 503 responses are
        retried until ``timeout`` seconds have passed, and then the builtin
        TimeoutError is raised.
        """
        poll = Poll(timeout, poll_interval, max_interval)
        while True:
            try:
                job: Job | None = self.get_job(collection_id, job_id)
                poll.record(job, None)
            except TRANSIENT_ERRORS as exc:
                job = None
                poll.record(None, exc)
                log_transient(job_id, exc)
            if job is not None and job.is_terminal:
                return job
            delay = poll.next_delay()
            if delay is None:
                raise poll.timed_out(collection_id, job_id) from poll.last_error
            time.sleep(delay)

    def watch(
        self,
        collection_id: int,
        job_id: int,
        *,
        last_event_id: str | None = None,
        mode: WatchMode = "auto",
        poll_interval: float = 1.0,
        read_timeout: float | None = DEFAULT_READ_TIMEOUT,
    ) -> JobWatch:
        """Follow one job's changes and yield the job after each, until it ends.

        The iterator ends after the job reaches a terminal status. It follows the
        tracker's event stream, and after a dropped or closed connection reconnects
        with ``Last-Event-ID``, so no change is lost or repeated. ``last_event_id``
        resumes after a cursor that an earlier watch's ``last_event_id`` returned.

        ``mode="auto"`` polls every ``poll_interval`` seconds where the stream
        cannot be used, ``"stream"`` raises instead and ``"poll"`` always polls.
        Polling yields the job when it differs from the last one yielded, so it
        can miss short-lived states. ``read_timeout`` is the seconds without a byte,
        keep-alives included, after which a stream counts as dropped.
        """
        state = WatchState(
            collection_id,
            job_id,
            mode=mode,
            last_event_id=last_event_id,
            poll_interval=poll_interval,
        )
        return JobWatch(self._http, state, read_timeout)

    def watch_collection(
        self,
        collection_id: int,
        *,
        last_event_id: str | None = None,
        mode: WatchMode = "auto",
        poll_interval: float = 1.0,
        read_timeout: float | None = DEFAULT_READ_TIMEOUT,
    ) -> JobWatch:
        """Follow every job of a collection and yield a job after each change.

        It yields changes after the watch started, or after ``last_event_id``, and
        runs until closed; see watch() for the options. Polling reads the jobs
        sorted by ``updated_at`` and yields those updated since the last read.
        """
        state = WatchState(
            collection_id,
            None,
            mode=mode,
            last_event_id=last_event_id,
            poll_interval=poll_interval,
        )
        return JobWatch(self._http, state, read_timeout)

    def close(self) -> None:
        """Close the connections, after which requests raise RuntimeError."""
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

    def _send(self, call: Call[T]) -> T:
        response = self._http.request(
            call.method, call.path, params=call.params, body=call.body
        )
        return decode(response, call.result)


class AsyncTrackerClient:
    """Asyncio client of the tracker's query API; see TrackerClient for the options."""

    def __init__(
        self,
        *,
        base_url: str,
        token: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = AsyncHTTP(
            owner=type(self).__name__,
            base_url=base_url,
            token=token,
            timeout=timeout,
            transport=transport,
        )

    async def list_jobs(
        self,
        collection_id: int,
        *,
        status: str | Sequence[str] | None = None,
        limit: int = 50,
        offset: int = 0,
        sort_by: str = "created_at",
        sort_order: str = "desc",
    ) -> JobPage:
        """Return one page of a collection's jobs, optionally of some statuses only."""
        call = list_call(collection_id, status, limit, offset, sort_by, sort_order)
        return await self._send(call)

    async def get_job(self, collection_id: int, job_id: int) -> Job:
        """Return one job; a job of another collection raises JobNotFound too."""
        return await self._send(Call("GET", job_path(collection_id, job_id), Job))

    async def summary(self, collection_id: int) -> CollectionStatus:
        """Return the counts by status and recent failures of a collection."""
        path = f"{collection_path(collection_id)}/ingestion-status"
        return await self._send(Call("GET", path, CollectionStatus))

    async def retry(
        self,
        collection_id: int,
        job_id: int,
        *,
        override_params: dict[str, Any] | None = None,
    ) -> Job:
        """Move a failed job back to pending; see TrackerClient.retry."""
        return await self._send(retry_call(collection_id, job_id, override_params))

    async def cancel(self, collection_id: int, job_id: int) -> Job:
        """Cancel a pending or processing job; any other status raises Conflict."""
        path = f"{job_path(collection_id, job_id)}/cancel"
        return await self._send(Call("POST", path, Job))

    async def wait(
        self,
        collection_id: int,
        job_id: int,
        *,
        # The deadline is part of the polling schedule, as in the blocking wait().
        timeout: float = 300.0,  # noqa: ASYNC109
        poll_interval: float = 0.5,
        max_interval: float = 5.0,
    ) -> Job:
        """Poll a job until it reaches a terminal status; see TrackerClient.wait."""
        poll = Poll(timeout, poll_interval, max_interval)
        while True:
            try:
                job: Job | None = await self.get_job(collection_id, job_id)
                poll.record(job, None)
            except TRANSIENT_ERRORS as exc:
                job = None
                poll.record(None, exc)
                log_transient(job_id, exc)
            if job is not None and job.is_terminal:
                return job
            delay = poll.next_delay()
            if delay is None:
                raise poll.timed_out(collection_id, job_id) from poll.last_error
            await asyncio.sleep(delay)

    def watch(
        self,
        collection_id: int,
        job_id: int,
        *,
        last_event_id: str | None = None,
        mode: WatchMode = "auto",
        poll_interval: float = 1.0,
        read_timeout: float | None = DEFAULT_READ_TIMEOUT,
    ) -> AsyncJobWatch:
        """Follow one job's changes with ``async for``; see TrackerClient.watch."""
        state = WatchState(
            collection_id,
            job_id,
            mode=mode,
            last_event_id=last_event_id,
            poll_interval=poll_interval,
        )
        return AsyncJobWatch(self._http, state, read_timeout)

    def watch_collection(
        self,
        collection_id: int,
        *,
        last_event_id: str | None = None,
        mode: WatchMode = "auto",
        poll_interval: float = 1.0,
        read_timeout: float | None = DEFAULT_READ_TIMEOUT,
    ) -> AsyncJobWatch:
        """Follow a collection's jobs; see TrackerClient.watch_collection."""
        state = WatchState(
            collection_id,
            None,
            mode=mode,
            last_event_id=last_event_id,
            poll_interval=poll_interval,
        )
        return AsyncJobWatch(self._http, state, read_timeout)

    async def aclose(self) -> None:
        """Close the connections, after which requests raise RuntimeError."""
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

    async def _send(self, call: Call[T]) -> T:
        response = await self._http.request(
            call.method, call.path, params=call.params, body=call.body
        )
        return decode(response, call.result)
