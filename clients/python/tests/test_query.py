"""TrackerClient and AsyncTrackerClient against scripted MockTransport responses."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from ingestion_tracker_client import (
    AsyncTrackerClient,
    BadRequest,
    Conflict,
    Forbidden,
    InvalidResponse,
    Job,
    JobNotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    TrackerClient,
    TrackerConnectionError,
    TrackerHTTPError,
    Unauthorized,
)
from ingestion_tracker_client._calls import Poll

BASE_URL = "http://tracker.test"
TOKEN = "api-token"
Handler = Callable[[httpx.Request], httpx.Response]


def job_json(status: str = "processing", **fields: Any) -> dict[str, Any]:
    """A job as the tracker returns it, with a field this SDK version does not know."""
    return {
        "id": 5,
        "job_id": 5,
        "collection_id": 1,
        "status": status,
        "attempt": 1,
        "plugin_name": "simple_ingest",
        "plugin_params": {"chunk_size": 500},
        "source": "file",
        "document_count": 0,
        "progress": {"current": 2, "total": 4, "percentage": 50.0, "message": "x"},
        "created_at": "2026-01-01T10:00:00Z",
        "updated_at": "2026-01-01T10:00:05Z",
        "field_from_a_newer_tracker": {"anything": True},
        **fields,
    }


class Recorder:
    """A handler that records requests and returns a fixed or scripted response."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.requests: list[httpx.Request] = []
        self._answers = list(answers)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if len(self._answers) > 1:
            return self._answers.pop(0)
        return self._answers[0]


def client_for(handler: Handler, **options: Any) -> TrackerClient:
    return TrackerClient(
        base_url=BASE_URL, transport=httpx.MockTransport(handler), **options
    )


def error_answer(status: int, detail: str, **headers: str) -> httpx.Response:
    return httpx.Response(
        status, json={"status_code": status, "detail": detail}, headers=headers
    )


def test_list_jobs_sends_defaults_and_token() -> None:
    page = {"total": 1, "items": [job_json()], "limit": 50, "offset": 0}
    recorder = Recorder(httpx.Response(200, json={**page, "has_more": False}))
    with client_for(recorder, token=TOKEN) as client:
        result = client.list_jobs(1)
    request = recorder.requests[0]
    assert request.url.path == "/collections/1/ingestion-jobs"
    assert dict(request.url.params) == {
        "limit": "50",
        "offset": "0",
        "sort_by": "created_at",
        "sort_order": "desc",
    }
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert result.total == 1
    assert result.items[0].progress.percentage == 50.0


def test_list_jobs_joins_statuses() -> None:
    page = {"total": 0, "items": [], "limit": 10, "offset": 20, "has_more": False}
    recorder = Recorder(httpx.Response(200, json=page))
    with client_for(recorder) as client:
        client.list_jobs(
            1,
            status=["failed", "cancelled"],
            limit=10,
            offset=20,
            sort_by="updated_at",
            sort_order="asc",
        )
        client.list_jobs(1, status="pending")
    first, second = (request.url.params for request in recorder.requests)
    assert first["status"] == "failed,cancelled"
    assert first["sort_by"] == "updated_at"
    assert first["sort_order"] == "asc"
    assert second["status"] == "pending"
    assert "authorization" not in recorder.requests[0].headers


def test_get_job_tolerates_unknown_fields() -> None:
    recorder = Recorder(httpx.Response(200, json=job_json()))
    with client_for(recorder) as client:
        job = client.get_job(1, 5)
    assert recorder.requests[0].url.path == "/collections/1/ingestion-jobs/5"
    assert isinstance(job, Job)
    assert job.created_at is not None
    assert job.created_at.utcoffset() is not None
    assert job.plugin_params == {"chunk_size": 500}
    assert not job.is_terminal


