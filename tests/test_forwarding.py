"""Retry forwarding: requests to a real fake backend, backoff, rejection, give-up."""

from __future__ import annotations

import asyncio
import json
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from tests.backend import FakeBackend, ReceivedRequest, closed_port_url
from tests.conftest import ClientFactory, register, send_event

WAIT_SECONDS = 10.0
POLL_SECONDS = 0.05


async def wait_for_status(
    client: Any, collection_id: int, job_id: int, status: str
) -> dict[str, Any]:
    """Poll the job through the API until it has ``status``, for at most 10 s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    job: dict[str, Any] = {}
    while loop.time() < deadline:
        response = await client.get(
            f"/collections/{collection_id}/ingestion-jobs/{job_id}"
        )
        assert response.status_code == 200, response.text
        job = response.json()
        if job["status"] == status:
            return job
        await asyncio.sleep(POLL_SECONDS)
    raise AssertionError(
        f"job {job_id} did not reach {status} within {WAIT_SECONDS} s. Last seen: {job}"
    )


async def outbox_rows(database_url: str, job_id: int | None = None) -> list[Any]:
    """Read the retry_outbox rows of one job, or of all jobs, in insertion order."""
    connection = await asyncpg.connect(database_url)
    try:
        if job_id is None:
            return await connection.fetch("SELECT * FROM retry_outbox ORDER BY id")
        return await connection.fetch(
            "SELECT * FROM retry_outbox WHERE job_id = $1 ORDER BY id", job_id
        )
    finally:
        await connection.close()


async def wait_for_outbox_closed(
    database_url: str, job_id: int | None = None
) -> list[Any]:
    """Poll until every outbox row is delivered or given up, for at most 10 s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    rows: list[Any] = []
    while loop.time() < deadline:
        rows = await outbox_rows(database_url, job_id)
        open_rows = [
            row
            for row in rows
            if row["delivered_at"] is None and row["gave_up_at"] is None
        ]
        if rows and not open_rows:
            return rows
        await asyncio.sleep(POLL_SECONDS)
    raise AssertionError(
        f"outbox rows still open after {WAIT_SECONDS} s: {[dict(r) for r in rows]}"
    )


async def register_failed(client: Any, **fields: Any) -> dict[str, Any]:
    """Register a job, fail its first attempt, and return it."""
    job = await register(client, **fields)
    answer = await send_event(
        client, job["id"], type="failed", error_message="parser crashed"
    )
    assert answer["job"]["status"] == "failed"
    return job


async def retry(client: Any, job: dict[str, Any], **body: Any) -> dict[str, Any]:
    """Retry ``job`` through the API and return the job, which must be a 200."""
    response = await client.post(
        f"/collections/{job['collection_id']}/ingestion-jobs/{job['id']}/retry",
        json=body or None,
    )
    assert response.status_code == 200, response.text
    retried: dict[str, Any] = response.json()
    return retried


