"""TrackerClient.watch() and its twins against scripted event streams and polls."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
from ingestion_tracker_client import (
    AsyncTrackerClient,
    BadRequest,
    InvalidResponse,
    Job,
    JobNotFound,
    TrackerClient,
    TrackerHTTPError,
    Unauthorized,
    _watch,
)
from sse_fakes import (
    ScriptedTracker,
    empty,
    job_answer,
    job_json,
    message,
    page_answer,
    status,
    stream,
)

BASE_URL = "http://tracker.test"
JOB_STREAM = "/collections/1/ingestion-jobs/5/stream"
JOB_PATH = "/collections/1/ingestion-jobs/5"
COLLECTION_STREAM = "/collections/1/ingestion-stream"
LIST_PATH = "/collections/1/ingestion-jobs"


@pytest.fixture(autouse=True)
def fast_reconnects(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reconnect after failures within milliseconds instead of seconds."""
    monkeypatch.setattr(_watch, "DEFAULT_RECONNECT_SECONDS", 0.001)


def client_for(tracker: ScriptedTracker) -> TrackerClient:
    return TrackerClient(base_url=BASE_URL, transport=httpx.MockTransport(tracker))


def async_client_for(tracker: ScriptedTracker) -> AsyncTrackerClient:
    return AsyncTrackerClient(base_url=BASE_URL, transport=httpx.MockTransport(tracker))


def statuses(jobs: list[Job]) -> list[str]:
    return [job.status for job in jobs]


def watch_all(tracker: ScriptedTracker, **options: Any) -> list[Job]:
    with client_for(tracker) as client, client.watch(1, 5, **options) as watch:
        return list(watch)


def test_job_watch_follows_stream_until_terminal() -> None:
    tracker = ScriptedTracker(
        stream(
            message("1-0", "pending"),
            message("2-0", current=2),
            message("3-0", "completed", current=4),
            message("4-0", "pending"),
        )
    )
    with client_for(tracker) as client, client.watch(1, 5) as watch:
        jobs = list(watch)
    assert statuses(jobs) == ["pending", "processing", "completed"]
    assert jobs[1].progress.current == 2
    assert watch.last_event_id == "3-0"
    assert watch.mode == "stream"
    assert tracker.paths() == [JOB_STREAM]
    assert tracker.header(0, "accept") == "text/event-stream"
    assert tracker.header(0, "last-event-id") is None


def test_last_event_id_follows_each_yielded_job() -> None:
    tracker = ScriptedTracker(stream(message("1-0"), message("2-0", "completed")))
    seen = []
    with client_for(tracker) as client, client.watch(1, 5) as watch:
        for _ in watch:
            seen.append(watch.last_event_id)
    assert seen == ["1-0", "2-0"]


def test_server_close_reconnects_with_last_event_id() -> None:
    tracker = ScriptedTracker(
        stream(message("1-0", "pending"), message("2-0")),
        stream(message("3-0", "completed")),
    )
    jobs = watch_all(tracker)
    assert statuses(jobs) == ["pending", "processing", "completed"]
    assert tracker.paths() == [JOB_STREAM, JOB_STREAM]
    assert tracker.header(1, "last-event-id") == "2-0"


def test_dropped_connection_resumes_without_repeats() -> None:
    tracker = ScriptedTracker(
        stream(message("1-0"), message("2-0", current=1), drop=True),
        stream(message("3-0", current=2), message("4-0", "failed")),
    )
    jobs = watch_all(tracker)
    assert [job.progress.current for job in jobs] == [0, 1, 2, 0]
    assert tracker.header(1, "last-event-id") == "2-0"


def test_half_sent_message_is_not_yielded() -> None:
    half = message("2-0", "completed")[:40]
    tracker = ScriptedTracker(
        stream(message("1-0"), half, drop=True),
        stream(message("2-0", "completed")),
    )
    jobs = watch_all(tracker)
    assert statuses(jobs) == ["processing", "completed"]
    assert tracker.header(1, "last-event-id") == "1-0"


def test_watch_resumes_from_given_cursor() -> None:
    tracker = ScriptedTracker(stream(message("9-1", "completed")))
    jobs = watch_all(tracker, last_event_id="9-0")
    assert statuses(jobs) == ["completed"]
    assert tracker.header(0, "last-event-id") == "9-0"