def test_job_reads_liveness_fields() -> None:
    body = job_json(
        stalled=True,
        stall_timeout_seconds=60,
        heartbeat_timeout_seconds=600,
        cancel_requested_at="2026-01-01T10:00:06Z",
        cancel_acknowledged_at="2026-01-01T10:00:07Z",
    )
    recorder = Recorder(httpx.Response(200, json=body))
    with client_for(recorder) as client:
        job = client.get_job(1, 5)
    assert job.stalled is True
    assert job.stall_timeout_seconds == 60
    assert job.heartbeat_timeout_seconds == 600
    assert job.cancel_acknowledged_at is not None
    assert job.cancel_acknowledged_at.second == 7


def test_job_without_liveness_fields_has_defaults() -> None:
    recorder = Recorder(httpx.Response(200, json=job_json()))
    with client_for(recorder) as client:
        job = client.get_job(1, 5)
    assert job.stalled is False
    assert job.stall_timeout_seconds is None
    assert job.cancel_acknowledged_at is None


def test_summary_tolerates_newer_fields() -> None:
    body = {
        "collection_id": 1,
        "total_jobs": 0,
        "by_status": {},
        "a_field_from_a_newer_tracker": {"any": "shape"},
    }
    recorder = Recorder(httpx.Response(200, json=body))
    with client_for(recorder) as client:
        status = client.summary(1)
    assert status.total_jobs == 0
    assert status.by_status.pending == 0


def test_summary_reads_liveness_fields() -> None:
    body = {
        "collection_id": 1,
        "total_jobs": 0,
        "by_status": {},
        "stalled": 2,
        "failures_last_24h": [
            {
                "exception_type": "ValueError",
                "message": "Bad page <n>",
                "count": 3,
                "newest_job_id": 9,
                "last_failed_at": "2026-12-04T10:00:00Z",
            }
        ],
        "processing_duration_last_24h": {
            "completed_jobs": 4,
            "p50_seconds": 1.5,
            "p95_seconds": 9.0,
        },
    }
    recorder = Recorder(httpx.Response(200, json=body))
    with client_for(recorder) as client:
        status = client.summary(1)
    assert status.stalled == 2
    assert status.failures_last_24h[0].newest_job_id == 9
    assert status.processing_duration_last_24h.p95_seconds == 9.0


def test_summary_reads_counts() -> None:
    body = {
        "collection_id": 1,
        "collection_name": "Docs",
        "total_jobs": 3,
        "by_status": {"completed": 2, "failed": 1, "paused": 4},
        "currently_processing": 0,
        "recent_failures": [job_json("failed", error_message="boom")],
        "oldest_processing_job": None,
    }
    recorder = Recorder(httpx.Response(200, json=body))
    with client_for(recorder) as client:
        status = client.summary(1)
    assert recorder.requests[0].url.path == "/collections/1/ingestion-status"
    assert status.by_status.completed == 2
    assert status.by_status.pending == 0
    assert status.recent_failures[0].error_message == "boom"


def test_retry_sends_override_params() -> None:
    recorder = Recorder(httpx.Response(200, json=job_json("pending", attempt=2)))
    with client_for(recorder) as client:
        job = client.retry(1, 5, override_params={"chunk_size": 200})
        client.retry(1, 5)
    with_body, without_body = recorder.requests
    assert with_body.method == "POST"
    assert with_body.url.path == "/collections/1/ingestion-jobs/5/retry"
    assert json.loads(with_body.content) == {"override_params": {"chunk_size": 200}}
    assert without_body.content == b""
    assert job.attempt == 2


def test_cancel_posts_to_cancel_path() -> None:
    recorder = Recorder(httpx.Response(200, json=job_json("cancelled")))
    with client_for(recorder) as client:
        job = client.cancel(1, 5)
    assert recorder.requests[0].method == "POST"
    assert recorder.requests[0].url.path == "/collections/1/ingestion-jobs/5/cancel"
    assert job.status == "cancelled"


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, BadRequest),
        (401, Unauthorized),
        (403, Forbidden),
        (404, JobNotFound),
        (409, Conflict),
        (413, PayloadTooLarge),
        (503, ServiceUnavailable),
        (500, TrackerHTTPError),
        (429, TrackerHTTPError),
    ],
)
def test_error_status_maps_to_exception(
    status: int, error_type: type[TrackerHTTPError]
) -> None:
    detail = f"Scripted detail for {status}"
    with (
        client_for(Recorder(error_answer(status, detail))) as client,
        pytest.raises(error_type) as caught,
    ):
        client.get_job(1, 5)
    error = caught.value
    assert type(error) is error_type
    assert error.status_code == status
    assert error.detail == detail
    assert error.request is not None
    assert error.request.method == "GET"
    assert str(error.request.url) == f"{BASE_URL}/collections/1/ingestion-jobs/5"
    assert detail in str(error)


