"""The blocking reporter: a daemon thread sends the events of one job."""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType
from typing import Self

from ingestion_tracker_client._events import Event, EventBatch
from ingestion_tracker_client._models import EventResults
from ingestion_tracker_client._options import ReporterOptions
from ingestion_tracker_client._reporting import ReporterBase
from ingestion_tracker_client._transport import SyncHTTP, decode

logger = logging.getLogger("ingestion_tracker_client")


class JobReporter(ReporterBase):
    """Reporter of one job's events, callable from any thread, sent by a daemon thread.

    Use it as a context manager, or call ``close()``, because events still queued
    when the interpreter exits are lost with the daemon thread. The ``with`` block
    reports ``started`` on entry. On exit it reports ``completed``, or ``cancelled``
    for a JobCancelled of this job, which it suppresses, or ``failed`` for any other
    exception, which propagates.
    """

    def __init__(
        self,
        http: SyncHTTP,
        job_id: int,
        *,
        attempt: int | None,
        options: ReporterOptions,
        request_timeout: float | None,
    ) -> None:
        super().__init__(job_id, attempt=attempt, options=options)
        self._http = http
        self._request_timeout = request_timeout
        self._condition = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    def close(self) -> None:
        """Send what is queued, waiting at most ``close_timeout`` seconds.

        Logs an error naming what was not delivered. Later calls are ignored.
        """
        try:
            self._finish_close(self._begin_close(time.monotonic()))
        except Exception:
            logger.exception("Closing the reporter of job %s failed", self.job_id)

    def __enter__(self) -> Self:
        self.started()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        suppress = self._report_exit(exc)
        self.close()
        return suppress

    def _finish_close(self, deadline: float | None) -> None:
        """Wait for the sender until ``deadline`` and log what it did not deliver."""
        if deadline is None:
            return
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
        self._log_close()

    def _wake_sender(self) -> None:
        if self._thread is None and self._outbox.queue:
            self._thread = threading.Thread(
                target=self._run,
                name=f"ingestion-tracker-job-{self.job_id}",
                daemon=True,
            )
            self._thread.start()
        self._condition.notify()

    def _run(self) -> None:
        try:
            while (batch := self._next_batch()) is not None:
                self._send(*batch)
        except Exception:
            logger.exception(
                "The sender thread of ingestion job %s stopped unexpectedly",
                self.job_id,
                extra={"action": "sender_crashed", "job_id": self.job_id},
            )

    def _next_batch(self) -> tuple[list[Event], float | None] | None:
        """Wait until a batch is due and take it; None when the sender should stop."""
        with self._condition:
            while True:
                now = time.monotonic()
                if self._outbox.finished(now):
                    return None
                self._queue_heartbeat_if_due(now)
                wait = self._outbox.wait_time(now)
                if wait == 0:
                    timeout = self._outbox.request_timeout(now, self._request_timeout)
                    return self._outbox.take(), timeout
                self._condition.wait(wait)

    def _send(self, batch: list[Event], timeout: float | None) -> None:
        try:
            response = self._http.request(
                "POST",
                "/ingestion-events",
                body=EventBatch(events=batch),
                request_timeout=timeout,
            )
            results = decode(response, EventResults).results
        except Exception as error:
            with self._lock:
                self._outbox.failed(error, time.monotonic())
        else:
            with self._lock:
                self._outbox.delivered(results, time.monotonic())
