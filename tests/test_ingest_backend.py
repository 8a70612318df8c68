"""The reference backend and the tracker, both served over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from litestar import Litestar, MediaType, get
from litestar.testing import AsyncTestClient

from examples.demo.make_documents import docx_bytes, pdf_bytes
from examples.ingest_backend import BackendConfig
from examples.ingest_backend import create_app as create_backend
from examples.ingest_backend.runner import JobRunner
from service.app import create_app as create_tracker
from service.config import Settings
from tests.conftest import ServeAsgi, bind_loopback, loopback_url

BACKEND_TOKEN = "backend-secret"
TERMINAL = {"completed", "failed", "cancelled"}
WORDS = " ".join(f"word{index}" for index in range(400))


@dataclass
class Stack:
    """A tracker and a backend that forwards to it, with a client of each."""

    tracker: httpx.AsyncClient
    backend: httpx.AsyncClient
    runner: JobRunner
    collection_id: int


@pytest.fixture
async def stack(
    settings: Settings, serve_asgi: ServeAsgi, tmp_path: Path
) -> AsyncIterator[Stack]:
    """Serve a tracker that forwards retries to a backend that reports to it."""
    tracker_sock, backend_sock = bind_loopback(), bind_loopback()
    tracker_url, backend_url = loopback_url(tracker_sock), loopback_url(backend_sock)
    (tmp_path / "transcripts").mkdir()
    backend_app = create_backend(
        BackendConfig(
            tracker_url=tracker_url,
            data_dir=tmp_path / "data",
            public_url=backend_url,
            token=BACKEND_TOKEN,
            transcript_dir=tmp_path / "transcripts",
            flush_interval_seconds=0.1,
        )
    )
    tracker_settings = msgspec.structs.replace(
        settings, backend_url=backend_url, backend_token=BACKEND_TOKEN
    )
    await serve_asgi(create_tracker(tracker_settings), tracker_sock)
    await serve_asgi(backend_app, backend_sock)
    auth = {"Authorization": f"Bearer {BACKEND_TOKEN}"}

    async with (
        httpx.AsyncClient(base_url=tracker_url) as tracker,
        httpx.AsyncClient(base_url=backend_url, headers=auth) as backend,
    ):
        created = await backend.post("/collections", json={"name": "Docs"})
        assert created.status_code == 201, created.text
        yield Stack(
            tracker, backend, backend_app.state.backend.runner, created.json()["id"]
        )


DOCUMENTS = {
    "notes.md": f"# Notes\n\n{WORDS}\n".encode(),
    "page.html": f"<html><body><h1>Page</h1><p>{WORDS}</p></body></html>".encode(),
    "report.docx": docx_bytes(["Quarterly report", WORDS]),
    "scan.pdf": pdf_bytes(["Scanned page one", "alpha beta gamma delta"]),
}


async def upload(
    stack: Stack,
    name: str,
    content: bytes,
    params: dict[str, Any] | None = None,
    plugin_name: str = "markitdown_ingest",
) -> httpx.Response:
    return await stack.backend.post(
        f"/collections/{stack.collection_id}/ingest-file",
        files={"file": (name, content)},
        data={"plugin_name": plugin_name, "plugin_params": json.dumps(params or {})},
    )


async def wait_for_job(
    stack: Stack, job_id: int, *, attempt: int = 1
) -> dict[str, Any]:
    """Poll the tracker until the job's ``attempt`` ends, and return the job."""
    path = f"/collections/{stack.collection_id}/ingestion-jobs/{job_id}"
    deadline = time.monotonic() + 15.0
    while True:
        job: dict[str, Any] = (await stack.tracker.get(path)).json()
        if job["attempt"] == attempt and job["status"] in TERMINAL:
            return job
        assert time.monotonic() < deadline, f"job did not finish: {job}"
        await asyncio.sleep(0.05)


async def wait_for_progress(stack: Stack, job_id: int, current: int) -> dict[str, Any]:
    """Poll the tracker until the job's progress reaches ``current``, return the job."""
    path = f"/collections/{stack.collection_id}/ingestion-jobs/{job_id}"
    deadline = time.monotonic() + 15.0
    while True:
        job: dict[str, Any] = (await stack.tracker.get(path)).json()
        if job["progress"]["current"] >= current:
            return job
        assert time.monotonic() < deadline, f"job made no progress: {job}"
        await asyncio.sleep(0.05)


async def wait_for_run(stack: Stack, job_id: int, attempt: int) -> str | None:
    """Wait until the backend's run of the job's ``attempt`` has closed its reporter."""
    deadline = time.monotonic() + 15.0
    while True:
        run = stack.runner.runs.get(job_id)
        if run is not None and run.attempt == attempt:
            return run.final_status
        assert time.monotonic() < deadline, f"run of job {job_id} did not end"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
