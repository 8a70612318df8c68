"""Concurrent requests on one job, and two tracker replicas on one database.

The tests that gather requests serve the app with uvicorn on loopback (``serve_app``),
because Litestar's AsyncTestClient runs gathered requests one after another.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.backend import FakeBackend
from tests.conftest import ClientFactory, ServeApp, register, send_event
from tests.test_forwarding import (
    register_failed,
    retry,
    wait_for_outbox_closed,
)

RACE_ROUNDS = 20
CONCURRENT_RETRIES = 8
PROGRESS_EVENTS = 40
REPLICA_JOBS = 10


# Cancel racing a completion


async def race_cancel_with_completion(
    client: httpx.AsyncClient, job_id: int, *, cancel_first: bool
) -> tuple[httpx.Response, httpx.Response]:
    """Send a cancel and a completed event at once and return both responses."""
    cancel = client.post(f"/collections/1/ingestion-jobs/{job_id}/cancel")
    event = client.post(
        f"/ingestion-jobs/{job_id}/events",
        json={"type": "completed", "document_count": 4},
    )
    if cancel_first:
        return await asyncio.gather(cancel, event)
    event_response, cancel_response = await asyncio.gather(event, cancel)
    return cancel_response, event_response


@pytest.mark.parametrize("start_status", ["pending", "processing"])
async def test_cancel_racing_completion_has_one_winner(
    serve_app: ServeApp, start_status: str
) -> None:
    client = await serve_app()
    for round_number in range(RACE_ROUNDS):
        job = await register(client, external_id=f"race-{round_number}")
        if start_status == "processing":
            await send_event(client, job["id"], type="started")
        # The request sent first usually wins, so the order alternates to reach
        # both outcomes.
        cancel, event = await race_cancel_with_completion(
            client, job["id"], cancel_first=round_number % 2 == 0
        )
        response = await client.get(f"/collections/1/ingestion-jobs/{job['id']}")
        final = response.json()
        answer = event.json()

        assert event.status_code == 200, event.text
        assert cancel.status_code in {200, 409}, cancel.text
        # Exactly one of the two transitions took effect.
        assert (cancel.status_code == 200) != answer["applied"]
        if cancel.status_code == 200:
            assert answer["reason"] == "job_terminal"
            assert answer["cancel_requested"] is True
            assert final["status"] == "cancelled"
            assert final["document_count"] == 0
        else:
            assert answer["reason"] is None
            assert "is completed" in cancel.json()["detail"]
            assert final["status"] == "completed"
            assert final["document_count"] == 4
            assert final["cancel_requested_at"] is None


# Concurrent retries of one job


async def test_concurrent_retries_forward_once(
    serve_app: ServeApp, backend: FakeBackend, database_url: str
) -> None:
    client = await serve_app(backend_url=backend.url, backend_token="backend-secret")
    job = await register_failed(client, source="base")
    path = f"/collections/1/ingestion-jobs/{job['id']}/retry"
    responses = await asyncio.gather(
        *(client.post(path) for _ in range(CONCURRENT_RETRIES))
    )
    codes = Counter(response.status_code for response in responses)
    conflicts = [response for response in responses if response.status_code == 409]
    rows = await wait_for_outbox_closed(database_url, job["id"])
    current = (await client.get(f"/collections/1/ingestion-jobs/{job['id']}")).json()

    assert codes == {200: 1, 409: CONCURRENT_RETRIES - 1}
    assert all("only failed jobs" in r.json()["detail"] for r in conflicts)
    assert current["attempt"] == 2
    assert len(rows) == 1
    assert rows[0]["delivered_at"] is not None
    assert rows[0]["tries"] == 1
    assert len(backend.ingest_requests) == 1


# Two replicas


async def test_two_replicas_deliver_each_retry_once(
    make_client: ClientFactory, backend: FakeBackend, database_url: str
) -> None:
    replica_a = await make_client(
        backend_url=backend.url, backend_token="backend-secret"
    )
    await make_client(backend_url=backend.url, backend_token="backend-secret")
    jobs = [
        await register_failed(replica_a, source="base", external_id=f"job-{number}")
        for number in range(REPLICA_JOBS)
    ]
    for job in jobs:
        await retry(replica_a, job)
    rows = await wait_for_outbox_closed(database_url)

    forwarded = Counter(
        int(request.headers["x-ingestion-job-id"])
        for request in backend.ingest_requests
    )
    assert len(rows) == REPLICA_JOBS
    assert all(row["delivered_at"] is not None for row in rows)
    # A row claimed by both replicas would have been claimed, and counted, twice.
    assert [row["tries"] for row in rows] == [1] * REPLICA_JOBS
    assert len(backend.ingest_requests) == REPLICA_JOBS
    assert forwarded == {job["id"]: 1 for job in jobs}


# Concurrent progress events


async def test_concurrent_progress_keeps_highest_seq(serve_app: ServeApp) -> None:
    client = await serve_app()
    job = await register(client)
    await send_event(client, job["id"], type="started")
    sequence = list(range(1, PROGRESS_EVENTS + 1))
    random.Random(7).shuffle(sequence)
    responses = await asyncio.gather(
        *(
            client.post(
                f"/ingestion-jobs/{job['id']}/events",
                json={
                    "type": "progress",
                    "seq": seq,
                    "current": seq,
                    "total": PROGRESS_EVENTS,
                    "message": f"chunk {seq}",
                },
            )
            for seq in sequence
        )
    )
    answers = {
        seq: response.json() for seq, response in zip(sequence, responses, strict=True)
    }
    current = (await client.get(f"/collections/1/ingestion-jobs/{job['id']}")).json()

    assert all(response.status_code == 200 for response in responses)
    assert answers[PROGRESS_EVENTS]["applied"] is True
    assert {
        answer["reason"] for answer in answers.values() if not answer["applied"]
    } <= {"duplicate"}
    assert current["progress"]["current"] == PROGRESS_EVENTS
    assert current["progress"]["message"] == f"chunk {PROGRESS_EVENTS}"
    assert current["progress"]["percentage"] == 100.0


async def test_opposite_order_batches_never_deadlock(serve_app: ServeApp) -> None:
    client = await serve_app()
    job_ids = [
        (await register(client, external_id=f"lock-{n}"))["id"] for n in range(20)
    ]

    def batch(round_number: int) -> dict[str, Any]:
        ordered = job_ids if round_number % 2 == 0 else list(reversed(job_ids))
        events = [
            {"job_id": job_id, "type": "progress", "current": round_number, "total": 99}
            for job_id in ordered
        ]
        return {"events": events}

    responses = await asyncio.gather(
        *(client.post("/ingestion-events", json=batch(n)) for n in range(16))
    )
    statuses = [response.status_code for response in responses]
    assert statuses == [200] * 16
