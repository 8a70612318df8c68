"""Decisions of a watch, without I/O: the next request and what a response means.

A watch follows the tracker's server-sent event stream of one job or one collection
and falls back to polling where the stream cannot be used. The blocking and asyncio
drivers in ``_watchers`` do the requests and the waiting, and ask a WatchState what
to do at every step.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import httpx
import msgspec

from ingestion_tracker_client._calls import collection_path, job_path
from ingestion_tracker_client._errors import (
    InvalidResponse,
    TrackerConnectionError,
    TrackerError,
    TrackerHTTPError,
    error_detail,
    error_for_response,
)
from ingestion_tracker_client._models import Job, JobPage
from ingestion_tracker_client._sse import ServerSentEvent, SSEParser
from ingestion_tracker_client._transport import Params, decode

logger = logging.getLogger("ingestion_tracker_client")

WatchMode = Literal["auto", "stream", "poll"]
WATCH_MODES = ("auto", "stream", "poll")
STREAM_MEDIA_TYPE = "text/event-stream"
# Reconnection delay until the stream's ``retry`` field sets one, as EventSource's
# default of a few seconds would make a watch slow to resume.
DEFAULT_RECONNECT_SECONDS = 1.0
MAX_RECONNECT_SECONDS = 30.0
# In auto mode, this many connections in a row that failed or ended before a
# message arrived switch the watch to polling.
STREAM_FAILURES_BEFORE_POLLING = 3
# The tracker sends a keep-alive comment every 15 s by default, so three missed
# ones mean a dead connection.
DEFAULT_READ_TIMEOUT = 45.0
# Jobs per request when a collection watch polls the list.
POLL_PAGE_SIZE = 100
# Statuses that mean the stream endpoint is missing or refuses event streams.
_NO_STREAM_STATUSES = frozenset({404, 405, 406, 501})
_TRANSIENT_STATUSES = frozenset({408, 429})


@dataclass(frozen=True)
class WatchRequest:
    """The next GET of a watch, sent after ``delay`` seconds."""

    stream: bool
    path: str
    params: Params | None
    headers: dict[str, str]
    delay: float


def _is_transient(error: TrackerError) -> bool:
    if isinstance(error, TrackerConnectionError):
        return True
    if isinstance(error, TrackerHTTPError):
        return error.status_code >= 500 or error.status_code in _TRANSIENT_STATUSES
    return False


def _is_event_stream(response: httpx.Response) -> bool:
    media_type = str(response.headers.get("content-type", "")).split(";")[0]
    return media_type.strip().lower() == STREAM_MEDIA_TYPE


def _names_a_job(response: httpx.Response) -> bool:
    """Tell a tracker's 404 for an unknown job from a 404 for an unknown path."""
    try:
        body = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        return False
    if not isinstance(body, dict):
        return False
    return "job" in str(body.get("detail", "")).lower()


_NEVER = datetime.min.replace(tzinfo=UTC)


def _updated_at(job: Job) -> datetime:
    return job.updated_at or _NEVER


