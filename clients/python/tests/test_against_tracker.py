"""The SDK against the real tracker, served by uvicorn on loopback over PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import msgspec
import pytest
import uvicorn

pytest.importorskip("service", reason="needs the tracker's repository and service")

from ingestion_tracker_client import (
    AsyncTrackerClient,
    AsyncWorkerClient,
    BadRequest,
    Conflict,
    Forbidden,
    Job,
    JobNotFound,
    ServiceUnavailable,
    TrackerClient,
    Unauthorized,
    WorkerClient,
    resume_from_headers,
)

from service.app import create_app
from service.config import Settings
from tests.backend import FakeBackend

FAST: dict[str, Any] = {"flush_interval": 0.02, "backoff": (0.05, 0.2)}
API_TOKEN = "sdk-test-api"
WORKER_TOKEN = "sdk-test-worker"
BACKEND_TOKEN = "sdk-test-backend"


class LiveTracker:
    """The tracker app under uvicorn on a loopback port; restarts on the same port."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        config = uvicorn.Config(
            create_app(self.settings),
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            lifespan="on",
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.02)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        await self._task
        self._server = None
        self._task = None


StartTracker = Callable[..., Awaitable[LiveTracker]]


@pytest.fixture
async def start_tracker(settings: Settings) -> AsyncIterator[StartTracker]:
    """Start trackers with setting overrides; each stops when the test ends."""
    started: list[LiveTracker] = []

    async def start(**overrides: Any) -> LiveTracker:
        tracker = LiveTracker(msgspec.structs.replace(settings, **overrides))
        await tracker.start()
        started.append(tracker)
        return tracker

    yield start
    for tracker in reversed(started):
        await tracker.stop()