def test_service_unavailable_carries_retry_after() -> None:
    answer = error_answer(503, "Database unreachable", **{"Retry-After": "5"})
    with (
        client_for(Recorder(answer)) as client,
        pytest.raises(ServiceUnavailable) as caught,
    ):
        client.summary(1)
    assert caught.value.retry_after == 5.0


def test_error_without_json_body_keeps_text() -> None:
    answer = httpx.Response(502, text="Bad gateway from the proxy")
    with (
        client_for(Recorder(answer)) as client,
        pytest.raises(TrackerHTTPError) as caught,
    ):
        client.summary(1)
    assert caught.value.detail == "Bad gateway from the proxy"


def test_connection_error_is_mapped() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    with (
        client_for(refuse) as client,
        pytest.raises(TrackerConnectionError, match="Connection refused"),
    ):
        client.get_job(1, 5)


def test_timeout_is_connection_error() -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with (
        client_for(hang) as client,
        pytest.raises(TrackerConnectionError, match="timed out"),
    ):
        client.get_job(1, 5)


def test_undecodable_body_raises_invalid_response() -> None:
    answer = httpx.Response(200, json={"unexpected": "shape"})
    with (
        client_for(Recorder(answer)) as client,
        pytest.raises(InvalidResponse, match="not a valid Job"),
    ):
        client.get_job(1, 5)


def test_closed_client_raises_runtime_error() -> None:
    client = client_for(Recorder(httpx.Response(200, json=job_json())))
    client.close()
    with pytest.raises(RuntimeError, match="TrackerClient is closed"):
        client.get_job(1, 5)


@pytest.mark.parametrize("base_url", ["tracker:8080", "ftp://tracker", ""])
def test_base_url_must_be_http(base_url: str) -> None:
    with pytest.raises(ValueError, match="base_url must start with http"):
        TrackerClient(base_url=base_url)


def test_job_id_must_be_int() -> None:
    with (
        client_for(Recorder(httpx.Response(200, json=job_json()))) as client,
        pytest.raises(TypeError, match="job_id must be an int"),
    ):
        client.get_job(1, "5")  # type: ignore[arg-type]


def test_wait_returns_terminal_job() -> None:
    recorder = Recorder(
        httpx.Response(200, json=job_json("pending")),
        httpx.Response(200, json=job_json("processing")),
        httpx.Response(200, json=job_json("completed", document_count=3)),
    )
    with client_for(recorder) as client:
        job = client.wait(1, 5, poll_interval=0.01, max_interval=0.02)
    assert job.status == "completed"
    assert len(recorder.requests) == 3


def test_wait_reads_through_transient_errors() -> None:
    recorder = Recorder(
        error_answer(503, "Database unreachable"),
        httpx.Response(200, json=job_json("failed")),
    )
    with client_for(recorder) as client:
        job = client.wait(1, 5, poll_interval=0.01)
    assert job.status == "failed"


def test_wait_raises_timeout_error() -> None:
    recorder = Recorder(httpx.Response(200, json=job_json("processing")))
    started = time.monotonic()
    with (
        client_for(recorder) as client,
        pytest.raises(TimeoutError, match="job 5 in collection 1 is still processing"),
    ):
        client.wait(1, 5, timeout=0.2, poll_interval=0.02, max_interval=0.05)
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 0.5
    assert len(recorder.requests) >= 4