class WatchState:
    """Cursor, connection mode, delays and change detection of one watch.

    ``job_id`` None watches every job of the collection. The state decides, and the
    driver acts: it sends ``next_request()``, reads the response and reports back
    through the other methods, which return the jobs to yield.
    """

    def __init__(
        self,
        collection_id: int,
        job_id: int | None,
        *,
        mode: WatchMode,
        last_event_id: str | None,
        poll_interval: float,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if mode not in WATCH_MODES:
            raise ValueError(f"mode must be one of {WATCH_MODES}, got {mode!r}")
        if poll_interval <= 0:
            raise ValueError(
                f"poll_interval must be above 0 seconds, got {poll_interval}"
            )
        self.collection_id = collection_id
        self.job_id = job_id
        self.mode = mode
        self.streaming = mode != "poll"
        self.last_event_id = last_event_id
        self.done = False
        self._path = (
            collection_path(collection_id)
            if job_id is None
            else job_path(collection_id, job_id)
        )
        self._poll_interval = poll_interval
        self._uniform = uniform
        self._delay = 0.0
        self._reconnect = DEFAULT_RECONNECT_SECONDS
        self._failures = 0
        self._etag: str | None = None
        self._last_job: Job | None = None
        self._changes = ChangeFilter()
        self._offset = 0
        self._round: dict[int, Job] = {}

    @property
    def subject(self) -> str:
        if self.job_id is None:
            return f"collection {self.collection_id}"
        return f"ingestion job {self.job_id} in collection {self.collection_id}"

    def next_request(self) -> WatchRequest:
        """Return the next request and how long to wait before sending it."""
        delay, self._delay = self._delay, 0.0
        if self.streaming:
            return WatchRequest(
                True, self._stream_path(), None, self._stream_headers(), delay
            )
        headers = {}
        if self._etag is not None and self._offset == 0:
            headers["If-None-Match"] = self._etag
        if self.job_id is not None:
            return WatchRequest(False, self._path, None, headers, delay)
        params: Params = {
            "sort_by": "updated_at",
            "sort_order": "desc",
            "limit": POLL_PAGE_SIZE,
            "offset": self._offset,
        }
        return WatchRequest(
            False, f"{self._path}/ingestion-jobs", params, headers, delay
        )

    def new_parser(self) -> SSEParser:
        return SSEParser(self.last_event_id or "")

    def accepts_stream(self, response: httpx.Response) -> bool:
        return response.status_code == 200 and _is_event_stream(response)

    def stream_refused(self, response: httpx.Response) -> None:
        """Handle a stream response that is not an event stream; its body is read.

        Ends a job watch on 204, switches to polling where the tracker has no stream
        (in auto mode), schedules a reconnect on a transient error and raises the
        SDK's error for anything else.
        """
        status = response.status_code
        if status == 204 and self.job_id is not None:
            self.done = True
            return
        if status == 404 and self.job_id is not None and _names_a_job(response):
            raise error_for_response(response)
        if status in _NO_STREAM_STATUSES or status in {200, 204}:
            self._no_stream(response)
            return
        error = error_for_response(response)
        if not _is_transient(error):
            raise error
        self.connection_failed(error)

    def accept(self, event: ServerSentEvent) -> Job | None:
        """Decode a stream message and move the cursor to it.

        Returns None for a message of a type other than ``message``.
        """
        if event.event != "message":
            return None
        try:
            job = msgspec.json.decode(event.data, type=Job)
        except msgspec.DecodeError as exc:
            raise InvalidResponse(
                f"The event stream of {self.subject} sent a message with id "
                f"{event.id!r} that is not a valid Job: {exc}"
            ) from exc
        self.last_event_id = event.id or self.last_event_id
        self._failures = 0
        self._seen(job)
        return job

    def synced(self, parser: SSEParser) -> bool:
        """Take the parser's cursor, which id-only messages move without a job.

        Returns whether the cursor moved. Also takes the stream's reconnection time.
        """
        if parser.retry is not None:
            self._reconnect = parser.retry / 1000
        if not parser.last_event_id or parser.last_event_id == self.last_event_id:
            return False
        self.last_event_id = parser.last_event_id
        self._failures = 0
        return True

    def stream_ended(self, error: TrackerError | None, received: bool) -> None:
        """Schedule the reconnect after an event stream ended or broke off.

        ``received`` is True when the connection delivered a message. A connection
        that delivered none counts as a failure.
        """
        if self.done:
            return
        if received:
            self._delay = self._reconnect
            logger.debug(
                "The event stream of %s ended (%s); reconnecting in %.2f s",
                self.subject,
                error or "closed by the tracker",
                self._delay,
                extra={"action": "watch_reconnect", "job_id": self.job_id},
            )
            return
        self.connection_failed(error or TrackerConnectionError("empty event stream"))

    def connection_failed(self, error: TrackerError) -> None:
        """Count a failed connection and back off, or fall back to polling."""
        self._failures += 1
        if self.mode == "auto" and self._failures >= STREAM_FAILURES_BEFORE_POLLING:
            self._switch_to_polling(f"{self._failures} stream connections failed")
            return
        self._delay = self._backoff(self._reconnect, error)
        logger.log(
            logging.WARNING if self._failures == 1 else logging.DEBUG,
            "The event stream of %s failed; reconnecting in %.2f s (try %d): %s",
            self.subject,
            self._delay,
            self._failures,
            error,
            extra={"action": "watch_stream_failed", "job_id": self.job_id},
        )

    def polled(self, response: httpx.Response) -> list[Job]:
        """Read a poll response and return the changed jobs to yield, oldest first."""
        if response.status_code == 304:
            return self._round_done([])
        if response.is_error:
            error = error_for_response(response)
            if not _is_transient(error):
                raise error
            self.poll_failed(error)
            return []
        if self.job_id is not None:
            return self._polled_job(response)
        return self._polled_page(response)

    def poll_failed(self, error: TrackerError) -> None:
        self._failures += 1
        self._offset = 0
        self._round = {}
        self._delay = self._backoff(self._poll_interval, error)
        logger.log(
            logging.WARNING if self._failures == 1 else logging.DEBUG,
            "Polling %s failed; trying again in %.2f s (try %d): %s",
            self.subject,
            self._delay,
            self._failures,
            error,
            extra={"action": "watch_poll_failed", "job_id": self.job_id},
        )

    def _stream_path(self) -> str:
        if self.job_id is None:
            return f"{self._path}/ingestion-stream"
        return f"{self._path}/stream"

    def _stream_headers(self) -> dict[str, str]:
        headers = {"Accept": STREAM_MEDIA_TYPE, "Cache-Control": "no-cache"}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        return headers

    def _no_stream(self, response: httpx.Response) -> None:
        request = response.request
        reason = (
            f"GET {request.url.path} returned {response.status_code} "
            f"{response.headers.get('content-type', 'without a content type')}"
        )
        if self.mode == "auto":
            self._switch_to_polling(reason)
            return
        raise TrackerHTTPError(
            f"The tracker does not serve an event stream for {self.subject}: "
            f"{reason}: {error_detail(response)}; watch with mode='auto' or "
            "mode='poll' to poll instead",
            request=request,
            response=response,
        )

    def _switch_to_polling(self, reason: str) -> None:
        # NOTE: a watch never goes back to the stream, even when the failures that
        # switched it were a tracker restart. A new watch tries the stream again.
        self.streaming = False
        self._failures = 0
        self._delay = 0.0
        logger.info(
            "Polling %s every %.2f s, because its event stream cannot be used: %s",
            self.subject,
            self._poll_interval,
            reason,
            extra={"action": "watch_polling", "job_id": self.job_id},
        )

    def _backoff(self, base: float, error: TrackerError) -> float:
        """Double ``base`` per failure up to the maximum, with ±20 % jitter."""
        delay = min(MAX_RECONNECT_SECONDS, base * 2.0 ** (self._failures - 1))
        delay *= self._uniform(0.8, 1.2)
        retry_after = getattr(error, "retry_after", None)
        if isinstance(retry_after, float):
            delay = max(delay, min(retry_after, MAX_RECONNECT_SECONDS))
        return delay

    def _seen(self, job: Job) -> None:
        self._last_job = job
        self._changes.seen([job])
        if self.job_id is not None and job.is_terminal:
            self.done = True

    def _polled_job(self, response: httpx.Response) -> list[Job]:
        job = decode(response, Job)
        self._etag = response.headers.get("etag", self._etag)
        changed = job != self._last_job
        self._seen(job)
        return self._round_done([job] if changed else [])

    def _polled_page(self, response: httpx.Response) -> list[Job]:
        page = decode(response, JobPage)
        if self._offset == 0:
            self._etag = response.headers.get("etag", self._etag)
        for job in self._changes.changed(page.items):
            self._round.setdefault(job.id, job)
        if page.has_more and page.items and self._changes.may_continue(page.items[-1]):
            self._offset += len(page.items)
            return []
        changed = sorted(
            self._round.values(), key=lambda job: (_updated_at(job), job.id)
        )
        if self._changes.baseline:
            changed = []
        self._changes.seen(list(self._round.values()))
        return self._round_done(changed)

    def _round_done(self, changed: list[Job]) -> list[Job]:
        self._failures = 0
        self._offset = 0
        self._round = {}
        self._delay = self._poll_interval
        return changed


class ChangeFilter:
    """A detector of the jobs, in a list sorted by ``updated_at`` descending, that
    changed since the last poll.

    It keeps the newest ``updated_at`` seen and the ids of the jobs that have it, so
    its memory does not grow with the collection. The first poll only sets this
    mark, as a collection stream starts with no jobs either.
    """

    def __init__(self) -> None:
        self.mark: datetime | None = None
        self.ids_at_mark: set[int] = set()

    @property
    def baseline(self) -> bool:
        return self.mark is None

    def changed(self, jobs: list[Job]) -> list[Job]:
        return [job for job in jobs if self._is_new(job)]

    def may_continue(self, oldest: Job) -> bool:
        """Tell whether the next page may hold changes, given this page's last job."""
        return self.mark is not None and _updated_at(oldest) >= self.mark

    def seen(self, jobs: list[Job]) -> None:
        for job in jobs:
            updated = _updated_at(job)
            if self.mark is None or updated > self.mark:
                self.mark = updated
                self.ids_at_mark = {job.id}
            elif updated == self.mark:
                self.ids_at_mark.add(job.id)

    def _is_new(self, job: Job) -> bool:
        updated = _updated_at(job)
        if self.mark is None or updated > self.mark:
            return True
        return updated == self.mark and job.id not in self.ids_at_mark