async def test_ingest_file_completes(stack: Stack, name: str) -> None:
    response = await upload(stack, name, DOCUMENTS[name], {"chunk_size": 500})
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "pending"

    job = await wait_for_job(stack, response.json()["job_id"])
    assert job["status"] == "completed", job["error_details"]
    assert job["document_count"] > 0
    assert job["original_filename"] == name
    assert job["file_url"].startswith(str(stack.backend.base_url))
    assert job["progress"]["percentage"] == 100.0
    stages = job["processing_stats"]["stage_seconds"]
    assert set(stages) == {"convert", "chunk"}
    assert all(seconds >= 0 for seconds in stages.values())


async def test_pdf_text_is_extracted(stack: Stack) -> None:
    response = await upload(stack, "scan.pdf", DOCUMENTS["scan.pdf"])
    job = await wait_for_job(stack, response.json()["job_id"])

    # The two short lines fit in one chunk of the default 1000 characters.
    assert job["document_count"] == 1
    assert job["processing_stats"]["characters"] >= len("alpha beta gamma delta")


async def test_corrupt_pdf_fails_with_traceback(stack: Stack) -> None:
    corrupt = b"%PDF-1.7\n" + bytes(range(256)) * 8
    response = await upload(stack, "broken.pdf", corrupt)

    job = await wait_for_job(stack, response.json()["job_id"])
    assert job["status"] == "failed"
    assert job["error_details"]["exception_type"].endswith("FileConversionException")
    assert "Traceback" in job["error_details"]["traceback"]
    assert job["error_details"]["stage"] == "convert"


async def test_retry_reports_into_same_job(stack: Stack) -> None:
    corrupt = b"%PDF-1.7\n" + bytes(range(256)) * 8
    response = await upload(stack, "broken.pdf", corrupt)
    job_id = response.json()["job_id"]
    await wait_for_job(stack, job_id)

    retry = await stack.tracker.post(
        f"/collections/{stack.collection_id}/ingestion-jobs/{job_id}/retry",
        json={"override_params": {"chunk_size": 300}},
    )
    assert retry.status_code == 200, retry.text
    job = await wait_for_job(stack, job_id, attempt=2)
    assert job["status"] == "failed"
    assert job["plugin_params"]["chunk_size"] == 300
    assert await wait_for_run(stack, job_id, 2) == "failed"

    listing = await stack.tracker.get(
        f"/collections/{stack.collection_id}/ingestion-jobs"
    )
    assert listing.json()["total"] == 1


async def test_retry_with_fixed_params_completes(stack: Stack) -> None:
    bad_params = {"chunk_size": 100, "chunk_overlap": 100}
    response = await upload(stack, "notes.md", DOCUMENTS["notes.md"], bad_params)
    job_id = response.json()["job_id"]
    failed = await wait_for_job(stack, job_id)
    assert "chunk_overlap" in failed["error_message"]

    await stack.tracker.post(
        f"/collections/{stack.collection_id}/ingestion-jobs/{job_id}/retry",
        json={"override_params": {"chunk_overlap": 10}},
    )
    job = await wait_for_job(stack, job_id, attempt=2)
    assert job["status"] == "completed", job["error_message"]
    assert job["document_count"] > 1


async def test_repeated_idempotency_key_runs_once(stack: Stack) -> None:
    response = await upload(stack, "notes.md", DOCUMENTS["notes.md"])
    job_id = response.json()["job_id"]
    await wait_for_job(stack, job_id)
    headers = {
        "Idempotency-Key": f"ingestion-job-{job_id}-attempt-2",
        "X-Ingestion-Job-Id": str(job_id),
        "X-Ingestion-Attempt": "2",
    }
    path = f"/collections/{stack.collection_id}/ingest-base"
    body = {"plugin_name": "youtube_transcript_ingest", "plugin_params": {}}

    first = await stack.backend.post(path, json=body, headers=headers)
    await wait_for_run(stack, job_id, 2)
    stack.runner.runs.pop(job_id)
    second = await stack.backend.post(path, json=body, headers=headers)
    await asyncio.sleep(0.3)

    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json() == first.json()
    assert job_id not in stack.runner.runs


@dataclass
class Pages:
    """Two HTML pages on loopback. ``/two`` responds only once ``release`` is set."""

    url: str
    release: asyncio.Event


@pytest.fixture
async def pages(serve_asgi: ServeAsgi) -> Pages:
    """Serve two HTML pages on loopback for url_ingest to fetch."""
    release = asyncio.Event()
    release.set()

    @get("/one", media_type=MediaType.HTML)
    async def one() -> str:
        return f"<html><body><h1>One</h1><p>{WORDS}</p></body></html>"

    @get("/two", media_type=MediaType.HTML)
    async def two() -> str:
        await release.wait()
        return "<html><body><h1>Two</h1><p>Second page text.</p></body></html>"

    return Pages(await serve_asgi(Litestar([one, two])), release)


