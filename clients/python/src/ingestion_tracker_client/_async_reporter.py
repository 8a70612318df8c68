"""The asyncio reporter: a task on the event loop sends the events of one job."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from types import TracebackType
from typing import Self

from ingestion_tracker_client._events import Event, EventBatch
from ingestion_tracker_client._models import EventResults
from ingestion_tracker_client._options import ReporterOptions
from ingestion_tracker_client._reporting import ReporterBase
from ingestion_tracker_client._transport import AsyncHTTP, decode

logger = logging.getLogger("ingestion_tracker_client")


class AsyncJobReporter(ReporterBase):
    """Reporter of one job's events, sent by a task on the loop that created it.

    The reporting methods are plain functions, safe to call from the loop and from
    other threads, such as a plugin run with ``asyncio.to_thread``. Use it with
    ``async with``, which reports like JobReporter's ``with``, or await ``aclose()``.
    """

    def __init__(
        self,
        http: AsyncHTTP,
        job_id: int,
        *,
        attempt: int | None,
        options: ReporterOptions,
        request_timeout: float | None,
    ) -> None:
        super().__init__(job_id, attempt=attempt, options=options)
        self._http = http
        self._request_timeout = request_timeout
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def aclose(self) -> None:
        """Send what is queued, waiting at most ``close_timeout`` seconds.

        Logs an error naming what was not delivered. Later calls are ignored.
        """
        try:
            deadline = self._begin_close(time.monotonic())
            if deadline is not None:
                await self._stop_sender(deadline)
                self._log_close()
        except Exception:
            logger.exception("Closing the reporter of job %s failed", self.job_id)

    async def __aenter__(self) -> Self:
        self.started()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        suppress = self._report_exit(exc)
        await self.aclose()
        return suppress

    async def _stop_sender(self, deadline: float) -> None:
        """Let the sender deliver until ``deadline``, then cancel it."""
        task = self._task
        if task is None or task.done():
            return
        await asyncio.wait({task}, timeout=max(0.0, deadline - time.monotonic()))
        if not task.done():
            task.cancel()
            # asyncio.wait, unlike awaiting the task, leaves a cancel of the caller
            # to propagate instead of mixing it up with the sender's.
            await asyncio.wait({task})

    def _wake_sender(self) -> None:
        if threading.get_ident() == self._loop_thread:
            self._wake_on_loop()
        else:
            self._loop.call_soon_threadsafe(self._wake_on_loop)

    def _wake_on_loop(self) -> None:
        if self._task is None and self._outbox.queue:
            self._task = self._loop.create_task(
                self._run(), name=f"ingestion-tracker-job-{self.job_id}"
            )
        self._wakeup.set()

    async def _run(self) -> None:
        try:
            while True:
                self._wakeup.clear()
                step = self._next_step()
                if step is None:
                    return
                batch, wait, timeout = step
                if batch:
                    await self._send(batch, timeout)
                else:
                    await self._sleep(wait)
        except Exception:
            logger.exception(
                "The sender task of ingestion job %s stopped unexpectedly",
                self.job_id,
                extra={"action": "sender_crashed", "job_id": self.job_id},
            )

    def _next_step(self) -> tuple[list[Event], float | None, float | None] | None:
        """Take a due batch, or return how long to wait; None stops the sender."""
        with self._lock:
            now = time.monotonic()
            if self._outbox.finished(now):
                return None
            self._queue_heartbeat_if_due(now)
            wait = self._outbox.wait_time(now)
            if wait != 0:
                return [], wait, None
            timeout = self._outbox.request_timeout(now, self._request_timeout)
            return self._outbox.take(), 0.0, timeout

    async def _sleep(self, seconds: float | None) -> None:
        """Sleep until a new event or close wakes the sender, or ``seconds`` pass."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wakeup.wait()

    async def _send(self, batch: list[Event], request_timeout: float | None) -> None:
        try:
            response = await self._http.request(
                "POST",
                "/ingestion-events",
                body=EventBatch(events=batch),
                request_timeout=request_timeout,
            )
            results = decode(response, EventResults).results
        except Exception as error:
            with self._lock:
                self._outbox.failed(error, time.monotonic())
        else:
            with self._lock:
                self._outbox.delivered(results, time.monotonic())
