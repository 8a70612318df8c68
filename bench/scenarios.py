"""One operation of each scenario, as a worker performs it in a loop."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import msgspec

from bench.workers import COLLECTION_ID, BenchError, Worker, check_status

Operation = Callable[[Worker], Awaitable[None]]

PROGRESS_TOTAL = 1_000_000
UNKNOWN_PATH = "/bench/no-such-route"
# The UPDATE the tracker runs for a progress event on a processing job, with the same
# columns, conditions and RETURNING, sent as one statement outside a transaction.
RAW_PROGRESS_UPDATE = """
UPDATE ingestion_jobs
SET status = 'processing',
    processing_started_at = coalesce(processing_started_at, now()),
    progress_current = $2,
    progress_total = $3,
    last_seq = $2,
    last_event_at = now(),
    updated_at = now()
WHERE id = $1
  AND status IN ('pending', 'processing')
  AND (last_seq IS NULL OR last_seq < $2)
RETURNING *
"""


class Applied(msgspec.Struct):
    """The fields of an event response that the benchmark reads."""

    applied: bool
    reason: str | None = None


class BatchResults(msgspec.Struct):
    """The field of a batch response that the benchmark reads."""

    results: list[Applied]


def _progress(worker: Worker, job_id: int) -> dict[str, Any]:
    seq = worker.next_seq(job_id)
    return {"type": "progress", "current": seq, "total": PROGRESS_TOTAL, "seq": seq}


def _require_applied(results: list[Applied], what: str) -> None:
    for result in results:
        if not result.applied:
            raise BenchError(f"{what} was not applied: reason {result.reason!r}")


def single_event(clients: Sequence[httpx.AsyncClient]) -> Operation:
    """Send one progress event of the worker's next job."""

    async def operation(worker: Worker) -> None:
        client = clients[worker.index]
        job_id = worker.next_job()
        body = _progress(worker, job_id)
        response = await client.post(f"/ingestion-jobs/{job_id}/events", json=body)
        check_status(response, 200)
        result = msgspec.json.decode(response.content, type=Applied)
        _require_applied([result], f"progress event of job {job_id}")

    return operation


def event_batch(clients: Sequence[httpx.AsyncClient], batch_size: int) -> Operation:
    """Send one progress event for each of the worker's next ``batch_size`` jobs."""

    async def operation(worker: Worker) -> None:
        events = []
        for _ in range(batch_size):
            job_id = worker.next_job()
            events.append({"job_id": job_id, **_progress(worker, job_id)})
        body = {"events": events}
        response = await clients[worker.index].post("/ingestion-events", json=body)
        check_status(response, 200)
        batch = msgspec.json.decode(response.content, type=BatchResults)
        _require_applied(batch.results, f"a batch event of worker {worker.index}")

    return operation


def get_job(clients: Sequence[httpx.AsyncClient]) -> Operation:
    """Read the worker's next job as the frontend does."""

    async def operation(worker: Worker) -> None:
        job_id = worker.next_job()
        path = f"/collections/{COLLECTION_ID}/ingestion-jobs/{job_id}"
        check_status(await clients[worker.index].get(path), 200)

    return operation


def unknown_path(clients: Sequence[httpx.AsyncClient]) -> Operation:
    """Request a path with no route, which the tracker rejects without a query."""

    async def operation(worker: Worker) -> None:
        check_status(await clients[worker.index].get(UNKNOWN_PATH), 404)

    return operation


@asynccontextmanager
async def raw_pool(database_url: str, size: int) -> AsyncIterator[asyncpg.Pool]:
    """Open an asyncpg pool of ``size`` connections and close it on the way out."""
    pool = await asyncpg.create_pool(database_url, min_size=size, max_size=size)
    try:
        yield pool
    finally:
        await pool.close()


def raw_update(pool: asyncpg.Pool) -> Operation:
    """Run the tracker's progress UPDATE of the worker's next job in autocommit."""

    async def operation(worker: Worker) -> None:
        job_id = worker.next_job()
        seq = worker.next_seq(job_id)
        row = await pool.fetchrow(RAW_PROGRESS_UPDATE, job_id, seq, PROGRESS_TOTAL)
        if row is None:
            raise BenchError(f"the raw UPDATE of job {job_id} matched no row")

    return operation