def test_no_content_ends_job_watch() -> None:
    tracker = ScriptedTracker(stream(message("1-0")), empty(204))
    jobs = watch_all(tracker)
    assert statuses(jobs) == ["processing"]
    assert len(tracker.requests) == 2


def test_unknown_job_raises_job_not_found() -> None:
    detail = "Ingestion job 5 not found in collection 1"
    tracker = ScriptedTracker(status(404, detail))
    with pytest.raises(JobNotFound, match="Ingestion job 5 not found"):
        watch_all(tracker)
    assert tracker.paths() == [JOB_STREAM]


@pytest.mark.parametrize("code", [404, 405, 406])
def test_missing_stream_falls_back_to_polling(code: int) -> None:
    tracker = ScriptedTracker(
        status(code),
        job_answer("processing", current=1),
        job_answer("completed", current=4),
    )
    with (
        client_for(tracker) as client,
        client.watch(1, 5, poll_interval=0.001) as watch,
    ):
        jobs = list(watch)
    assert statuses(jobs) == ["processing", "completed"]
    assert watch.mode == "poll"
    assert tracker.paths() == [JOB_STREAM, JOB_PATH, JOB_PATH]


def test_stream_with_other_content_type_falls_back() -> None:
    tracker = ScriptedTracker(job_answer("processing"), job_answer("completed"))
    jobs = watch_all(tracker, poll_interval=0.001)
    assert statuses(jobs) == ["completed"]
    assert tracker.paths() == [JOB_STREAM, JOB_PATH]


def test_stream_mode_raises_where_no_stream() -> None:
    tracker = ScriptedTracker(status(405, "Method Not Allowed"))
    with pytest.raises(TrackerHTTPError, match="mode='poll'") as raised:
        watch_all(tracker, mode="stream")
    assert raised.value.status_code == 405


def test_poll_mode_sends_if_none_match() -> None:
    tracker = ScriptedTracker(
        job_answer("processing", etag='"v1"'),
        empty(304),
        job_answer("processing", etag='"v1"'),
        job_answer("completed", etag='"v2"'),
    )
    jobs = watch_all(tracker, mode="poll", poll_interval=0.001)
    assert statuses(jobs) == ["processing", "completed"]
    assert tracker.paths() == [JOB_PATH] * 4
    assert tracker.header(0, "if-none-match") is None
    assert tracker.header(1, "if-none-match") == '"v1"'
    assert tracker.header(3, "if-none-match") == '"v1"'


def test_poll_without_etag_yields_only_changes() -> None:
    tracker = ScriptedTracker(
        job_answer("processing", current=1),
        job_answer("processing", current=1),
        job_answer("processing", current=2),
        job_answer("completed", current=4),
    )
    jobs = watch_all(tracker, mode="poll", poll_interval=0.001)
    assert [job.progress.current for job in jobs] == [1, 2, 4]


def test_repeated_stream_failures_fall_back_to_polling() -> None:
    tracker = ScriptedTracker(
        status(503, "Database unavailable"),
        status(502, "Bad Gateway"),
        stream(),
        job_answer("completed"),
    )
    with (
        client_for(tracker) as client,
        client.watch(1, 5, poll_interval=0.001) as watch,
    ):
        jobs = list(watch)
    assert statuses(jobs) == ["completed"]
    assert tracker.paths() == [JOB_STREAM] * 3 + [JOB_PATH]


def test_stream_mode_keeps_reconnecting_after_failures() -> None:
    tracker = ScriptedTracker(
        status(503, "Database unavailable"),
        status(503, "Database unavailable"),
        status(503, "Database unavailable"),
        stream(message("1-0", "completed")),
    )
    jobs = watch_all(tracker, mode="stream")
    assert statuses(jobs) == ["completed"]
    assert len(tracker.requests) == 4


def test_connection_errors_are_retried() -> None:
    calls = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ConnectError("connection refused", request=request)
        return stream(message("1-0", "completed"))(request)

    jobs = watch_all(ScriptedTracker(flaky))
    assert statuses(jobs) == ["completed"]
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("code", "error"), [(400, BadRequest), (401, Unauthorized)], ids=["400", "401"]
)
def test_client_errors_are_raised(code: int, error: type[Exception]) -> None:
    tracker = ScriptedTracker(status(code, "Invalid Last-Event-ID 'x'"))
    with pytest.raises(error):
        watch_all(tracker, last_event_id="x")
    assert len(tracker.requests) == 1


