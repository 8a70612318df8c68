"""The reporter API that the thread and asyncio flavours share.

Every public method here only queues an event under a lock and returns. None of them
raises into the caller except ``raise_if_cancelled``, which exists to raise. Invalid
arguments and internal errors are logged. An invalid count or a progress call is
dropped, and other invalid values are left out or sent as text.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Concatenate, ParamSpec, TypeVar

from ingestion_tracker_client._errors import JobCancelled
from ingestion_tracker_client._events import (
    ERROR_MESSAGE_MAX_CHARS,
    FINAL_TYPES,
    INT_MAX,
    MESSAGE_MAX_CHARS,
    Event,
    SeqCounter,
    cut_traceback,
    failure_fields,
    json_object,
    progress_count,
    truncate,
    utc_now,
)
from ingestion_tracker_client._options import ReporterOptions
from ingestion_tracker_client._outbox import Outbox
from ingestion_tracker_client._queue import describe

logger = logging.getLogger("ingestion_tracker_client")

P = ParamSpec("P")
R = TypeVar("R", bound="ReporterBase")


def _logs_errors(
    method: Callable[Concatenate[R, P], None],
) -> Callable[Concatenate[R, P], None]:
    """Wrap a reporter method so that an Exception it raises is logged instead."""

    @functools.wraps(method)
    def wrapper(self: R, /, *args: P.args, **kwargs: P.kwargs) -> None:
        try:
            method(self, *args, **kwargs)
        except Exception:
            logger.exception(
                "%s() of the reporter of ingestion job %s failed",
                method.__name__,
                self.job_id,
                extra={"action": "reporter_call_failed", "job_id": self.job_id},
            )

    return wrapper


class ReporterBase:
    """Events of one job and attempt; the subclass sends them in the background."""

    def __init__(
        self, job_id: int, *, attempt: int | None, options: ReporterOptions
    ) -> None:
        self._job_id = job_id
        self._attempt = attempt
        self._options = options
        self._lock = threading.Lock()
        self._outbox = Outbox(job_id, options)
        self._seq = SeqCounter()
        self._stage: str | None = None
        self._final_status: str | None = None
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} job_id={self._job_id} attempt={self._attempt} "
            f"final_status={self._final_status!r}>"
        )

    @property
    def job_id(self) -> int:
        return self._job_id

    @property
    def attempt(self) -> int | None:
        """Attempt sent with every event; None lets the tracker use the current one."""
        return self._attempt

    @property
    def cancel_requested(self) -> bool:
        """Whether the tracker requested a cancel of the job; stays True once set."""
        return self._outbox.cancel_requested

    @property
    def final_status(self) -> str | None:
        """The ``completed``, ``failed`` or ``cancelled`` reported, or None so far."""
        return self._final_status

    @_logs_errors
    def started(self) -> None:
        """Report that work on the job began."""
        self._report("started", {})

    @_logs_errors
    def progress(self, current: int, total: int, message: str | None = None) -> None:
        """Report progress, with the KB plugin callback's ``(current, total, message)``.

        Only the latest progress waiting to be sent is kept.
        """
        try:
            fields: dict[str, Any] = {
                "current": progress_count(current, "current"),
                "total": progress_count(total, "total"),
            }
        except ValueError as exc:
            logger.warning(
                "Ignored progress of ingestion job %s: %s", self._job_id, exc
            )
            return
        if message is not None:
            fields["message"] = truncate(str(message), MESSAGE_MAX_CHARS)
        self._report("progress", fields)

    @_logs_errors
    def heartbeat(self) -> None:
        """Report that the worker is alive without changing the job's progress."""
        self._report("heartbeat", {})

    @_logs_errors
    def completed(
        self,
        document_count: int | None = None,
        processing_stats: Mapping[str, Any] | None = None,
        message: str | None = None,
    ) -> None:
        """Report success; later events of this reporter are ignored."""
        fields: dict[str, Any] = {}
        if document_count is not None:
            try:
                fields["document_count"] = progress_count(
                    document_count, "document_count", INT_MAX
                )
            except ValueError as exc:
                logger.warning(
                    "Left document_count out of the completed event of ingestion "
                    "job %s: %s",
                    self._job_id,
                    exc,
                )
        if processing_stats is not None:
            fields["processing_stats"] = json_object(
                processing_stats, "processing_stats", self._job_id
            )
        if message is not None:
            fields["message"] = truncate(str(message), MESSAGE_MAX_CHARS)
        self._report("completed", fields)

    @_logs_errors
    def failed(
        self, error_message: str, error_details: Mapping[str, Any] | None = None
    ) -> None:
        """Report failure; the current stage is added to the details unless present."""
        details = json_object(error_details or {}, "error_details", self._job_id)
        if self._stage is not None:
            details.setdefault("stage", self._stage)
        if isinstance(details.get("traceback"), str):
            details["traceback"] = cut_traceback(details["traceback"])
        message = truncate(str(error_message), ERROR_MESSAGE_MAX_CHARS)
        fields = {"error_message": message, "error_details": details}
        self._report("failed", fields)

    @_logs_errors
    def cancelled(self) -> None:
        """Report that the worker stopped because of a cancel request."""
        self._report("cancelled", {})

    @_logs_errors
    def stage(self, name: str) -> None:
        """Remember the current stage, which failure reports name in ``stage``."""
        self._stage = str(name)

    def raise_if_cancelled(self) -> None:
        """Raise JobCancelled if the tracker requested a cancel of this job."""
        if self.cancel_requested:
            raise JobCancelled(self._job_id)

    def _report(self, kind: str, fields: dict[str, Any]) -> None:
        """Queue an event and wake the sender if the event makes a batch due."""
        with self._lock:
            if not self._accepts(kind):
                return
            if self._outbox.add(self._event(kind, fields)):
                self._wake_sender()

    def _accepts(self, kind: str) -> bool:
        """Check that an event of ``kind`` may still be sent, noting a final status.

        Called under the lock.
        """
        ignored_because = None
        if self._closed:
            ignored_because = "the reporter is closed"
        elif self._final_status is not None:
            ignored_because = f"{self._final_status} was already reported"
        if ignored_because is not None:
            logger.debug(
                "Ignored the %s event of ingestion job %s because %s",
                kind,
                self._job_id,
                ignored_because,
                extra={"action": "event_ignored", "job_id": self._job_id},
            )
            return False
        if kind in FINAL_TYPES:
            self._final_status = kind
        return True

    def _queue_heartbeat_if_due(self, now: float) -> None:
        """Queue a heartbeat when nothing was sent for ``heartbeat_interval``.

        The sender calls it under the lock before it decides how long to wait.
        """
        if self._outbox.heartbeat_due(now):
            self._outbox.add(self._event("heartbeat", {}))

    def _event(self, kind: str, fields: dict[str, Any]) -> Event:
        return Event(
            job_id=self._job_id,
            type=kind,
            seq=self._seq.next(),
            occurred_at=utc_now(),
            attempt=self._attempt,
            **fields,
        )

    def _wake_sender(self) -> None:
        """Start or wake the background sender; called under the lock."""
        raise NotImplementedError

    def _report_exit(self, exc: BaseException | None) -> bool:
        """Report how a ``with`` block ended; return True to suppress its exception.

        A clean exit reports ``completed`` unless a final status was reported. A
        JobCancelled of this job reports ``cancelled`` and is suppressed. Any other
        exception, including KeyboardInterrupt and asyncio.CancelledError, reports
        ``failed`` with its type, traceback and the last stage, and propagates.
        """
        if exc is None:
            if self._final_status is None:
                self.completed()
            return False
        if isinstance(exc, JobCancelled) and exc.job_id in (None, self._job_id):
            self.cancelled()
            return True
        self._report_failure(exc)
        return False

    @_logs_errors
    def _report_failure(self, exc: BaseException) -> None:
        self._report("failed", failure_fields(exc, self._stage))

    def _begin_close(self, now: float) -> float | None:
        """Stop taking events and return the delivery deadline, or None if closed."""
        with self._lock:
            if self._closed:
                return None
            self._closed = True
            deadline = self._outbox.begin_close(now)
            self._wake_sender()
            return deadline

    def _log_close(self) -> None:
        with self._lock:
            unsent = self._outbox.unsent()
        if not unsent:
            logger.debug(
                "Closed the reporter of ingestion job %s",
                self._job_id,
                extra={"action": "reporter_closed", "job_id": self._job_id},
            )
            return
        lost_final = any(event.type in FINAL_TYPES for event in unsent)
        logger.error(
            "Could not deliver events of ingestion job %s (%s) within the close "
            "timeout of %.1f s%s; the tracker was unreachable or too slow",
            self._job_id,
            describe(unsent),
            self._options.close_timeout,
            ", including its final status" if lost_final else "",
            extra={"action": "events_lost", "job_id": self._job_id},
        )
