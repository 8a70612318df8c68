"""Simulated ingestion workers: each owns its jobs and raises each job's seq."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
import msgspec

COLLECTION_ID = 1
PLUGIN_NAME = "bench"


class BenchError(RuntimeError):
    """The tracker returned a status or body that the benchmark does not expect."""


class Registered(msgspec.Struct):
    """The field of a registration response that the benchmark reads."""

    id: int


@dataclass(slots=True)
class Worker:
    """One simulated worker process with the jobs it reports on."""

    index: int
    job_ids: list[int] = field(default_factory=list)
    last_seq: dict[int, int] = field(default_factory=dict)
    cursor: int = 0

    def next_job(self) -> int:
        """Return the worker's jobs in turn."""
        job_id = self.job_ids[self.cursor % len(self.job_ids)]
        self.cursor += 1
        return job_id

    def next_seq(self, job_id: int) -> int:
        """Return a seq above every one sent for ``job_id``, so the event applies."""
        seq = self.last_seq.get(job_id, 0) + 1
        self.last_seq[job_id] = seq
        return seq


def check_status(response: httpx.Response, expected: int) -> None:
    """Raise BenchError unless ``response`` has the ``expected`` status."""
    if response.status_code != expected:
        raise BenchError(
            f"{response.request.method} {response.request.url.path} returned "
            f"{response.status_code}, expected {expected}: {response.text[:500]}"
        )


async def _register_jobs(
    client: httpx.AsyncClient,
    worker: Worker,
    count: int,
    run_id: str,
    collection_id: int,
) -> None:
    for number in range(count):
        body = {
            "collection_id": collection_id,
            "plugin_name": PLUGIN_NAME,
            "external_id": f"bench-{run_id}-{worker.index}-{number}",
            "original_filename": f"document-{number}.pdf",
        }
        response = await client.post("/ingestion-jobs", json=body)
        check_status(response, 201)
        worker.job_ids.append(msgspec.json.decode(response.content, type=Registered).id)


async def register_workers(
    clients: Sequence[httpx.AsyncClient],
    jobs_per_worker: int,
    *,
    collection_id: int = COLLECTION_ID,
) -> list[Worker]:
    """Register ``jobs_per_worker`` new pending jobs for each worker, one per client."""
    run_id = uuid.uuid4().hex[:12]
    workers = [Worker(index) for index in range(len(clients))]
    async with asyncio.TaskGroup() as group:
        for worker, client in zip(workers, clients, strict=True):
            group.create_task(
                _register_jobs(client, worker, jobs_per_worker, run_id, collection_id)
            )
    return workers