class RecordingTransport(httpx.AsyncBaseTransport):
    """A real network transport that counts failed connections and keeps the
    results of every event batch."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.results: list[dict[str, Any]] = []
        self.failures = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.TransportError:
            self.failures += 1
            raise
        if request.url.path == "/ingestion-events" and response.status_code == 200:
            self.results.extend(json.loads(await response.aread())["results"])
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_reporter_drives_job_to_completed(start_tracker: StartTracker) -> None:
    tracker = await start_tracker()
    async with AsyncWorkerClient(base_url=tracker.url) as worker:
        job = await worker.register(
            collection_id=7, plugin_name="simple_ingest", original_filename="a.md"
        )
        async with worker.reporter(job.id, attempt=job.attempt, **FAST) as reporter:
            reporter.stage("chunk")
            for current in range(1, 41):
                reporter.progress(current, 40, f"Chunk {current} of 40")
                await asyncio.sleep(0.001)
            reporter.completed(document_count=40, processing_stats={"chunks": 40})

    async with AsyncTrackerClient(base_url=tracker.url) as client:
        done = await client.wait(7, job.id, timeout=5, poll_interval=0.05)
        summary = await client.summary(7)
    assert done.status == "completed"
    assert done.progress.current == 40
    assert done.progress.message == "Chunk 40 of 40"
    assert done.progress.percentage == 100.0
    assert done.document_count == 40
    assert done.processing_stats == {"chunks": 40}
    assert done.processing_duration_seconds is not None
    assert summary.by_status.completed == 1
    assert summary.processing_duration_last_24h.completed_jobs == 1


async def test_summary_groups_failures(start_tracker: StartTracker) -> None:
    tracker = await start_tracker()
    async with AsyncWorkerClient(base_url=tracker.url) as worker:
        for name in ("a.pdf", "b.pdf"):
            job = await worker.register(
                collection_id=8, plugin_name="simple_ingest", original_filename=name
            )
            with contextlib.suppress(FileNotFoundError):
                async with worker.reporter(job.id, attempt=job.attempt, **FAST):
                    raise FileNotFoundError(f"No such file: /data/{name}")

    async with AsyncTrackerClient(base_url=tracker.url) as client:
        summary = await client.summary(8)
    assert [(g.exception_type, g.count) for g in summary.failures_last_24h] == [
        ("FileNotFoundError", 2)
    ]


async def test_sync_flavour_against_tracker(start_tracker: StartTracker) -> None:
    tracker = await start_tracker()

    def run_worker() -> tuple[int, str, int]:
        with WorkerClient(base_url=tracker.url) as worker:
            job = worker.register(collection_id=8, plugin_name="simple_ingest")
            try:
                with worker.reporter(job.id, attempt=1, **FAST) as reporter:
                    reporter.progress(1, 2, "Parsing")
                    reporter.stage("parse")
                    raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start")
            except UnicodeDecodeError:
                pass
        with TrackerClient(base_url=tracker.url) as client:
            failed = client.get_job(8, job.id)
        stage = failed.error_details["stage"] if failed.error_details else ""
        return job.id, failed.status, len(stage)

    _, status, stage_length = await asyncio.to_thread(run_worker)
    async with AsyncTrackerClient(base_url=tracker.url) as client:
        page = await client.list_jobs(8, status="failed")
    details = page.items[0].error_details
    assert status == "failed"
    assert stage_length == len("parse")
    assert details is not None
    assert details["exception_type"] == "UnicodeDecodeError"
    assert "Traceback" in details["traceback"]


async def test_retry_ignores_old_attempt(
    start_tracker: StartTracker, backend: FakeBackend
) -> None:
    tracker = await start_tracker(backend_url=backend.url, backend_token=BACKEND_TOKEN)
    old_transport = RecordingTransport()
    new_transport = RecordingTransport()
    old_worker = AsyncWorkerClient(base_url=tracker.url, transport=old_transport)
    new_worker = AsyncWorkerClient(base_url=tracker.url, transport=new_transport)

    job = await old_worker.register(
        collection_id=9,
        plugin_name="url_ingest",
        source="url",
        plugin_params={"urls": ["http://kb.invalid/page"]},
    )
    first = old_worker.reporter(job.id, attempt=1, **FAST)
    first.started()
    first.failed("Fetching the page timed out")
    await first.aclose()

    async with AsyncTrackerClient(base_url=tracker.url) as client:
        retried = await client.retry(9, job.id, override_params={"timeout": 60})
        await backend.wait_for_ingest_requests(1)
        resumed = resume_from_headers(backend.ingest_requests[0].headers)
        assert resumed == (job.id, 2)

        job_id, attempt = resumed
        async with new_worker.reporter(job_id, attempt=attempt, **FAST) as second:
            second.progress(1, 2, "Fetched")
            zombie = old_worker.reporter(job_id, attempt=1, **FAST)
            zombie.progress(9, 10, "Late event of attempt 1")
            await zombie.aclose()
            second.completed(document_count=2)
        done = await client.get_job(9, job.id)

    await old_worker.aclose()
    await new_worker.aclose()
    assert retried.attempt == 2
    assert retried.plugin_params["timeout"] == 60
    assert old_transport.results[-1]["reason"] == "stale_attempt"
    assert old_transport.results[-1]["applied"] is False
    assert all(result["applied"] for result in new_transport.results)
    assert done.status == "completed"
    assert done.attempt == 2
    assert done.document_count == 2
    assert done.progress.message == "Fetched"


async def test_tracker_restart_mid_job_loses_nothing(
    start_tracker: StartTracker,
) -> None:
    tracker = await start_tracker()
    transport = RecordingTransport()
    worker = AsyncWorkerClient(base_url=tracker.url, transport=transport)
    job = await worker.register(collection_id=10, plugin_name="simple_ingest")
    reporter = worker.reporter(job.id, attempt=1, **FAST)
    reporter.started()
    reporter.progress(1, 4, "Chunk 1")
    async with AsyncTrackerClient(base_url=tracker.url) as client:
        await _wait_for_progress(client, 10, job.id, 1)

    await tracker.stop()
    reporter.progress(2, 4, "Chunk 2")
    reporter.heartbeat()
    reporter.progress(4, 4, "Chunk 4")
    reporter.completed(document_count=4, message="Stored 4 chunks")
    await asyncio.sleep(0.4)
    failures_while_down = transport.failures
    await tracker.start()
    await reporter.aclose()
    await worker.aclose()

    async with AsyncTrackerClient(base_url=tracker.url) as client:
        done = await client.get_job(10, job.id)
    assert failures_while_down >= 2
    assert done.status == "completed"
    assert done.progress.current == 4
    assert done.progress.message == "Stored 4 chunks"
    assert done.document_count == 4


async def _wait_for_progress(
    client: AsyncTrackerClient, collection_id: int, job_id: int, current: int
) -> None:
    """Read the job every 20 ms for up to 5 seconds until it reached ``current``."""
    for _ in range(250):
        job = await client.get_job(collection_id, job_id)
        if job.progress.current >= current:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {job_id} did not reach progress {current} in 5 s")


async def test_operator_cancel_reaches_the_reporter(
    start_tracker: StartTracker,
) -> None:
    tracker = await start_tracker()
    async with (
        AsyncWorkerClient(base_url=tracker.url) as worker,
        AsyncTrackerClient(base_url=tracker.url) as client,
    ):
        job = await worker.register(collection_id=11, plugin_name="simple_ingest")
        async with worker.reporter(job.id, attempt=1, **FAST) as reporter:
            await client.cancel(11, job.id)
            for current in range(1, 1000):
                reporter.progress(current, 1000)
                await asyncio.sleep(0.01)
                reporter.raise_if_cancelled()
            pytest.fail("the reporter never saw the cancel request")
        cancelled = await client.get_job(11, job.id)
    assert reporter.final_status == "cancelled"
    assert cancelled.status == "cancelled"
    assert cancelled.cancel_requested_at is not None


async def test_query_errors_from_the_tracker(start_tracker: StartTracker) -> None:
    tracker = await start_tracker()
    async with (
        AsyncWorkerClient(base_url=tracker.url) as worker,
        AsyncTrackerClient(base_url=tracker.url) as client,
    ):
        job = await worker.register(collection_id=12, plugin_name="simple_ingest")
        with pytest.raises(JobNotFound, match="not found"):
            await client.get_job(13, job.id)
        with pytest.raises(BadRequest, match="sort_by") as bad:
            await client.list_jobs(12, sort_by="size")
        with pytest.raises(Conflict):
            await client.retry(12, job.id)
        async with worker.reporter(job.id, **FAST) as reporter:
            reporter.failed("Parser crashed")
        with pytest.raises(ServiceUnavailable) as unavailable:
            await client.retry(12, job.id)
    assert "created_at" in bad.value.detail
    assert unavailable.value.retry_after is None


async def test_tokens_and_scopes(start_tracker: StartTracker) -> None:
    tracker = await start_tracker(
        api_tokens=(API_TOKEN,), worker_tokens=(WORKER_TOKEN,)
    )
    async with AsyncWorkerClient(base_url=tracker.url, token=WORKER_TOKEN) as worker:
        job = await worker.register(collection_id=14, plugin_name="simple_ingest")
        async with worker.reporter(job.id, **FAST) as reporter:
            reporter.progress(1, 1)
    async with AsyncTrackerClient(base_url=tracker.url, token=API_TOKEN) as client:
        done = await client.get_job(14, job.id)
    async with AsyncTrackerClient(base_url=tracker.url, token=WORKER_TOKEN) as client:
        with pytest.raises(Forbidden, match="worker scope"):
            await client.get_job(14, job.id)
    async with AsyncTrackerClient(base_url=tracker.url) as client:
        with pytest.raises(Unauthorized, match="Missing bearer token"):
            await client.summary(14)
    assert done.status == "completed"


async def test_cancelled_report_acknowledges_cancel(
    start_tracker: StartTracker,
) -> None:
    tracker = await start_tracker()

    def run_plugin(job_id: int) -> str | None:
        with WorkerClient(base_url=tracker.url) as worker:
            with worker.reporter(job_id, attempt=1, **FAST) as reporter:
                for current in range(1, 1000):
                    reporter.progress(current, 1000)
                    time.sleep(0.01)
                    reporter.raise_if_cancelled()
            return reporter.final_status

    async with (
        AsyncWorkerClient(base_url=tracker.url) as worker,
        AsyncTrackerClient(base_url=tracker.url) as client,
    ):
        job = await worker.register(collection_id=15, plugin_name="simple_ingest")
        plugin = asyncio.create_task(asyncio.to_thread(run_plugin, job.id))
        await _wait_for_progress(client, 15, job.id, 1)
        await client.cancel(15, job.id)
        final_status = await plugin
        done = await client.get_job(15, job.id)
    assert final_status == "cancelled"
    assert done.status == "cancelled"
    assert done.cancel_requested_at is not None
    assert done.cancel_acknowledged_at is not None
    assert done.cancel_acknowledged_at >= done.cancel_requested_at


async def test_heartbeats_keep_silent_job_from_stalling(
    start_tracker: StartTracker,
) -> None:
    tracker = await start_tracker(sweep_interval_seconds=0.1)
    async with (
        AsyncWorkerClient(base_url=tracker.url) as worker,
        AsyncTrackerClient(base_url=tracker.url) as client,
    ):
        beating = await worker.register(
            collection_id=16, plugin_name="simple_ingest", stall_timeout_seconds=1
        )
        silent = await worker.register(
            collection_id=16, plugin_name="simple_ingest", stall_timeout_seconds=1
        )
        with_heartbeats = worker.reporter(beating.id, heartbeat_interval=0.3, **FAST)
        without = worker.reporter(silent.id, heartbeat_interval=None, **FAST)
        with_heartbeats.started()
        without.started()
        # The tracker counts silence in whole seconds, so stalling takes over 2 s.
        silent_now = await _wait_for_stalled(client, 16, silent.id)
        beating_now = await client.get_job(16, beating.id)
        await with_heartbeats.aclose()
        await without.aclose()
    assert beating_now.status == "processing"
    assert beating_now.stalled is False
    assert beating_now.stall_timeout_seconds == 1
    assert silent_now.stalled is True


async def _wait_for_stalled(
    client: AsyncTrackerClient, collection_id: int, job_id: int
) -> Job:
    """Read the job every 50 ms for up to 6 seconds until it is stalled."""
    for _ in range(120):
        job = await client.get_job(collection_id, job_id)
        if job.stalled:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} was not flagged stalled within 6 s")


async def test_watch_resumes_with_every_status_once(
    start_tracker: StartTracker, backend: FakeBackend
) -> None:
    tracker = await start_tracker(backend_url=backend.url, backend_token=BACKEND_TOKEN)
    seen: list[Job] = []
    cursors: list[str | None] = []

    async with (
        AsyncWorkerClient(base_url=tracker.url) as worker,
        AsyncTrackerClient(base_url=tracker.url) as client,
    ):
        job = await worker.register(
            collection_id=17,
            plugin_name="url_ingest",
            source="url",
            plugin_params={"urls": ["http://kb.invalid/page"]},
        )

        async def follow(count: int | None) -> None:
            """Read ``count`` changes, or all until the watch ends, then disconnect."""
            cursor = cursors[-1] if cursors else None
            watch = client.watch(17, job.id, last_event_id=cursor, mode="stream")
            async with watch:
                async for change in watch:
                    seen.append(change)
                    cursors.append(watch.last_event_id)
                    if count is not None and len(seen) >= count:
                        break
            if not cursors or cursors[-1] != watch.last_event_id:
                cursors.append(watch.last_event_id)

        await follow(1)  # pending, then the client disconnects
        first = worker.reporter(job.id, attempt=1, **FAST)
        first.started()
        first.progress(1, 2, "Fetched")
        first.failed("Parsing the page failed")
        await first.aclose()
        await follow(None)  # the rest of attempt 1, ending at failed
        await follow(None)  # nothing new: the tracker returns 204

        await client.retry(17, job.id)
        await follow(len(seen) + 1)  # pending of attempt 2, then disconnect
        second = worker.reporter(job.id, attempt=2, **FAST)
        async with second:
            second.progress(2, 2, "Stored")
        await follow(None)

    statuses = [change.status for change in seen]
    transitions = [s for i, s in enumerate(statuses) if i == 0 or s != statuses[i - 1]]
    ids = [cursor for cursor in cursors if cursor is not None]
    assert transitions == [
        "pending",
        "processing",
        "failed",
        "pending",
        "processing",
        "completed",
    ]
    assert statuses.count("pending") == 2
    assert statuses.count("failed") == 1
    assert statuses.count("completed") == 1
    assert len(set(ids)) == len(seen)
    assert seen[-1].attempt == 2
    assert seen[-1].document_count == 0


async def test_collection_watch_resumes_after_disconnect(
    start_tracker: StartTracker,
) -> None:
    tracker = await start_tracker()
    async with (
        AsyncWorkerClient(base_url=tracker.url) as worker,
        AsyncTrackerClient(base_url=tracker.url) as client,
    ):
        watch = client.watch_collection(18, mode="stream")
        reader = asyncio.create_task(anext(watch))
        for _ in range(250):
            if watch.last_event_id is not None:
                break
            await asyncio.sleep(0.02)
        job = await worker.register(collection_id=18, plugin_name="simple_ingest")
        first = await reader
        await watch.aclose()

        async with worker.reporter(job.id, attempt=1, **FAST) as reporter:
            reporter.progress(1, 1, "Done")
        rest = []
        resumed = client.watch_collection(
            18, last_event_id=watch.last_event_id, mode="stream"
        )
        async with resumed:
            async for change in resumed:
                rest.append(change)
                if change.is_terminal:
                    break
    statuses = [change.status for change in [first, *rest]]
    assert first.id == job.id
    assert statuses[0] == "pending"
    assert statuses[-1] == "completed"
    assert set(statuses[1:-1]) == {"processing"}
    assert resumed.mode == "stream"


async def test_sync_watch_follows_job_to_completed(
    start_tracker: StartTracker,
) -> None:
    tracker = await start_tracker()
    async with AsyncWorkerClient(base_url=tracker.url) as worker:
        job = await worker.register(collection_id=19, plugin_name="simple_ingest")

        def watch_job() -> tuple[list[str], str]:
            with (
                TrackerClient(base_url=tracker.url) as client,
                client.watch(19, job.id) as watch,
            ):
                return [change.status for change in watch], watch.mode

        watching = asyncio.create_task(asyncio.to_thread(watch_job))
        async with worker.reporter(job.id, attempt=1, **FAST) as reporter:
            for current in range(1, 4):
                reporter.progress(current, 3)
                await asyncio.sleep(0.05)
        statuses, mode = await asyncio.wait_for(watching, 10)
    # The first change is the job's state when the thread connected.
    assert set(statuses[:-1]) <= {"pending", "processing"}
    assert statuses[-1] == "completed"
    assert mode == "stream"
