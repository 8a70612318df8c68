"""An in-memory tracker behind httpx.MockTransport, for the reporter's unit tests."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec

TERMINAL = {"completed", "failed", "cancelled", "deleted"}


@dataclass
class FakeJob:
    """The part of a job that events change."""

    id: int
    attempt: int = 1
    status: str = "pending"
    last_seq: int | None = None
    current: int = 0
    total: int = 0
    message: str | None = None
    document_count: int = 0
    error_message: str | None = None
    error_details: dict[str, Any] | None = None
    cancel_requested: bool = False


@dataclass
class FakeTracker:
    """Applies event batches like the real tracker and can be switched down or faulty.

    ``down`` makes every request fail to connect. ``forced_status`` is the status
    code of every event batch response, and ``status_for_batch`` picks one per
    batch. ``raises`` is an exception for the transport to raise. ``delays`` maps a
    job id to the seconds to wait before responding to a batch with its events.
    """

    jobs: dict[int, FakeJob] = field(default_factory=dict)
    batches: list[list[dict[str, Any]]] = field(default_factory=list)
    applied: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    down: bool = False
    forced_status: int | None = None
    status_for_batch: Callable[[list[dict[str, Any]]], int | None] | None = None
    raises: BaseException | None = None
    delays: dict[int, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_job(self, job_id: int, *, attempt: int = 1) -> FakeJob:
        job = FakeJob(id=job_id, attempt=attempt)
        self.jobs[job_id] = job
        return job

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle_sync)

    def async_transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle_async)

    def applied_types(self, job_id: int) -> list[str]:
        with self._lock:
            return [e["type"] for e in self.applied if e["job_id"] == job_id]

    def received(self, job_id: int) -> list[dict[str, Any]]:
        """Every event of a job in batches that the tracker accepted with a 200."""
        with self._lock:
            return [e for batch in self.batches for e in batch if e["job_id"] == job_id]

    def _handle_sync(self, request: httpx.Request) -> httpx.Response:
        time.sleep(self._delay(request))
        return self._handle(request)

    async def _handle_async(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(self._delay(request))
        return self._handle(request)

    def _delay(self, request: httpx.Request) -> float:
        if request.url.path != "/ingestion-events" or not self.delays:
            return 0.0
        events = msgspec.json.decode(request.content)["events"]
        return max(self.delays.get(event["job_id"], 0.0) for event in events)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.attempts += 1
            if self.raises is not None:
                raise self.raises
            if self.down:
                raise httpx.ConnectError("Connection refused", request=request)
            if request.url.path == "/ingestion-events":
                return self._batch(msgspec.json.decode(request.content)["events"])
        return httpx.Response(404, json={"status_code": 404, "detail": "no route"})

    def _batch(self, events: list[dict[str, Any]]) -> httpx.Response:
        status = self.forced_status
        if status is None and self.status_for_batch is not None:
            status = self.status_for_batch(events)
        if status is not None:
            detail = f"Scripted answer {status} for {len(events)} events"
            headers = {"Retry-After": "0"} if status == 503 else None
            return httpx.Response(
                status, json={"status_code": status, "detail": detail}, headers=headers
            )
        self.batches.append(events)
        return httpx.Response(200, json={"results": [self._apply(e) for e in events]})

    def _apply(self, event: dict[str, Any]) -> dict[str, Any]:
        job = self.jobs.get(event["job_id"])
        if job is None:
            return _result(event, False, "not_found", False, "Ingestion job not found")
        reason = _ignored_reason(job, event)
        if reason == "attempt_ahead":
            return _result(event, False, reason, False, "attempt is ahead")
        if reason is None:
            _change(job, event)
            self.applied.append(event)
        return _result(event, reason is None, reason, job.cancel_requested)


def _ignored_reason(job: FakeJob, event: dict[str, Any]) -> str | None:
    attempt = event.get("attempt")
    if attempt is not None and attempt < job.attempt:
        return "stale_attempt"
    if attempt is not None and attempt > job.attempt:
        return "attempt_ahead"
    if job.status in TERMINAL:
        return "job_terminal"
    seq = event.get("seq")
    if seq is not None and job.last_seq is not None and seq <= job.last_seq:
        return "duplicate"
    return None


def _change(job: FakeJob, event: dict[str, Any]) -> None:
    job.last_seq = event.get("seq", job.last_seq)
    kind = event["type"]
    if kind in {"started", "progress"}:
        job.status = "processing"
        job.current = event.get("current", job.current)
        job.total = event.get("total", job.total)
        job.message = event.get("message", job.message)
    elif kind == "completed":
        job.status = "completed"
        job.document_count = event.get("document_count", job.document_count)
    elif kind == "failed":
        job.status = "failed"
        job.error_message = event.get("error_message")
        job.error_details = event.get("error_details")
    elif kind == "cancelled":
        job.status = "cancelled"


def _result(
    event: dict[str, Any],
    applied: bool,
    reason: str | None,
    cancel_requested: bool,
    detail: str | None = None,
) -> dict[str, Any]:
    result = {
        "job_id": event["job_id"],
        "applied": applied,
        "reason": reason,
        "cancel_requested": cancel_requested,
    }
    if detail is not None:
        result["detail"] = detail
    return result


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` every 5 ms until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.005)


async def async_wait_until(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Like wait_until, sleeping on the event loop."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.005)
