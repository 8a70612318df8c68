"""AsyncJobReporter, the asyncio flavour, against the in-memory tracker."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from ingestion_tracker_client import (
    AsyncJobReporter,
    AsyncWorkerClient,
    JobCancelled,
)
from tracker_fakes import FakeTracker, async_wait_until

FAST: dict[str, Any] = {"flush_interval": 0.02, "backoff": (0.01, 0.05)}
LOGGER = "ingestion_tracker_client"


@pytest.fixture
async def worker(tracker: FakeTracker) -> AsyncIterator[AsyncWorkerClient]:
    async with AsyncWorkerClient(
        base_url="http://tracker.test", transport=tracker.async_transport()
    ) as client:
        yield client


def reporter(worker: AsyncWorkerClient, **options: Any) -> AsyncJobReporter:
    return worker.reporter(1, attempt=1, **{**FAST, **options})


def actions(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        str(getattr(record, "action", ""))
        for record in caplog.records
        if record.name == LOGGER and record.levelno == level
    ]


async def test_async_context_reports_started_then_completed(
    worker: AsyncWorkerClient, tracker: FakeTracker
) -> None:
    async with reporter(worker) as job:
        job.progress(1, 2, "half")
    assert tracker.applied_types(1) == ["started", "progress", "completed"]
    assert job.final_status == "completed"


async def test_async_exception_reports_failed_with_details(
    worker: AsyncWorkerClient, tracker: FakeTracker
) -> None:
    async def ingest() -> None:
        async with reporter(worker) as job:
            job.stage("chunk")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await ingest()
    details = tracker.jobs[1].error_details
    assert tracker.jobs[1].status == "failed"
    assert details is not None
    assert details["exception_type"] == "OSError"
    assert details["stage"] == "chunk"
    assert "OSError: disk full" in details["traceback"]


async def test_async_task_cancel_reports_failed(
    worker: AsyncWorkerClient, tracker: FakeTracker
) -> None:
    entered = asyncio.Event()

    async def ingest() -> None:
        async with reporter(worker):
            entered.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(ingest())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    details = tracker.jobs[1].error_details
    assert tracker.jobs[1].status == "failed"
    assert details is not None
    assert details["exception_type"] == "asyncio.exceptions.CancelledError"


async def test_async_tracker_outage_loses_nothing(
    worker: AsyncWorkerClient, tracker: FakeTracker
) -> None:
    tracker.down = True
    job = reporter(worker)
    job.started()
    for current in range(1, 101):
        job.progress(current, 100)
    job.heartbeat()
    job.completed(document_count=9)
    await async_wait_until(lambda: tracker.attempts >= 3)

    tracker.down = False
    await job.aclose()

    assert tracker.applied_types(1) == ["started", "progress", "heartbeat", "completed"]
    assert tracker.jobs[1].current == 100
    assert tracker.jobs[1].document_count == 9


async def test_async_progress_makes_few_requests(
    worker: AsyncWorkerClient, tracker: FakeTracker
) -> None:
    async with reporter(worker, flush_interval=0.05) as job:
        for current in range(1, 10_001):
            job.progress(current, 10_000)
            if current % 1000 == 0:
                await asyncio.sleep(0.01)
    assert len(tracker.batches) < 50
    assert tracker.jobs[1].current == 10_000


async def test_async_progress_from_worker_thread(
    worker: AsyncWorkerClient, tracker: FakeTracker
) -> None:
    def plugin(progress_callback: Any) -> None:
        for current in range(1, 201):
            progress_callback(current, 200, "Embedding")
            time.sleep(0.0005)

    async with reporter(worker) as job:
        await asyncio.to_thread(plugin, job.progress)
    assert tracker.jobs[1].current == 200
    assert tracker.jobs[1].status == "completed"


async def test_async_job_cancelled_is_suppressed(
    worker: AsyncWorkerClient, tracker: FakeTracker
) -> None:
    tracker.jobs[1].cancel_requested = True
    async with reporter(worker) as job:
        await async_wait_until(lambda: job.cancel_requested)
        job.raise_if_cancelled()
        pytest.fail("raise_if_cancelled returned although a cancel was requested")
    assert job.final_status == "cancelled"
    assert tracker.applied_types(1) == ["started", "cancelled"]


async def test_async_close_gives_up_and_logs(
    worker: AsyncWorkerClient, tracker: FakeTracker, caplog: pytest.LogCaptureFixture
) -> None:
    tracker.down = True
    job = reporter(worker, close_timeout=0.3)
    job.completed()
    started = time.monotonic()
    await job.aclose()
    elapsed = time.monotonic() - started
    assert 0.25 < elapsed < 0.6
    assert "events_lost" in actions(caplog, logging.ERROR)


async def test_async_close_cancels_a_hanging_request(
    worker: AsyncWorkerClient, tracker: FakeTracker, caplog: pytest.LogCaptureFixture
) -> None:
    tracker.delays[1] = 5.0
    job = reporter(worker, close_timeout=0.2)
    job.completed()
    started = time.monotonic()
    await job.aclose()
    assert time.monotonic() - started < 0.5
    assert "events_lost" in actions(caplog, logging.ERROR)


async def test_async_transport_errors_are_logged(
    tracker: FakeTracker, caplog: pytest.LogCaptureFixture
) -> None:
    tracker.raises = ZeroDivisionError("division by zero in a transport")
    client = AsyncWorkerClient(
        base_url="http://tracker.test", transport=tracker.async_transport()
    )
    async with reporter(client, close_timeout=0.1) as job:
        job.progress(1, 2)
        await async_wait_until(lambda: tracker.attempts >= 2)
    await client.aclose()
    assert "events_retry_scheduled" in actions(caplog, logging.WARNING)
    assert "events_lost" in actions(caplog, logging.ERROR)


async def test_async_slow_job_spares_others(
    worker: AsyncWorkerClient, tracker: FakeTracker
) -> None:
    tracker.add_job(2)
    tracker.delays[1] = 1.0
    slow = reporter(worker, close_timeout=0)
    slow.started()
    fast = worker.reporter(2, attempt=1, **FAST)
    started = time.monotonic()
    fast.completed()
    await fast.aclose()
    assert time.monotonic() - started < 0.5
    assert tracker.jobs[2].status == "completed"
    await slow.aclose()


async def test_async_worker_close_closes_open_reporters(
    tracker: FakeTracker,
) -> None:
    client = AsyncWorkerClient(
        base_url="http://tracker.test", transport=tracker.async_transport()
    )
    first = reporter(client)
    tracker.add_job(2)
    second = client.reporter(2, **FAST)
    first.completed()
    second.failed("no text layer")
    await client.aclose()
    assert tracker.jobs[1].status == "completed"
    assert tracker.jobs[2].status == "failed"


async def test_async_reporter_created_twice_closes_quietly(
    worker: AsyncWorkerClient, caplog: pytest.LogCaptureFixture
) -> None:
    job = reporter(worker)
    await job.aclose()
    await job.aclose()
    job.progress(1, 1)
    assert actions(caplog, logging.ERROR) == []


def test_async_reporter_needs_running_loop(tracker: FakeTracker) -> None:
    client = AsyncWorkerClient(
        base_url="http://tracker.test", transport=tracker.async_transport()
    )
    with pytest.raises(RuntimeError, match="must be called with an event loop"):
        client.reporter(1)


async def test_async_cancel_request_raises(
    worker: AsyncWorkerClient, tracker: FakeTracker
) -> None:
    tracker.jobs[1].cancel_requested = True
    job = reporter(worker)
    job.heartbeat()
    await async_wait_until(lambda: job.cancel_requested)
    with pytest.raises(JobCancelled):
        job.raise_if_cancelled()
    await job.aclose()


async def test_async_silent_reporter_sends_heartbeats(
    worker: AsyncWorkerClient, tracker: FakeTracker
) -> None:
    def heartbeats() -> int:
        return tracker.applied_types(1).count("heartbeat")

    async with reporter(worker, heartbeat_interval=0.05):
        await async_wait_until(lambda: heartbeats() >= 3)
    sent = heartbeats()
    await asyncio.sleep(0.15)
    assert tracker.applied_types(1)[-1] == "completed"
    assert heartbeats() == sent


async def test_async_heartbeats_disabled_with_none(
    worker: AsyncWorkerClient, tracker: FakeTracker
) -> None:
    async with reporter(worker, heartbeat_interval=None):
        await asyncio.sleep(0.2)
    assert tracker.applied_types(1) == ["started", "completed"]