def test_invalid_job_data_raises_invalid_response() -> None:
    tracker = ScriptedTracker(stream('id: 1-0\ndata: {"id": "five"}\n\n'))
    with pytest.raises(InvalidResponse, match="id '1-0'"):
        watch_all(tracker)


def test_other_event_types_are_skipped() -> None:
    tracker = ScriptedTracker(
        stream("event: note\ndata: hello\n\n", message("1-0", "completed"))
    )
    jobs = watch_all(tracker)
    assert statuses(jobs) == ["completed"]


def test_keepalive_comments_are_ignored() -> None:
    tracker = ScriptedTracker(
        stream(": keep-alive\n\n", message("1-0"), ": keep-alive\n\n"),
        stream(message("2-0", "completed")),
    )
    jobs = watch_all(tracker)
    assert statuses(jobs) == ["processing", "completed"]
    assert tracker.header(1, "last-event-id") == "1-0"


def test_close_mid_stream_closes_response() -> None:
    tracker = ScriptedTracker(stream(message("1-0"), message("2-0"), hold=True))
    with client_for(tracker) as client, client.watch(1, 5) as watch:
        first = next(watch)
    assert first.status == "processing"
    assert tracker.bodies[0].closed.is_set()
    assert watch.closed
    assert watch.last_event_id == "1-0"


def test_close_from_another_thread_ends_blocked_read() -> None:
    tracker = ScriptedTracker(stream(message("1-0"), hold=True))
    jobs: list[Job] = []
    with client_for(tracker) as client:
        watch = client.watch(1, 5)
        reader = threading.Thread(target=lambda: jobs.extend(watch))
        reader.start()
        time.sleep(0.05)
        watch.close()
        reader.join(2)
    assert not reader.is_alive()
    assert statuses(jobs) == ["processing"]
    assert len(tracker.requests) == 1


def test_collection_watch_skips_id_only_message() -> None:
    tracker = ScriptedTracker(
        stream("id: 7-0\n\n", message("8-0", "completed"), hold=True)
    )
    with client_for(tracker) as client, client.watch_collection(1) as watch:
        job = next(watch)
    assert job.status == "completed"
    assert watch.last_event_id == "8-0"
    assert tracker.paths() == [COLLECTION_STREAM]


def test_collection_watch_keeps_id_only_cursor_on_reconnect() -> None:
    tracker = ScriptedTracker(
        stream("id: 7-0\n\n"),
        stream(message("8-0"), hold=True),
    )
    with client_for(tracker) as client, client.watch_collection(1) as watch:
        job = next(watch)
    assert job.status == "processing"
    assert tracker.header(1, "last-event-id") == "7-0"


def job_at(job_id: int, second: int, status: str = "processing") -> dict[str, Any]:
    updated = f"2026-01-01T10:00:{second:02d}Z"
    return job_json(status, id=job_id, job_id=job_id, updated_at=updated)


def poll_collection(tracker: ScriptedTracker, count: int) -> list[Job]:
    with client_for(tracker) as client:
        watch = client.watch_collection(1, mode="poll", poll_interval=0.001)
        with watch:
            return [next(watch) for _ in range(count)]


def test_collection_poll_yields_changes_after_first_read() -> None:
    tracker = ScriptedTracker(
        page_answer([job_at(2, 5), job_at(1, 3)]),
        page_answer([job_at(2, 5), job_at(1, 3)]),
        page_answer([job_at(1, 9, "completed"), job_at(3, 7), job_at(2, 5)]),
    )
    jobs = poll_collection(tracker, 2)
    assert [(job.id, job.status) for job in jobs] == [
        (3, "processing"),
        (1, "completed"),
    ]
    params = tracker.requests[0].url.params
    assert params["sort_by"] == "updated_at"
    assert params["sort_order"] == "desc"


def test_collection_poll_reads_pages_until_older_jobs() -> None:
    tracker = ScriptedTracker(
        page_answer([job_at(1, 1)]),
        page_answer([job_at(4, 9), job_at(3, 8)], has_more=True),
        page_answer([job_at(2, 7), job_at(9, 0)], has_more=True),
    )
    jobs = poll_collection(tracker, 3)
    assert [job.id for job in jobs] == [2, 3, 4]
    offsets = [request.url.params["offset"] for request in tracker.requests[:3]]
    assert offsets == ["0", "0", "2"]