def form_parts(request: ReceivedRequest) -> dict[str, EmailMessage]:
    """Split a multipart/form-data body into its parts, keyed by field name."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=policy.HTTP).parsebytes(head + request.body)
    assert isinstance(message, EmailMessage)
    parts: dict[str, EmailMessage] = {}
    for part in message.iter_parts():
        assert isinstance(part, EmailMessage)
        name = part.get_param("name", header="content-disposition")
        parts[str(name)] = part
    return parts


def part_bytes(part: EmailMessage) -> bytes:
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload


# Request shape per source


async def test_url_source_posts_plugin_urls(
    tracked_client: AsyncTestClient[Any], backend: FakeBackend
) -> None:
    params = {"urls": ["https://docs.example/a", "https://docs.example/b"], "depth": 1}
    job = await register_failed(
        tracked_client, source="url", plugin_name="url_ingest", plugin_params=params
    )
    await retry(tracked_client, job)
    await backend.wait_for_ingest_requests(1)

    request = backend.ingest_requests[0]
    assert request.path == "/collections/1/ingest-url"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.body) == {
        "urls": ["https://docs.example/a", "https://docs.example/b"],
        "plugin_name": "url_ingest",
        "plugin_params": params,
    }


async def test_url_source_falls_back_to_file_url(
    tracked_client: AsyncTestClient[Any], backend: FakeBackend
) -> None:
    job = await register_failed(
        tracked_client,
        source="url",
        file_url="https://docs.example/page",
        plugin_params={"depth": 2},
    )
    await retry(tracked_client, job)
    await backend.wait_for_ingest_requests(1)

    body = json.loads(backend.ingest_requests[0].body)
    assert body["urls"] == ["https://docs.example/page"]
    assert body["plugin_params"] == {"depth": 2}


async def test_base_source_posts_plugin_only(
    tracked_client: AsyncTestClient[Any], backend: FakeBackend
) -> None:
    job = await register_failed(
        tracked_client,
        collection_id=7,
        source="base",
        plugin_name="base_ingest",
        plugin_params={"title": "Handbook"},
    )
    await retry(tracked_client, job)
    await backend.wait_for_ingest_requests(1)

    request = backend.ingest_requests[0]
    assert request.path == "/collections/7/ingest-base"
    assert json.loads(request.body) == {
        "plugin_name": "base_ingest",
        "plugin_params": {"title": "Handbook"},
    }


async def test_file_source_reuploads_stored_file(
    tracked_client: AsyncTestClient[Any], backend: FakeBackend
) -> None:
    content = b"%PDF-1.7\n\x00\xff binary body\n"
    backend.files["/files/1/report.pdf"] = content
    job = await register_failed(
        tracked_client,
        original_filename="report.pdf",
        content_type="application/pdf",
        file_url=f"{backend.url}/files/1/report.pdf",
        plugin_params={"chunk_size": 500, "ocr": True},
    )
    await retry(tracked_client, job)
    await backend.wait_for_ingest_requests(1)

    download, upload = backend.received
    parts = form_parts(upload)
    assert download.method == "GET"
    assert download.path == "/files/1/report.pdf"
    assert download.headers["authorization"] == "Bearer backend-secret"
    assert upload.path == "/collections/1/ingest-file"
    assert upload.headers["content-type"].startswith("multipart/form-data")
    assert part_bytes(parts["file"]) == content
    assert parts["file"].get_filename() == "report.pdf"
    assert parts["file"].get_content_type() == "application/pdf"
    assert part_bytes(parts["plugin_name"]) == b"markitdown_ingest"
    assert json.loads(part_bytes(parts["plugin_params"])) == {
        "chunk_size": 500,
        "ocr": True,
    }


async def test_forwarded_params_include_overrides(
    tracked_client: AsyncTestClient[Any], backend: FakeBackend
) -> None:
    job = await register_failed(
        tracked_client, source="base", plugin_params={"chunk_size": 1000, "lang": "en"}
    )
    await retry(tracked_client, job, override_params={"chunk_size": 200})
    await backend.wait_for_ingest_requests(1)

    body = json.loads(backend.ingest_requests[0].body)
    assert body["plugin_params"] == {"chunk_size": 200, "lang": "en"}


# Headers


async def test_forwarded_retry_carries_job_headers(
    tracked_client: AsyncTestClient[Any], backend: FakeBackend
) -> None:
    job = await register_failed(tracked_client, source="base")
    await retry(tracked_client, job)
    await backend.wait_for_ingest_requests(1)

    headers = backend.ingest_requests[0].headers
    assert headers["authorization"] == "Bearer backend-secret"
    assert headers["idempotency-key"] == f"ingestion-job-{job['id']}-attempt-2"
    assert headers["x-ingestion-job-id"] == str(job["id"])
    assert headers["x-ingestion-attempt"] == "2"


async def test_second_retry_gets_new_idempotency_key(
    tracked_client: AsyncTestClient[Any], backend: FakeBackend, database_url: str
) -> None:
    job = await register_failed(tracked_client, source="base")
    await retry(tracked_client, job)
    await wait_for_outbox_closed(database_url, job["id"])
    await send_event(
        tracked_client, job["id"], type="failed", attempt=2, error_message="again"
    )
    await retry(tracked_client, job)
    await backend.wait_for_ingest_requests(2)

    keys = [request.headers["idempotency-key"] for request in backend.ingest_requests]
    attempts = [
        request.headers["x-ingestion-attempt"] for request in backend.ingest_requests
    ]
    assert keys == [
        f"ingestion-job-{job['id']}-attempt-2",
        f"ingestion-job-{job['id']}-attempt-3",
    ]
    assert attempts == ["2", "3"]


async def test_backend_without_token_gets_no_authorization(
    make_client: ClientFactory, backend: FakeBackend
) -> None:
    client = await make_client(backend_url=backend.url)
    job = await register_failed(client, source="base")
    await retry(client, job)
    await backend.wait_for_ingest_requests(1)

    assert "authorization" not in backend.ingest_requests[0].headers


# Delivery outcomes


async def test_accepted_retry_leaves_job_pending(
    tracked_client: AsyncTestClient[Any], backend: FakeBackend, database_url: str
) -> None:
    job = await register_failed(tracked_client, source="base")
    await retry(tracked_client, job)
    (row,) = await wait_for_outbox_closed(database_url, job["id"])

    response = await tracked_client.get(f"/collections/1/ingestion-jobs/{job['id']}")
    current = response.json()
    assert row["delivered_at"] is not None
    assert row["gave_up_at"] is None
    assert row["tries"] == 1
    assert row["attempt"] == 2
    assert current["status"] == "pending"
    assert current["attempt"] == 2
    assert current["progress"]["message"] == "Queued for retry"
    assert len(backend.ingest_requests) == 1


async def test_server_errors_are_retried_until_accepted(
    tracked_client: AsyncTestClient[Any], backend: FakeBackend, database_url: str
) -> None:
    backend.statuses = [503, 502]
    job = await register_failed(tracked_client, source="base")
    await retry(tracked_client, job)
    (row,) = await wait_for_outbox_closed(database_url, job["id"])

    response = await tracked_client.get(f"/collections/1/ingestion-jobs/{job['id']}")
    keys = {request.headers["idempotency-key"] for request in backend.ingest_requests}
    assert len(backend.ingest_requests) == 3
    assert keys == {f"ingestion-job-{job['id']}-attempt-2"}
    assert row["delivered_at"] is not None
    assert row["gave_up_at"] is None
    assert row["tries"] == 3
    assert row["last_error"] is None
    assert response.json()["status"] == "pending"


async def test_too_many_requests_is_retried(
    tracked_client: AsyncTestClient[Any], backend: FakeBackend, database_url: str
) -> None:
    backend.statuses = [429]
    job = await register_failed(tracked_client, source="base")
    await retry(tracked_client, job)
    (row,) = await wait_for_outbox_closed(database_url, job["id"])

    assert row["delivered_at"] is not None
    assert row["tries"] == 2


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_client_error_fails_job(
    tracked_client: AsyncTestClient[Any],
    backend: FakeBackend,
    database_url: str,
    status: int,
) -> None:
    backend.statuses = [status]
    job = await register_failed(tracked_client, source="base")
    await retry(tracked_client, job)
    failed = await wait_for_status(tracked_client, 1, job["id"], "failed")
    (row,) = await outbox_rows(database_url, job["id"])

    assert f"rejected it with HTTP {status}" in failed["error_message"]
    assert failed["error_details"]["stage"] == "retry_forwarding"
    assert failed["attempt"] == 2
    assert len(backend.ingest_requests) == 1
    assert row["tries"] == 1
    assert row["delivered_at"] is None
    assert row["gave_up_at"] is not None


async def test_persistent_server_error_fails_job(
    tracked_client: AsyncTestClient[Any], backend: FakeBackend, database_url: str
) -> None:
    backend.statuses = [503, 503, 503]
    job = await register_failed(tracked_client, source="base")
    await retry(tracked_client, job)
    failed = await wait_for_status(tracked_client, 1, job["id"], "failed")
    (row,) = await outbox_rows(database_url, job["id"])

    assert "after 3 tries" in failed["error_message"]
    assert "HTTP 503" in failed["error_message"]
    assert len(backend.ingest_requests) == 3
    assert row["tries"] == 3
    assert row["gave_up_at"] is not None


async def test_unreachable_backend_fails_job(
    make_client: ClientFactory, database_url: str
) -> None:
    client = await make_client(
        backend_url=closed_port_url(), backend_token="backend-secret"
    )
    job = await register_failed(client, source="base")
    await retry(client, job)
    failed = await wait_for_status(client, 1, job["id"], "failed")
    (row,) = await outbox_rows(database_url, job["id"])

    assert "could not be reached" in failed["error_message"]
    assert "after 3 tries" in failed["error_message"]
    assert failed["error_details"]["stage"] == "retry_forwarding"
    assert row["tries"] == 3
    assert row["delivered_at"] is None
    assert row["gave_up_at"] is not None


# File re-upload checks


@pytest.mark.parametrize(
    "file_url",
    [
        pytest.param("{other}/files/report.pdf", id="other-port"),
        pytest.param("https://127.0.0.1:{port}/files/report.pdf", id="other-scheme"),
        pytest.param("http://localhost:{port}/files/report.pdf", id="other-host"),
    ],
)
async def test_file_url_on_other_origin_fails_job(
    tracked_client: AsyncTestClient[Any], backend: FakeBackend, file_url: str
) -> None:
    url = file_url.format(other=closed_port_url(), port=backend.port)
    job = await register_failed(tracked_client, file_url=url)
    await retry(tracked_client, job)
    failed = await wait_for_status(tracked_client, 1, job["id"], "failed")

    assert "not on the backend's origin" in failed["error_message"]
    assert url in failed["error_message"]
    assert backend.received == []


@pytest.mark.parametrize(
    "file_url",
    [
        pytest.param("http://127.0.0.1:99999/files/report.pdf", id="port-too-large"),
        pytest.param("http://127.0.0.1:pdf/files/report.pdf", id="port-not-number"),
        pytest.param("{backend}/files/report\x01.pdf", id="control-character"),
    ],
)
async def test_invalid_file_url_fails_job(
    tracked_client: AsyncTestClient[Any], backend: FakeBackend, file_url: str
) -> None:
    url = file_url.format(backend=backend.url)
    job = await register_failed(tracked_client, file_url=url)
    await retry(tracked_client, job)
    failed = await wait_for_status(tracked_client, 1, job["id"], "failed")

    assert "is not a valid URL" in failed["error_message"]
    assert failed["error_details"]["stage"] == "retry_forwarding"
    assert backend.received == []


async def test_file_job_without_file_url_fails(
    tracked_client: AsyncTestClient[Any], backend: FakeBackend
) -> None:
    job = await register_failed(tracked_client, source="file")
    await retry(tracked_client, job)
    failed = await wait_for_status(tracked_client, 1, job["id"], "failed")

    assert "no file_url" in failed["error_message"]
    assert backend.received == []


async def test_missing_stored_file_fails_job(
    tracked_client: AsyncTestClient[Any], backend: FakeBackend
) -> None:
    job = await register_failed(
        tracked_client, file_url=f"{backend.url}/files/gone.pdf"
    )
    await retry(tracked_client, job)
    failed = await wait_for_status(tracked_client, 1, job["id"], "failed")

    assert "downloading the file failed" in failed["error_message"]
    assert "HTTP 404" in failed["error_message"]
    assert [request.method for request in backend.received] == ["GET"]


async def test_relative_file_url_resolves_on_backend(
    tracked_client: AsyncTestClient[Any], backend: FakeBackend
) -> None:
    backend.files["/files/2/notes.md"] = b"# Notes"
    job = await register_failed(tracked_client, file_url="/files/2/notes.md")
    await retry(tracked_client, job)
    await backend.wait_for_ingest_requests(1)

    download, upload = backend.received
    assert download.path == "/files/2/notes.md"
    assert part_bytes(form_parts(upload)["file"]) == b"# Notes"


@pytest.mark.parametrize(
    "urls",
    [
        pytest.param([], id="empty-list"),
        pytest.param("https://example.org/page", id="string-not-list"),
        pytest.param(["https://example.org/a", 7], id="non-string-item"),
    ],
)
async def test_invalid_plugin_urls_fail_job(
    tracked_client: AsyncTestClient[Any],
    backend: FakeBackend,
    database_url: str,
    urls: Any,
) -> None:
    job = await register_failed(
        tracked_client,
        source="url",
        plugin_params={"urls": ["https://example.org/start"]},
    )
    response = await tracked_client.post(
        f"/collections/1/ingestion-jobs/{job['id']}/retry",
        json={"override_params": {"urls": urls}},
    )
    stored = await tracked_client.get(f"/collections/1/ingestion-jobs/{job['id']}")

    assert response.status_code == 400
    assert "override_params.urls" in response.json()["detail"]
    assert stored.json()["status"] == "failed"
    assert await outbox_rows(database_url, job["id"]) == []
    assert backend.received == []


async def test_oversized_merged_params_keep_job_failed(
    tracked_client: AsyncTestClient[Any], database_url: str
) -> None:
    job = await register_failed(tracked_client, plugin_params={"a": "x" * 40_000})
    response = await tracked_client.post(
        f"/collections/1/ingestion-jobs/{job['id']}/retry",
        json={"override_params": {"b": "y" * 40_000}},
    )
    stored = await tracked_client.get(f"/collections/1/ingestion-jobs/{job['id']}")
    assert response.status_code == 400
    assert "override_params" in response.json()["detail"]
    assert stored.json()["status"] == "failed"
    assert stored.json()["attempt"] == 1
    assert await outbox_rows(database_url, job["id"]) == []


# Cancel before delivery


async def test_cancelled_queued_retry_is_not_forwarded(
    make_client: ClientFactory, backend: FakeBackend, database_url: str
) -> None:
    # The first try gets a 503, so the row waits about a second for its next try.
    backend.statuses = [503]
    client = await make_client(
        backend_url=backend.url,
        backend_token="backend-secret",
        retry_backoff_seconds=1.0,
        retry_backoff_max_seconds=1.0,
    )
    job = await register_failed(client, source="base")
    await retry(client, job)
    await backend.wait_for_ingest_requests(1)
    cancel = await client.post(f"/collections/1/ingestion-jobs/{job['id']}/cancel")
    (row,) = await wait_for_outbox_closed(database_url, job["id"])

    current = await wait_for_status(client, 1, job["id"], "cancelled")
    assert cancel.status_code == 200
    assert row["delivered_at"] is None
    assert row["gave_up_at"] is not None
    assert "cancelled" in row["last_error"]
    assert len(backend.ingest_requests) == 1
    assert current["error_message"] is None


async def test_cancelled_retry_stays_cancelled_when_backend_down(
    make_client: ClientFactory, database_url: str
) -> None:
    client = await make_client(
        backend_url=closed_port_url(),
        retry_backoff_seconds=1.0,
        retry_backoff_max_seconds=1.0,
    )
    job = await register_failed(client, source="base")
    await retry(client, job)
    cancel = await client.post(f"/collections/1/ingestion-jobs/{job['id']}/cancel")
    (row,) = await wait_for_outbox_closed(database_url, job["id"])

    response = await client.get(f"/collections/1/ingestion-jobs/{job['id']}")
    current = response.json()
    assert cancel.status_code == 200
    assert row["gave_up_at"] is not None
    assert current["status"] == "cancelled"
    assert current["error_message"] is None
