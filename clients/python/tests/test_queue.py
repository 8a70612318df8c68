"""The event queue, the delivery timing and the backoff, without any I/O."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from ingestion_tracker_client._errors import error_for_response
from ingestion_tracker_client._events import (
    TRACEBACK_MAX_CHARS,
    Event,
    SeqCounter,
    cut_traceback,
    exception_type_name,
)
from ingestion_tracker_client._options import Backoff, ReporterOptions
from ingestion_tracker_client._outbox import Outbox
from ingestion_tracker_client._queue import EventQueue, describe

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def event(kind: str, seq: int, **fields: Any) -> Event:
    return Event(job_id=1, type=kind, seq=seq, occurred_at=NOW, **fields)


def kinds(events: list[Event]) -> list[str]:
    return [item.type for item in events]


def test_queue_keeps_only_latest_progress() -> None:
    queue = EventQueue(100)
    for seq in range(1, 6):
        queue.add(event("progress", seq, current=seq, total=5))
    waiting = queue.take(10)
    assert len(waiting) == 1
    assert waiting[0].current == 5
    assert waiting[0].seq == 5


def test_queue_merges_progress_message() -> None:
    queue = EventQueue(100)
    queue.add(event("progress", 1, current=1, total=5, message="Embedding"))
    queue.add(event("progress", 2, current=2, total=5))
    (merged,) = queue.take(10)
    assert merged.message == "Embedding"
    assert merged.current == 2


def test_queue_keeps_status_order_around_progress() -> None:
    queue = EventQueue(100)
    queue.add(event("started", 1))
    queue.add(event("progress", 2, current=1, total=3))
    queue.add(event("heartbeat", 3))
    queue.add(event("progress", 4, current=2, total=3))
    queue.add(event("completed", 5))
    waiting = queue.take(10)
    assert kinds(waiting) == ["started", "heartbeat", "progress", "completed"]
    assert [item.seq for item in waiting] == [1, 3, 4, 5]


def test_queue_requeue_merges_older_progress() -> None:
    queue = EventQueue(100)
    queue.add(event("started", 1))
    queue.add(event("progress", 2, current=1, total=3, message="parse"))
    batch = queue.take(10)
    queue.add(event("progress", 3, current=2, total=3))
    queue.add(event("completed", 4))
    queue.requeue(batch)
    waiting = queue.take(10)
    assert kinds(waiting) == ["started", "progress", "completed"]
    assert waiting[1].current == 2
    assert waiting[1].message == "parse"


def test_queue_bound_drops_oldest_heartbeat() -> None:
    queue = EventQueue(3)
    queue.add(event("started", 1))
    queue.add(event("heartbeat", 2))
    queue.add(event("heartbeat", 3))
    dropped = queue.add(event("heartbeat", 4))
    waiting = queue.take(10)
    assert dropped == 1
    assert [item.seq for item in waiting] == [1, 3, 4]


def test_queue_bound_never_drops_lifecycle_events() -> None:
    queue = EventQueue(2)
    queue.add(event("started", 1))
    queue.add(event("progress", 2, current=1, total=1))
    queue.add(event("started", 3))
    queue.add(event("heartbeat", 4))
    dropped = queue.add(event("completed", 5))
    waiting = queue.take(10)
    assert dropped == 1
    assert kinds(waiting) == ["started", "progress", "started", "completed"]


def test_queue_has_final_and_describe() -> None:
    queue = EventQueue(10)
    queue.add(event("started", 1))
    assert not queue.has_final()
    queue.add(event("failed", 2, error_message="x"))
    assert queue.has_final()
    assert describe(queue) == "1 started, 1 failed"


def test_seq_counter_always_increases() -> None:
    counter = SeqCounter()
    numbers = [counter.next() for _ in range(1000)]
    assert numbers == sorted(set(numbers))
    assert numbers[0] > 1_700_000_000_000_000


def test_cut_traceback_keeps_both_ends() -> None:
    text = "Traceback (most recent call last):\n" + "x" * 100_000 + "\nValueError: bad"
    cut = cut_traceback(text)
    assert len(cut) <= TRACEBACK_MAX_CHARS
    assert cut.startswith("Traceback")
    assert cut.endswith("ValueError: bad")
    assert "characters cut" in cut


class ParseError(Exception):
    """An exception class outside the builtins."""


def test_exception_type_name_qualifies_non_builtins() -> None:
    assert exception_type_name(ValueError()) == "ValueError"
    assert exception_type_name(ParseError()) == f"{__name__}.ParseError"


def test_backoff_doubles_up_to_maximum() -> None:
    backoff = Backoff(0.2, 1.0, uniform=lambda low, high: 1.0)
    delays = [backoff.next_delay() for _ in range(5)]
    assert delays == [0.2, 0.4, 0.8, 1.0, 1.0]


def test_backoff_jitter_stays_within_a_fifth() -> None:
    backoff = Backoff(1.0, 100.0)
    delays = [Backoff(1.0, 100.0).next_delay() for _ in range(200)]
    assert min(delays) >= 0.8
    assert max(delays) <= 1.2
    assert backoff.failures == 0


def test_backoff_honours_retry_after() -> None:
    backoff = Backoff(0.2, 3.0, uniform=lambda low, high: 1.0)
    assert backoff.next_delay(at_least=2.0) == 2.0
    assert backoff.next_delay(at_least=60.0) == 3.0


def test_backoff_resets_after_success() -> None:
    backoff = Backoff(0.2, 10.0, uniform=lambda low, high: 1.0)
    backoff.next_delay()
    backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 0.2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"flush_interval": -1}, "flush_interval"),
        ({"close_timeout": -0.5}, "close_timeout"),
        ({"max_buffer": 0}, "max_buffer"),
        ({"backoff_initial": 0}, "backoff_initial"),
        ({"backoff_initial": 5, "backoff_max": 1}, "backoff_max"),
    ],
)
def test_reporter_options_reject_invalid_values(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ReporterOptions(**options)


def test_outbox_waits_flush_interval_between_batches() -> None:
    outbox = Outbox(1, ReporterOptions(flush_interval=0.5))
    outbox.add(event("progress", 1, current=1, total=2))
    assert outbox.wait_time(10.0) == 0
    outbox.take()
    outbox.delivered([], 10.0)
    outbox.add(event("progress", 2, current=2, total=2))
    assert outbox.wait_time(10.1) == pytest.approx(0.4)


def test_outbox_sends_final_status_at_once() -> None:
    outbox = Outbox(1, ReporterOptions(flush_interval=0.5))
    outbox.add(event("started", 1))
    outbox.take()
    outbox.delivered([], 10.0)
    outbox.add(event("completed", 2))
    assert outbox.wait_time(10.01) == 0


def test_outbox_delays_final_status_retry() -> None:
    outbox = Outbox(1, ReporterOptions(backoff_initial=1.0, backoff_max=1.0))
    outbox.add(event("completed", 1))
    outbox.take()
    request = httpx.Request("POST", "http://tracker.test/ingestion-events")
    outbox.failed(error_for_response(httpx.Response(503, request=request)), 10.0)
    assert len(outbox.queue) == 1
    assert outbox.wait_time(10.0) == pytest.approx(1.0, rel=0.25)


def test_outbox_stops_at_close_deadline() -> None:
    outbox = Outbox(1, ReporterOptions(close_timeout=2.0))
    outbox.add(event("completed", 1))
    deadline = outbox.begin_close(10.0)
    assert deadline == 12.0
    assert not outbox.finished(11.9)
    assert outbox.finished(12.0)
    assert kinds(outbox.unsent()) == ["completed"]


def test_outbox_request_timeout_shrinks_while_closing() -> None:
    outbox = Outbox(1, ReporterOptions(close_timeout=2.0))
    assert outbox.request_timeout(10.0, 10.0) == 10.0
    outbox.begin_close(10.0)
    assert outbox.request_timeout(11.5, 10.0) == pytest.approx(0.5)
