"""Delivery state of one reporter: when to send, what a response means, when to stop.

It does no I/O and takes no lock. The thread and asyncio reporters call it under their
own lock and do the waiting and sending themselves.
"""

from __future__ import annotations

import logging

from ingestion_tracker_client._errors import (
    InvalidResponse,
    PayloadTooLarge,
    ServiceUnavailable,
    TrackerError,
    TrackerHTTPError,
)
from ingestion_tracker_client._events import FINAL_TYPES, Event
from ingestion_tracker_client._models import EventResult
from ingestion_tracker_client._options import Backoff, ReporterOptions
from ingestion_tracker_client._queue import EventQueue, describe

logger = logging.getLogger("ingestion_tracker_client")

# The tracker takes at most 1000 events per batch.
BATCH_SIZE = 500


def _is_retryable(error: BaseException) -> bool:
    """Tell whether sending the same batch again may succeed."""
    if isinstance(error, TrackerHTTPError):
        return error.status_code >= 500 or error.status_code in {408, 429}
    # Connection errors, timeouts and anything a custom transport raises.
    return not isinstance(error, InvalidResponse)


class Outbox:
    """The queue, the batch in flight, the retry timing and the close deadline."""

    def __init__(self, job_id: int, options: ReporterOptions) -> None:
        self.job_id = job_id
        self.options = options
        self.queue = EventQueue(options.max_buffer)
        self.in_flight: list[Event] = []
        self.cancel_requested = False
        self.deadline: float | None = None
        self._final_settled = False
        self._next_flush = 0.0
        self._retry_at = 0.0
        self._backoff = Backoff(options.backoff_initial, options.backoff_max)
        self._batch_size = BATCH_SIZE
        self._dropped = 0
        self._logged: set[str] = set()
        # Monotonic time of the last batch the tracker accepted, and whether more
        # heartbeats can help the job.
        self._last_sent: float | None = None
        self._heartbeats_useful = True

    @property
    def closing(self) -> bool:
        return self.deadline is not None

    def add(self, event: Event) -> bool:
        """Queue an event; return whether it makes a batch due sooner.

        Only then does the sender need waking: an event joining a queue that already
        waits for the flush interval or a retry delay leaves that time unchanged.
        """
        was_empty = not self.queue
        dropped = self.queue.add(event)
        if dropped:
            self._count_dropped(dropped)
        return was_empty or event.type in FINAL_TYPES

    def begin_close(self, now: float) -> float:
        """Start closing and return the deadline for the remaining events."""
        if self.deadline is None:
            self.deadline = now + self.options.close_timeout
        return self.deadline

    def heartbeat_due(self, now: float) -> bool:
        """Tell whether the reporter should queue a heartbeat now."""
        wait = self._heartbeat_wait(now)
        return wait is not None and wait <= 0

    def wait_time(self, now: float) -> float | None:
        """Return seconds until the next batch is due: 0 to send now, None when idle.

        A final status, or closing, skips the flush interval but not a retry delay.
        An empty queue waits for the next heartbeat.
        """
        if not self.queue:
            return self._heartbeat_wait(now)
        due = self._retry_at
        if not (self.closing or self.queue.has_final()):
            due = max(due, self._next_flush)
        wait = max(0.0, due - now)
        if self.deadline is not None:
            wait = min(wait, max(0.0, self.deadline - now))
        return wait

    def finished(self, now: float) -> bool:
        """Tell whether the sender can stop, at the close deadline or once all is sent.

        All is sent when the queue is empty after the final status or a close.
        """
        if self.deadline is not None and now >= self.deadline:
            return True
        return not self.queue and (self.closing or self._final_settled)

    def _heartbeat_wait(self, now: float) -> float | None:
        """Return seconds until a heartbeat is due, or None when none will be.

        Heartbeats keep a job that the tracker applies events to from showing
        stalled, so none are sent before the first delivered batch, after a final
        status, while closing, or once the tracker ignores this attempt's events.
        """
        interval = self.options.heartbeat_interval
        if (
            interval is None
            or self._last_sent is None
            or self.queue
            or self.in_flight
            or self.closing
            or self._final_settled
            or not self._heartbeats_useful
        ):
            return None
        return max(0.0, self._last_sent + interval - now)

    def take(self) -> list[Event]:
        self.in_flight = self.queue.take(self._batch_size)
        return self.in_flight

    def request_timeout(self, now: float, default: float | None) -> float | None:
        """Return the timeout for the next request, shortened to the close deadline."""
        if self.deadline is None:
            return default
        remaining = max(0.001, self.deadline - now)
        return remaining if default is None else min(default, remaining)

    def unsent(self) -> list[Event]:
        return [*self.in_flight, *self.queue]

    def delivered(self, results: list[EventResult], now: float) -> None:
        """Record a batch that the tracker accepted with a 200, and read its results."""
        batch = self._settle(final=True)
        if self._backoff.failures:
            logger.info(
                "Sent the events of ingestion job %s after %d failed tries",
                self.job_id,
                self._backoff.failures,
                extra={"action": "events_sent_after_retry", "job_id": self.job_id},
            )
        self._backoff.reset()
        self._retry_at = 0.0
        self._next_flush = now + self.options.flush_interval
        self._last_sent = now
        for result in results:
            self._read_result(result)
        if len(results) != len(batch):
            self._log_once(
                "result_count",
                logging.WARNING,
                "The tracker returned %d results for %d events of ingestion job %s",
                len(results),
                len(batch),
                self.job_id,
            )

    def failed(self, error: BaseException, now: float) -> None:
        """Record a batch that was not delivered: retry, split or drop it."""
        if isinstance(error, PayloadTooLarge) and len(self.in_flight) > 1:
            self._split(self._settle(final=False))
        elif isinstance(error, InvalidResponse):
            self._log_unreadable(self._settle(final=True), error)
        elif _is_retryable(error):
            self._retry(self._settle(final=False), error, now)
        else:
            self._log_rejected(self._settle(final=True), error)

    def _settle(self, *, final: bool) -> list[Event]:
        """End the batch in flight; ``final`` when its events will not be sent again."""
        batch = self.in_flight
        self.in_flight = []
        if final and any(event.type in FINAL_TYPES for event in batch):
            self._final_settled = True
        return batch

    def _retry(self, batch: list[Event], error: BaseException, now: float) -> None:
        hint = error.retry_after if isinstance(error, ServiceUnavailable) else None
        delay = self._backoff.next_delay(hint)
        self._retry_at = now + delay
        dropped = self.queue.requeue(batch)
        if dropped:
            self._count_dropped(dropped)
        first = self._backoff.failures == 1
        logger.log(
            logging.WARNING if first else logging.DEBUG,
            "Could not send events of ingestion job %s (%s); trying again in %.2f s "
            "(try %d): %s",
            self.job_id,
            describe(batch),
            delay,
            self._backoff.failures,
            error,
            # A traceback helps only for errors the SDK did not expect.
            exc_info=error if first and not isinstance(error, TrackerError) else None,
            extra={"action": "events_retry_scheduled", "job_id": self.job_id},
        )

    def _split(self, batch: list[Event]) -> None:
        self._batch_size = max(1, len(batch) // 2)
        self.queue.requeue(batch)
        logger.warning(
            "A batch of ingestion job %s (%s) exceeds the tracker's body limit; "
            "sending at most %d events per batch from now on",
            self.job_id,
            describe(batch),
            self._batch_size,
            extra={"action": "events_batch_split", "job_id": self.job_id},
        )

    def _log_rejected(self, batch: list[Event], error: BaseException) -> None:
        status = getattr(error, "status_code", None)
        lost_final = any(event.type in FINAL_TYPES for event in batch)
        key = f"rejected_{status}"
        first = key not in self._logged
        self._logged.add(key)
        logger.log(
            logging.ERROR if first or lost_final else logging.DEBUG,
            "The tracker rejected events of ingestion job %s (%s); dropping them, "
            "because sending them again cannot succeed: %s",
            self.job_id,
            describe(batch),
            error,
            extra={"action": "events_rejected", "job_id": self.job_id},
        )

    def _log_unreadable(self, batch: list[Event], error: BaseException) -> None:
        logger.error(
            "The tracker accepted events of ingestion job %s (%s), but its response "
            "could not be read, so a cancel request in it may be missed: %s",
            self.job_id,
            describe(batch),
            error,
            extra={"action": "events_response_invalid", "job_id": self.job_id},
        )

    def _read_result(self, result: EventResult) -> None:
        if result.reason in {"not_found", "stale_attempt", "job_terminal"}:
            self._heartbeats_useful = False
        if result.cancel_requested and not self.cancel_requested:
            self.cancel_requested = True
            logger.info(
                "The tracker requested a cancel of ingestion job %s",
                self.job_id,
                extra={"action": "cancel_requested", "job_id": self.job_id},
            )
        if result.reason in {"not_found", "attempt_ahead"}:
            self._log_once(
                result.reason,
                logging.ERROR,
                "The tracker did not apply an event of ingestion job %s (%s): %s",
                self.job_id,
                result.reason,
                result.detail,
            )
        elif result.reason == "job_terminal":
            self._log_once(
                result.reason,
                logging.INFO,
                "Ingestion job %s is already completed, failed, cancelled or deleted, "
                "so the tracker ignores this reporter's events (job_terminal)",
                self.job_id,
            )
        elif result.reason == "stale_attempt":
            self._log_once(
                result.reason,
                logging.WARNING,
                "Ingestion job %s was retried after this reporter's attempt started, "
                "so the tracker ignores its events (stale_attempt)",
                self.job_id,
            )

    def _log_once(self, key: str, level: int, message: str, *args: object) -> None:
        """Log at ``level`` the first time ``key`` comes up, and at debug after that."""
        if key in self._logged:
            level = logging.DEBUG
        self._logged.add(key)
        logger.log(
            level,
            message,
            *args,
            extra={"action": f"event_{key}", "job_id": self.job_id},
        )

    def _count_dropped(self, count: int) -> None:
        before = self._dropped
        self._dropped += count
        # Log at the 1st, 10th, 100th ... drop, so a long outage logs only a few lines.
        if before == 0 or len(str(before)) < len(str(self._dropped)):
            logger.warning(
                "The event buffer of ingestion job %s is full (max_buffer=%d) while "
                "the tracker is unreachable; %d heartbeats dropped so far",
                self.job_id,
                self.options.max_buffer,
                self._dropped,
                extra={"action": "heartbeats_dropped", "job_id": self.job_id},
            )
