"""WorkerClient registration, reporter options and resume_from_headers."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from ingestion_tracker_client import (
    AsyncWorkerClient,
    BadRequest,
    Forbidden,
    WorkerClient,
    resume_from_headers,
)

BASE_URL = "http://tracker.test"
TOKEN = "worker-token"


def registered(status_code: int, **fields: Any) -> httpx.Response:
    job = {"id": 12, "collection_id": 3, "status": "pending", "attempt": 1, **fields}
    return httpx.Response(status_code, json=job)


class Recorder:
    def __init__(self, answer: httpx.Response) -> None:
        self.requests: list[httpx.Request] = []
        self.answer = answer

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer


@pytest.mark.parametrize("status_code", [200, 201])
def test_register_returns_job(status_code: int) -> None:
    recorder = Recorder(registered(status_code, external_id="files/a.pdf"))
    transport = httpx.MockTransport(recorder)
    with WorkerClient(base_url=BASE_URL, token=TOKEN, transport=transport) as worker:
        job = worker.register(
            collection_id=3,
            plugin_name="markitdown_ingest",
            original_filename="a.pdf",
            plugin_params={"chunk_size": 1000},
            external_id="files/a.pdf",
        )
    request = recorder.requests[0]
    assert request.method == "POST"
    assert request.url.path == "/ingestion-jobs"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {
        "collection_id": 3,
        "plugin_name": "markitdown_ingest",
        "source": "file",
        "original_filename": "a.pdf",
        "plugin_params": {"chunk_size": 1000},
        "external_id": "files/a.pdf",
    }
    assert job.id == 12
    assert job.external_id == "files/a.pdf"


def test_register_raises_mapped_errors() -> None:
    answer = httpx.Response(
        403,
        json={"status_code": 403, "detail": "This token has the api scope"},
    )
    worker = WorkerClient(
        base_url=BASE_URL, transport=httpx.MockTransport(Recorder(answer))
    )
    with pytest.raises(Forbidden, match="api scope"):
        worker.register(collection_id=3, plugin_name="x")
    worker.close()


async def test_async_register_sends_source() -> None:
    recorder = Recorder(registered(201, source="url"))
    transport = httpx.MockTransport(recorder)
    async with AsyncWorkerClient(base_url=BASE_URL, transport=transport) as worker:
        job = await worker.register(
            collection_id=3, plugin_name="url_ingest", source="url", status="processing"
        )
    body = json.loads(recorder.requests[0].content)
    assert body["source"] == "url"
    assert body["status"] == "processing"
    assert job.source == "url"


async def test_async_register_raises_bad_request() -> None:
    answer = httpx.Response(400, json={"status_code": 400, "detail": "Invalid source"})
    transport = httpx.MockTransport(Recorder(answer))
    async with AsyncWorkerClient(base_url=BASE_URL, transport=transport) as worker:
        with pytest.raises(BadRequest) as caught:
            await worker.register(collection_id=3, plugin_name="x", source="ftp")
    assert caught.value.detail == "Invalid source"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"attempt": 0}, "attempt must be from 1"),
        ({"attempt": 2**31}, "attempt must be from 1"),
        ({"flush_interval": -1}, "flush_interval"),
        ({"max_buffer": 0}, "max_buffer"),
        ({"close_timeout": -1}, "close_timeout"),
        ({"backoff": (0, 1)}, "backoff_initial"),
    ],
)
def test_reporter_rejects_invalid_options(
    options: dict[str, Any], message: str
) -> None:
    with (
        WorkerClient(base_url=BASE_URL) as worker,
        pytest.raises(ValueError, match=message),
    ):
        worker.reporter(1, **options)


@pytest.mark.parametrize("job_id", [0, -3, 2**63])
def test_reporter_rejects_invalid_job_id(job_id: int) -> None:
    with (
        WorkerClient(base_url=BASE_URL) as worker,
        pytest.raises(ValueError, match="job_id must be from 1"),
    ):
        worker.reporter(job_id)


def test_reporter_of_closed_worker_raises() -> None:
    worker = WorkerClient(base_url=BASE_URL)
    worker.close()
    with pytest.raises(RuntimeError, match="WorkerClient is closed"):
        worker.reporter(1)


def test_register_on_closed_worker_raises() -> None:
    worker = WorkerClient(base_url=BASE_URL)
    worker.close()
    with pytest.raises(RuntimeError, match="Cannot send POST /ingestion-jobs"):
        worker.register(collection_id=1, plugin_name="x")


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Ingestion-Job-Id": "12", "X-Ingestion-Attempt": "2"},
        {"x-ingestion-job-id": "12", "x-ingestion-attempt": " 2 "},
        httpx.Headers({"X-INGESTION-JOB-ID": "12", "X-Ingestion-Attempt": "2"}),
    ],
)
def test_resume_reads_job_and_attempt(headers: Any) -> None:
    assert resume_from_headers(headers) == (12, 2)


def test_resume_without_headers_is_none() -> None:
    assert resume_from_headers({"Idempotency-Key": "abc"}) is None


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"X-Ingestion-Job-Id": "12"}, "no X-Ingestion-Attempt header"),
        ({"X-Ingestion-Attempt": "2"}, "no X-Ingestion-Job-Id header"),
        ({"X-Ingestion-Job-Id": "x", "X-Ingestion-Attempt": "2"}, "positive integer"),
        ({"X-Ingestion-Job-Id": "12", "X-Ingestion-Attempt": "0"}, "positive integer"),
        ({"X-Ingestion-Job-Id": "-1", "X-Ingestion-Attempt": "2"}, "positive integer"),
    ],
)
def test_resume_rejects_bad_values(headers: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resume_from_headers(headers)
