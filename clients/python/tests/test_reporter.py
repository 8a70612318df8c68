"""JobReporter, the thread flavour, against the in-memory tracker."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest
from ingestion_tracker_client import JobCancelled, JobReporter, WorkerClient
from tracker_fakes import FakeTracker, wait_until

FAST: dict[str, Any] = {"flush_interval": 0.02, "backoff": (0.01, 0.05)}
LOGGER = "ingestion_tracker_client"
UTC_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


@pytest.fixture
def worker(tracker: FakeTracker) -> Iterator[WorkerClient]:
    with WorkerClient(
        base_url="http://tracker.test", transport=tracker.transport()
    ) as client:
        yield client


def reporter(worker: WorkerClient, **options: Any) -> JobReporter:
    return worker.reporter(1, attempt=1, **{**FAST, **options})


def logged(caplog: pytest.LogCaptureFixture, action: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "action", "") == action]


def actions(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        getattr(record, "action", "")
        for record in caplog.records
        if record.name == LOGGER and record.levelno == level
    ]


def test_context_manager_reports_started_then_completed(
    worker: WorkerClient, tracker: FakeTracker
) -> None:
    with reporter(worker) as job:
        job.progress(1, 2, "half")
    assert tracker.applied_types(1) == ["started", "progress", "completed"]
    assert tracker.jobs[1].status == "completed"
    assert job.final_status == "completed"


def test_events_carry_seq_and_attempt(
    worker: WorkerClient, tracker: FakeTracker
) -> None:
    with reporter(worker) as job:
        job.heartbeat()
    received = tracker.received(1)
    seqs = [event["seq"] for event in received]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    assert {event["attempt"] for event in received} == {1}
    for event in received:
        assert UTC_TIME.fullmatch(event["occurred_at"])


def test_attempt_is_left_out_when_unknown(
    worker: WorkerClient, tracker: FakeTracker
) -> None:
    with worker.reporter(1, **FAST):
        pass
    assert all("attempt" not in event for event in tracker.received(1))


def test_explicit_completed_not_repeated(
    worker: WorkerClient, tracker: FakeTracker
) -> None:
    with reporter(worker) as job:
        job.completed(document_count=7, processing_stats={"chunks": 7}, message="ok")
    received = tracker.received(1)
    assert tracker.applied_types(1) == ["started", "completed"]
    assert received[-1]["document_count"] == 7
    assert received[-1]["processing_stats"] == {"chunks": 7}
    assert received[-1]["message"] == "ok"


def test_exception_reports_failed_with_details(
    worker: WorkerClient, tracker: FakeTracker
) -> None:
    def ingest() -> None:
        with reporter(worker) as job:
            job.stage("parse")
            job.stage("embed")
            raise ValueError("bad page 3")

    with pytest.raises(ValueError, match="bad page"):
        ingest()
    details = tracker.jobs[1].error_details
    assert tracker.jobs[1].status == "failed"
    assert tracker.jobs[1].error_message == "bad page 3"
    assert details is not None
    assert details["exception_type"] == "ValueError"
    assert details["stage"] == "embed"
    assert details["traceback"].startswith("Traceback (most recent call last)")
    assert "ValueError: bad page 3" in details["traceback"]


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken")


def test_exception_with_broken_str_reports_failed(
    worker: WorkerClient, tracker: FakeTracker
) -> None:
    def ingest() -> None:
        with reporter(worker):
            raise UnprintableError

    with pytest.raises(UnprintableError):
        ingest()
    assert tracker.jobs[1].status == "failed"
    assert tracker.jobs[1].error_message == (
        "<UnprintableError: str() raised an exception>"
    )


def test_keyboard_interrupt_reports_failed_and_propagates(
    worker: WorkerClient, tracker: FakeTracker
) -> None:
    with pytest.raises(KeyboardInterrupt), reporter(worker):
        raise KeyboardInterrupt
    assert tracker.jobs[1].status == "failed"
    assert (
        tracker.jobs[1].error_message
        == "The worker was interrupted by KeyboardInterrupt"
    )


def test_failed_adds_current_stage(worker: WorkerClient, tracker: FakeTracker) -> None:
    job = reporter(worker)
    job.stage("download")
    job.failed("HTTP 404 from the source", {"url": "http://example.invalid/a.pdf"})
    job.close()
    assert tracker.jobs[1].error_details == {
        "url": "http://example.invalid/a.pdf",
        "stage": "download",
    }


def test_tracker_outage_loses_nothing(
    worker: WorkerClient, tracker: FakeTracker
) -> None:
    tracker.down = True
    job = reporter(worker)
    job.started()
    for current in range(1, 51):
        job.progress(current, 100, f"chunk {current}")
    job.heartbeat()
    for current in range(51, 101):
        job.progress(current, 100)
    job.completed(document_count=100)
    wait_until(lambda: tracker.attempts >= 3)

    tracker.down = False
    job.close()

    assert tracker.applied_types(1) == ["started", "heartbeat", "progress", "completed"]
    assert tracker.jobs[1].current == 100
    assert tracker.jobs[1].message == "chunk 50"
    assert tracker.jobs[1].document_count == 100


def test_progress_makes_few_requests(
    worker: WorkerClient, tracker: FakeTracker
) -> None:
    with reporter(worker, flush_interval=0.05) as job:
        for current in range(1, 10_001):
            job.progress(current, 10_000)
    assert len(tracker.batches) < 50
    assert tracker.jobs[1].current == 10_000
    assert tracker.jobs[1].status == "completed"


def test_progress_never_waits_for_tracker(
    worker: WorkerClient, tracker: FakeTracker
) -> None:
    tracker.delays[1] = 0.3
    job = reporter(worker)
    started = time.monotonic()
    for current in range(1, 1001):
        job.progress(current, 1000)
    elapsed = time.monotonic() - started
    job.close()
    assert elapsed < 0.25
    assert tracker.jobs[1].current == 1000


def test_cancel_request_is_kept_and_raised(
    worker: WorkerClient, tracker: FakeTracker
) -> None:
    tracker.jobs[1].cancel_requested = True
    job = reporter(worker)
    assert not job.cancel_requested
    job.heartbeat()
    wait_until(lambda: job.cancel_requested)
    tracker.jobs[1].cancel_requested = False
    job.progress(1, 2)
    wait_until(lambda: len(tracker.batches) >= 2)
    assert job.cancel_requested
    with pytest.raises(JobCancelled, match="Ingestion job 1 was cancelled"):
        job.raise_if_cancelled()
    job.close()


def test_job_cancelled_is_suppressed(
    worker: WorkerClient, tracker: FakeTracker
) -> None:
    tracker.jobs[1].cancel_requested = True
    with reporter(worker) as job:
        wait_until(lambda: job.cancel_requested)
        job.raise_if_cancelled()
        pytest.fail("raise_if_cancelled returned although a cancel was requested")
    assert job.final_status == "cancelled"
    assert tracker.applied_types(1) == ["started", "cancelled"]


def test_job_cancelled_of_another_job_propagates(worker: WorkerClient) -> None:
    with pytest.raises(JobCancelled), reporter(worker) as job:
        raise JobCancelled(99)
    assert job.final_status == "failed"


def test_close_delivers_final_status_within_timeout(
    worker: WorkerClient, tracker: FakeTracker
) -> None:
    tracker.down = True
    job = reporter(worker, close_timeout=2.0)
    job.completed(document_count=1)
    threading.Timer(0.2, lambda: setattr(tracker, "down", False)).start()
    started = time.monotonic()
    job.close()
    assert time.monotonic() - started < 2.0
    assert tracker.jobs[1].status == "completed"


def test_close_logs_loss_when_tracker_down(
    worker: WorkerClient, tracker: FakeTracker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    tracker.down = True
    job = reporter(worker, close_timeout=0.3)
    job.started()
    job.progress(1, 3)
    job.completed()
    started = time.monotonic()
    job.close()
    elapsed = time.monotonic() - started
    lost = logged(caplog, "events_lost")
    assert 0.25 < elapsed < 0.6
    assert len(lost) == 1
    assert lost[0].levelno == logging.ERROR
    assert "ingestion job 1" in lost[0].getMessage()
    assert "1 started, 1 progress, 1 completed" in lost[0].getMessage()
    assert "final status" in lost[0].getMessage()


def test_close_bounded_by_hanging_request(
    worker: WorkerClient, tracker: FakeTracker, caplog: pytest.LogCaptureFixture
) -> None:
    tracker.delays[1] = 1.5
    job = reporter(worker, close_timeout=0.2)
    job.completed()
    started = time.monotonic()
    job.close()
    assert time.monotonic() - started < 0.5
    assert "events_lost" in actions(caplog, logging.ERROR)


def test_calls_after_close_are_ignored(
    worker: WorkerClient, tracker: FakeTracker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    job = reporter(worker)
    job.started()
    job.close()
    job.progress(1, 2)
    job.completed()
    job.close()
    assert tracker.applied_types(1) == ["started"]
    assert actions(caplog, logging.DEBUG).count("event_ignored") == 2


def test_events_after_final_status_are_ignored(
    worker: WorkerClient, tracker: FakeTracker
) -> None:
    with reporter(worker) as job:
        job.failed("broken")
        job.progress(1, 1)
        job.completed()
    assert tracker.applied_types(1) == ["started", "failed"]


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("transport exploded"),
        KeyError("missing"),
        ValueError("bad value"),
        httpx.ReadTimeout("read timed out"),
    ],
)
def test_transport_errors_are_logged(
    tracker: FakeTracker, error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    tracker.raises = error
    client = WorkerClient(base_url="http://tracker.test", transport=tracker.transport())
    with reporter(client, close_timeout=0.1) as job:
        job.progress(1, 2, "x")
        job.heartbeat()
        wait_until(lambda: tracker.attempts >= 2)
    client.close()
    assert "events_retry_scheduled" in actions(caplog, logging.WARNING)
    assert "events_lost" in actions(caplog, logging.ERROR)


def test_invalid_arguments_are_logged_not_raised(
    worker: WorkerClient, tracker: FakeTracker, caplog: pytest.LogCaptureFixture
) -> None:
    job = reporter(worker)
    job.progress(-1, 10)
    job.progress("three", 10)  # type: ignore[arg-type]
    job.progress(2.0, 10.0, 42)  # type: ignore[arg-type]
    job.completed(
        document_count="many",  # type: ignore[arg-type]
        processing_stats={"path": object(), "tags": {"a"}},
    )
    job.close()
    received = tracker.received(1)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [event["type"] for event in received] == ["progress", "completed"]
    assert received[0]["current"] == 2
    assert received[0]["message"] == "42"
    assert "document_count" not in received[1]
    assert set(received[1]["processing_stats"]) == {"path", "tags"}
    assert len(warnings) == 3


class BrokenMapping(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("iteration is broken")

    def __len__(self) -> int:
        return 1


def test_large_values_are_cut_before_sending(
    worker: WorkerClient, tracker: FakeTracker
) -> None:
    job = reporter(worker)
    job.progress(1, 2, "m" * 10_000)
    job.progress(1, 2**70)
    job.failed("e" * 100_000, {"traceback": "t" * 200_000, "dump": "d" * 100_000})
    job.close()
    progress, failed = tracker.received(1)
    details = failed["error_details"]
    assert progress["total"] == 2
    assert len(progress["message"]) == 255
    assert progress["message"].endswith("… [truncated]")
    assert len(failed["error_message"]) == 4096
    assert set(details) == {"traceback", "truncated"}
    assert len(details["traceback"]) <= 32_768


def test_broken_details_are_logged_not_raised(
    worker: WorkerClient, tracker: FakeTracker, caplog: pytest.LogCaptureFixture
) -> None:
    job = reporter(worker)
    job.failed("Parser crashed", BrokenMapping())
    job.failed("Parser crashed", {"pages": 3})
    job.close()
    assert tracker.jobs[1].error_details == {"pages": 3}
    assert "reporter_call_failed" in actions(caplog, logging.ERROR)


def test_bad_request_drops_batch(
    worker: WorkerClient, tracker: FakeTracker, caplog: pytest.LogCaptureFixture
) -> None:
    tracker.forced_status = 400
    job = reporter(worker)
    job.started()
    wait_until(lambda: tracker.attempts >= 1)
    tracker.forced_status = None
    job.completed()
    job.close()
    rejected = logged(caplog, "events_rejected")
    assert tracker.applied_types(1) == ["completed"]
    assert rejected[0].levelno == logging.ERROR
    assert "Scripted answer 400 for 1 events" in rejected[0].getMessage()
    assert tracker.attempts == 2


def test_service_unavailable_is_retried(
    worker: WorkerClient, tracker: FakeTracker
) -> None:
    tracker.forced_status = 503
    job = reporter(worker)
    job.completed()
    wait_until(lambda: tracker.attempts >= 2)
    tracker.forced_status = None
    job.close()
    assert tracker.applied_types(1) == ["completed"]


def test_oversized_batch_is_split(worker: WorkerClient, tracker: FakeTracker) -> None:
    tracker.status_for_batch = lambda events: 413 if len(events) > 1 else None
    tracker.down = True
    job = reporter(worker)
    job.started()
    job.progress(1, 1)
    job.completed()
    wait_until(lambda: tracker.attempts >= 2)
    tracker.down = False
    job.close()
    assert tracker.applied_types(1) == ["started", "progress", "completed"]


def test_unknown_job_result_is_logged_once(
    worker: WorkerClient, tracker: FakeTracker, caplog: pytest.LogCaptureFixture
) -> None:
    job = worker.reporter(404, **FAST)
    job.started()
    wait_until(lambda: tracker.attempts >= 1)
    job.progress(1, 2)
    job.close()
    assert actions(caplog, logging.ERROR) == ["event_not_found"]


def test_full_buffer_drops_heartbeats_with_warning(
    worker: WorkerClient, tracker: FakeTracker, caplog: pytest.LogCaptureFixture
) -> None:
    tracker.down = True
    job = reporter(worker, max_buffer=3)
    job.started()
    for _ in range(20):
        job.heartbeat()
    job.completed()
    tracker.down = False
    job.close()
    applied = tracker.applied_types(1)
    # How many heartbeats survive depends on what the sender thread had in flight when
    # the buffer filled, so only the bounds are fixed.
    assert applied[0] == "started"
    assert applied[-1] == "completed"
    assert 1 <= applied.count("heartbeat") < 20
    assert "heartbeats_dropped" in actions(caplog, logging.WARNING)


def test_second_reporter_continues_seq(
    worker: WorkerClient, tracker: FakeTracker
) -> None:
    first = reporter(worker)
    first.progress(1, 3)
    first.close()
    second = reporter(worker)
    second.progress(2, 3)
    second.close()
    assert tracker.applied_types(1) == ["progress", "progress"]
    assert tracker.jobs[1].current == 2


def test_slow_job_spares_other_reporters(
    worker: WorkerClient, tracker: FakeTracker
) -> None:
    tracker.add_job(2)
    tracker.delays[1] = 1.0
    slow = reporter(worker, close_timeout=0)
    slow.started()
    fast = worker.reporter(2, attempt=1, **FAST)
    started = time.monotonic()
    fast.completed()
    fast.close()
    assert time.monotonic() - started < 0.5
    assert tracker.jobs[2].status == "completed"
    slow.close()


def test_worker_close_closes_open_reporters(tracker: FakeTracker) -> None:
    client = WorkerClient(base_url="http://tracker.test", transport=tracker.transport())
    job = reporter(client)
    job.completed(document_count=3)
    client.close()
    assert tracker.jobs[1].status == "completed"
    job.progress(1, 1)
    assert tracker.applied_types(1) == ["completed"]


def test_progress_works_as_plugin_callback(
    worker: WorkerClient, tracker: FakeTracker
) -> None:
    def plugin(progress_callback: Any) -> None:
        progress_callback(1, 4, "Converting")
        progress_callback(4, 4, message="Done")

    with reporter(worker) as job:
        plugin(progress_callback=job.progress)
    assert tracker.jobs[1].current == 4
    assert tracker.jobs[1].message == "Done"


def test_progress_from_many_threads(worker: WorkerClient, tracker: FakeTracker) -> None:
    job = reporter(worker)

    def report(offset: int) -> None:
        for current in range(offset, offset + 500):
            job.progress(current, 5000)

    threads = [threading.Thread(target=report, args=(n * 500,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    job.completed()
    job.close()
    assert tracker.jobs[1].status == "completed"
    assert tracker.applied_types(1)[-1] == "completed"


def test_text_invalid_in_utf8_is_escaped_not_stuck(
    worker: WorkerClient, tracker: FakeTracker
) -> None:
    name = "r\udce9sum\udce9.pdf"  # os.fsdecode of a Latin-1 file name
    with reporter(worker) as job:
        job.progress(1, 2, f"reading {name}")
        job.completed(document_count=1, processing_stats={"file": name})
    assert tracker.applied_types(1) == ["started", "progress", "completed"]
    assert tracker.jobs[1].status == "completed"


def test_failed_with_invalid_utf8_details_is_delivered(
    worker: WorkerClient, tracker: FakeTracker
) -> None:
    job = reporter(worker)
    job.failed("cannot open r\udce9sum\udce9.pdf", {"path": "r\udce9sum\udce9.pdf"})
    job.close()
    assert tracker.jobs[1].status == "failed"


def heartbeats(tracker: FakeTracker) -> int:
    return [event["type"] for event in tracker.received(1)].count("heartbeat")


def test_silent_reporter_sends_heartbeats(
    worker: WorkerClient, tracker: FakeTracker
) -> None:
    with reporter(worker, heartbeat_interval=0.05) as job:
        wait_until(lambda: heartbeats(tracker) >= 3)
    sent = heartbeats(tracker)
    time.sleep(0.15)
    assert tracker.applied_types(1)[0] == "started"
    assert tracker.applied_types(1)[-1] == "completed"
    assert job.final_status == "completed"
    assert heartbeats(tracker) == sent


def test_heartbeats_disabled_with_none(
    worker: WorkerClient, tracker: FakeTracker
) -> None:
    with reporter(worker, heartbeat_interval=None):
        time.sleep(0.2)
    assert tracker.applied_types(1) == ["started", "completed"]


def test_progress_postpones_heartbeats(
    worker: WorkerClient, tracker: FakeTracker
) -> None:
    with reporter(worker, heartbeat_interval=0.15) as job:
        for current in range(1, 16):
            job.progress(current, 15)
            time.sleep(0.02)
    assert heartbeats(tracker) == 0
    assert tracker.jobs[1].current == 15


def test_heartbeats_stop_for_terminal_job(
    worker: WorkerClient, tracker: FakeTracker
) -> None:
    tracker.jobs[1].status = "cancelled"
    job = reporter(worker, heartbeat_interval=0.02)
    job.started()
    wait_until(lambda: len(tracker.received(1)) >= 1)
    time.sleep(0.15)
    job.close()
    assert [event["type"] for event in tracker.received(1)] == ["started"]


def test_heartbeats_resume_after_outage(
    worker: WorkerClient, tracker: FakeTracker
) -> None:
    job = reporter(worker, heartbeat_interval=0.05)
    job.started()
    wait_until(lambda: heartbeats(tracker) >= 1)
    tracker.down = True
    time.sleep(0.15)
    tracker.down = False
    before = heartbeats(tracker)
    wait_until(lambda: heartbeats(tracker) > before)
    job.close()
    assert tracker.jobs[1].status == "processing"


@pytest.mark.parametrize("interval", [0, -1.0])
def test_invalid_heartbeat_interval_raises(
    worker: WorkerClient, interval: float
) -> None:
    with pytest.raises(ValueError, match="heartbeat_interval"):
        worker.reporter(1, heartbeat_interval=interval)