def test_wait_raises_other_errors_at_once() -> None:
    with (
        client_for(Recorder(error_answer(404, "Ingestion job 5 not found"))) as client,
        pytest.raises(JobNotFound),
    ):
        client.wait(1, 5, poll_interval=0.01)


def test_poll_delays_double_up_to_maximum() -> None:
    now = [0.0]
    poll = Poll(10.0, 0.5, 2.0, clock=lambda: now[0])
    delays = []
    for _ in range(5):
        delay = poll.next_delay()
        assert delay is not None
        delays.append(delay)
        now[0] += delay
    assert delays == [0.5, 1.0, 2.0, 2.0, 2.0]


def test_poll_stops_at_deadline() -> None:
    now = [0.0]
    poll = Poll(1.2, 0.5, 2.0, clock=lambda: now[0])
    assert poll.next_delay() == 0.5
    now[0] = 0.5
    assert poll.next_delay() == pytest.approx(0.7)
    now[0] = 1.2
    assert poll.next_delay() is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": -1}, "timeout"),
        ({"poll_interval": 0}, "poll_interval"),
        ({"poll_interval": 2, "max_interval": 1}, "max_interval"),
    ],
)
def test_wait_rejects_invalid_options(options: dict[str, float], message: str) -> None:
    with (
        client_for(Recorder(httpx.Response(200, json=job_json()))) as client,
        pytest.raises(ValueError, match=message),
    ):
        client.wait(1, 5, **options)


def async_client_for(handler: Handler) -> AsyncTrackerClient:
    return AsyncTrackerClient(base_url=BASE_URL, transport=httpx.MockTransport(handler))


async def test_async_client_reads_and_steers_jobs() -> None:
    page = {"total": 1, "items": [job_json()], "limit": 5, "offset": 0}
    recorder = Recorder(
        httpx.Response(200, json={**page, "has_more": True}),
        httpx.Response(200, json=job_json()),
        httpx.Response(200, json=job_json("pending", attempt=2)),
        httpx.Response(200, json=job_json("cancelled")),
    )
    async with async_client_for(recorder) as client:
        listed = await client.list_jobs(1, status=["processing"], limit=5)
        read = await client.get_job(1, 5)
        retried = await client.retry(1, 5, override_params={"a": 1})
        cancelled = await client.cancel(1, 5)
    paths = [request.url.path for request in recorder.requests]
    assert listed.has_more
    assert read.id == 5
    assert retried.attempt == 2
    assert cancelled.status == "cancelled"
    assert paths == [
        "/collections/1/ingestion-jobs",
        "/collections/1/ingestion-jobs/5",
        "/collections/1/ingestion-jobs/5/retry",
        "/collections/1/ingestion-jobs/5/cancel",
    ]


async def test_async_client_maps_conflict() -> None:
    detail = "Ingestion job 5 is completed; only failed jobs can be retried"
    async with async_client_for(Recorder(error_answer(409, detail))) as client:
        with pytest.raises(Conflict) as caught:
            await client.retry(1, 5)
    assert caught.value.detail == detail
    assert caught.value.request is not None
    assert caught.value.request.method == "POST"


async def test_async_summary_and_connection_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    async with async_client_for(refuse) as client:
        with pytest.raises(TrackerConnectionError):
            await client.summary(1)


async def test_async_wait_terminal_and_timeout() -> None:
    recorder = Recorder(
        httpx.Response(200, json=job_json("processing")),
        httpx.Response(200, json=job_json("cancelled")),
    )
    async with async_client_for(recorder) as client:
        job = await client.wait(1, 5, poll_interval=0.01)
    assert job.status == "cancelled"

    stuck = Recorder(httpx.Response(200, json=job_json("pending")))
    async with async_client_for(stuck) as client:
        with pytest.raises(TimeoutError, match="still pending"):
            await client.wait(1, 5, timeout=0.05, poll_interval=0.01)


async def test_async_closed_client_raises_runtime_error() -> None:
    client = async_client_for(Recorder(httpx.Response(200, json=job_json())))
    await client.aclose()
    with pytest.raises(RuntimeError, match="AsyncTrackerClient is closed"):
        await client.get_job(1, 5)