async def test_url_ingest_reports_each_url(stack: Stack, pages: Pages) -> None:
    urls = [f"{pages.url}/one", f"{pages.url}/two"]
    pages.release.clear()
    response = await stack.backend.post(
        f"/collections/{stack.collection_id}/ingest-url",
        json={"urls": urls, "plugin_name": "url_ingest", "plugin_params": {}},
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]

    # The second page is held back, so the tracker shows the progress of the first.
    halfway = (await wait_for_progress(stack, job_id, 1))["progress"]
    pages.release.set()
    job = await wait_for_job(stack, job_id)

    assert halfway == {
        "current": 1,
        "total": 2,
        "percentage": 50.0,
        "message": f"Fetched {urls[0]}",
    }
    assert job["status"] == "completed", job["error_details"]
    assert job["processing_stats"]["url_count"] == 2
    assert job["document_count"] >= 2
    assert job["plugin_params"]["urls"] == urls


async def test_url_ingest_fails_on_http_error(stack: Stack, pages: Pages) -> None:
    response = await stack.backend.post(
        f"/collections/{stack.collection_id}/ingest-url",
        json={"urls": [f"{pages.url}/missing"], "plugin_name": "url_ingest"},
    )

    job = await wait_for_job(stack, response.json()["job_id"])
    assert job["status"] == "failed"
    assert job["error_details"]["exception_type"] == "httpx.HTTPStatusError"


async def test_youtube_reads_transcript_directory(stack: Stack, tmp_path: Path) -> None:
    (tmp_path / "transcripts" / "dQw4w9WgXcQ.txt").write_text(WORDS)
    (tmp_path / "transcripts" / "aaaaaaaaaaa.txt").write_text("Short transcript.")
    response = await stack.backend.post(
        f"/collections/{stack.collection_id}/ingest-base",
        json={
            "plugin_name": "youtube_transcript_ingest",
            "plugin_params": {
                "video_ids": [
                    "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
                    "aaaaaaaaaaa",
                ]
            },
        },
    )
    assert response.status_code == 202, response.text

    job = await wait_for_job(stack, response.json()["job_id"])
    assert job["status"] == "completed", job["error_details"]
    assert job["progress"]["total"] == 2
    assert job["processing_stats"]["video_count"] == 2
    assert job["document_count"] >= 2


async def test_youtube_missing_transcript_fails(stack: Stack) -> None:
    response = await stack.backend.post(
        f"/collections/{stack.collection_id}/ingest-base",
        json={
            "plugin_name": "youtube_transcript_ingest",
            "plugin_params": {"video_ids": ["bbbbbbbbbbb"]},
        },
    )

    job = await wait_for_job(stack, response.json()["job_id"])
    assert job["status"] == "failed"
    assert job["error_details"]["exception_type"] == "FileNotFoundError"
    assert "bbbbbbbbbbb" in job["error_message"]


async def test_cancel_stops_slow_job(stack: Stack) -> None:
    params = {"chunk_size": 100, "chunk_overlap": 0, "delay_per_chunk": 0.1}
    response = await upload(stack, "notes.md", DOCUMENTS["notes.md"], params)
    job_id = response.json()["job_id"]
    path = f"/collections/{stack.collection_id}/ingestion-jobs/{job_id}"
    await wait_for_progress(stack, job_id, 2)

    cancel = await stack.tracker.post(f"{path}/cancel")
    assert cancel.status_code == 200, cancel.text
    assert await wait_for_run(stack, job_id, 1) == "cancelled"

    job = (await stack.tracker.get(path)).json()
    assert job["status"] == "cancelled"
    assert job["progress"]["current"] < job["progress"]["total"]


async def test_unknown_plugin_is_rejected(stack: Stack) -> None:
    response = await upload(stack, "notes.md", b"# x", plugin_name="ocr_ingest")

    assert response.status_code == 400
    assert "'ocr_ingest'" in response.json()["detail"]
    assert "markitdown_ingest" in response.json()["detail"]


async def test_invalid_plugin_params_rejected(stack: Stack) -> None:
    response = await stack.backend.post(
        f"/collections/{stack.collection_id}/ingest-file",
        files={"file": ("notes.md", b"# x")},
        data={"plugin_name": "markitdown_ingest", "plugin_params": "{not json"},
    )

    assert response.status_code == 400
    assert "plugin_params" in response.json()["detail"]


async def test_missing_token_is_rejected(stack: Stack) -> None:
    response = await stack.backend.post(
        "/collections", json={"name": "x"}, headers={"Authorization": ""}
    )

    assert response.status_code == 401


async def test_unknown_collection_is_not_found(stack: Stack) -> None:
    response = await stack.backend.post(
        "/collections/999/ingest-url",
        json={"urls": ["http://127.0.0.1:9/"], "plugin_name": "url_ingest"},
    )

    assert response.status_code == 404


async def test_unreachable_tracker_is_unavailable(tmp_path: Path) -> None:
    closed = bind_loopback()  # bound but not listening, so connections are refused
    app = create_backend(
        BackendConfig(tracker_url=loopback_url(closed), data_dir=tmp_path / "data")
    )
    async with AsyncTestClient(app=app) as client:
        await client.post("/collections", json={"name": "Docs"})
        response = await client.post(
            "/collections/1/ingest-base",
            json={"plugin_name": "youtube_transcript_ingest", "plugin_params": {}},
        )
    closed.close()

    assert response.status_code == 503
    assert "ingestion tracker" in response.json()["detail"]