def test_collection_poll_yields_new_job_with_same_time() -> None:
    tracker = ScriptedTracker(
        page_answer([job_at(1, 5)]),
        page_answer([job_at(2, 5), job_at(1, 5)]),
        page_answer([job_at(3, 6), job_at(2, 5), job_at(1, 5)]),
    )
    jobs = poll_collection(tracker, 2)
    assert [job.id for job in jobs] == [2, 3]


def test_collection_poll_sends_etag_of_first_page() -> None:
    tracker = ScriptedTracker(
        page_answer([job_at(1, 1)], etag='"p1"'),
        empty(304),
        page_answer([job_at(1, 2)], etag='"p2"'),
    )
    jobs = poll_collection(tracker, 1)
    assert [job.id for job in jobs] == [1]
    assert tracker.header(1, "if-none-match") == '"p1"'
    assert tracker.header(2, "if-none-match") == '"p1"'


def test_collection_falls_back_after_stream_jobs() -> None:
    tracker = ScriptedTracker(
        stream(message("1-0", updated_at="2026-01-01T10:00:05Z")),
        status(404),
        page_answer([job_at(6, 8), job_at(5, 5)]),
    )
    with client_for(tracker) as client:
        watch = client.watch_collection(1, poll_interval=0.001)
        with watch:
            jobs = [next(watch), next(watch)]
    assert [job.id for job in jobs] == [5, 6]
    assert tracker.paths() == [COLLECTION_STREAM, COLLECTION_STREAM, LIST_PATH]


def test_invalid_mode_raises() -> None:
    with (
        TrackerClient(base_url=BASE_URL) as client,
        pytest.raises(ValueError, match="mode"),
    ):
        client.watch(1, 5, mode="push")  # type: ignore[arg-type]


def test_retry_field_sets_reconnect_delay() -> None:
    state = _watch.WatchState(1, 5, mode="auto", last_event_id=None, poll_interval=1.0)
    parser = state.new_parser()
    parser.feed(b"retry: 2500\n\nid: 3-0\n\n")
    state.synced(parser)
    state.stream_ended(None, received=True)
    request = state.next_request()
    assert request.delay == 2.5
    assert request.headers["Last-Event-ID"] == "3-0"


def test_failures_back_off_from_reconnect_delay() -> None:
    state = _watch.WatchState(
        1,
        5,
        mode="stream",
        last_event_id=None,
        poll_interval=1.0,
        uniform=lambda low, high: 1.0,
    )
    parser = state.new_parser()
    parser.feed(b"retry: 100\n\n")
    state.synced(parser)
    delays = []
    for _ in range(3):
        state.stream_ended(None, received=False)
        delays.append(state.next_request().delay)
    assert delays == [0.1, 0.2, 0.4]


async def test_async_watch_follows_and_reconnects() -> None:
    tracker = ScriptedTracker(
        stream(message("1-0", "pending"), message("2-0"), drop=True),
        stream(message("3-0", "completed")),
    )
    async with (
        async_client_for(tracker) as client,
        client.watch(1, 5) as watch,
    ):
        jobs = [job async for job in watch]
    assert statuses(jobs) == ["pending", "processing", "completed"]
    assert watch.last_event_id == "3-0"
    assert tracker.header(1, "last-event-id") == "2-0"


async def test_async_watch_falls_back_to_polling() -> None:
    tracker = ScriptedTracker(
        status(404), job_answer("processing", etag='"a"'), job_answer("completed")
    )
    async with (
        async_client_for(tracker) as client,
        client.watch(1, 5, poll_interval=0.001) as watch,
    ):
        jobs = [job async for job in watch]
    assert statuses(jobs) == ["processing", "completed"]
    assert watch.mode == "poll"
    assert tracker.header(2, "if-none-match") == '"a"'


async def test_async_close_mid_stream_closes_response() -> None:
    tracker = ScriptedTracker(stream(message("1-0"), hold=True))
    async with (
        async_client_for(tracker) as client,
        client.watch(1, 5) as watch,
    ):
        first = await anext(watch)
    assert first.status == "processing"
    assert tracker.bodies[0].closed.is_set()


async def test_async_collection_watch_yields_changes() -> None:
    tracker = ScriptedTracker(
        stream("id: 7-0\n\n", message("8-0"), message("9-0", "completed"), hold=True)
    )
    async with (
        async_client_for(tracker) as client,
        client.watch_collection(1) as watch,
    ):
        jobs = [await anext(watch), await anext(watch)]
    assert statuses(jobs) == ["processing", "completed"]
    assert watch.last_event_id == "9-0"
