"""Retry requests: the failed-to-pending transition, conflicts, and attempt guards."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from tests import conftest, test_forwarding
from tests.conftest import send_event
from tests.test_forwarding import outbox_rows, retry

# Jobs here default to source base, which the fake backend accepts without a stored
# file, so a retried job stays pending until a test reports an event.


async def register(client: AsyncTestClient[Any], **fields: Any) -> dict[str, Any]:
    return await conftest.register(client, **{"source": "base", **fields})


async def register_failed(
    client: AsyncTestClient[Any], **fields: Any
) -> dict[str, Any]:
    return await test_forwarding.register_failed(client, **{"source": "base", **fields})


async def fail_with_progress(client: AsyncTestClient[Any]) -> dict[str, Any]:
    """Register a job that reported progress and then failed with error details."""
    job = await register(client)
    await send_event(client, job["id"], type="progress", current=3, total=10)
    await send_event(
        client,
        job["id"],
        type="failed",
        error_message="cannot parse PDF",
        error_details={"exception_type": "PdfError", "stage": "convert"},
    )
    return job


async def fetch(client: AsyncTestClient[Any], job: dict[str, Any]) -> dict[str, Any]:
    response = await client.get(
        f"/collections/{job['collection_id']}/ingestion-jobs/{job['id']}"
    )
    assert response.status_code == 200, response.text
    current: dict[str, Any] = response.json()
    return current


# The failed -> pending transition


async def test_retry_failed_job_queues_new_attempt(
    tracked_client: AsyncTestClient[Any],
) -> None:
    job = await fail_with_progress(tracked_client)
    response = await tracked_client.post(
        f"/collections/1/ingestion-jobs/{job['id']}/retry"
    )

    retried = response.json()
    assert response.status_code == 200
    assert retried["id"] == job["id"]
    assert retried["status"] == "pending"
    assert retried["attempt"] == 2
    assert retried["error_message"] is None
    assert retried["error_details"] is None
    assert retried["progress"] == {
        "current": 0,
        "total": 0,
        "percentage": 0.0,
        "message": "Queued for retry",
    }


async def test_retry_clears_previous_attempt_fields(
    tracked_client: AsyncTestClient[Any],
) -> None:
    job = await register(tracked_client)
    await send_event(tracked_client, job["id"], type="started")
    await send_event(tracked_client, job["id"], type="failed", error_message="boom")
    retried = await retry(tracked_client, job)

    assert retried["processing_started_at"] is None
    assert retried["processing_completed_at"] is None
    assert retried["processing_duration_seconds"] is None
    assert retried["document_count"] == 0
    assert retried["cancel_requested_at"] is None


async def test_retry_persists_new_attempt(tracked_client: AsyncTestClient[Any]) -> None:
    job = await fail_with_progress(tracked_client)
    await retry(tracked_client, job)

    stored = await fetch(tracked_client, job)
    assert stored["status"] == "pending"
    assert stored["attempt"] == 2
    assert stored["error_message"] is None
    assert stored["progress"]["current"] == 0
    assert stored["progress"]["message"] == "Queued for retry"


async def test_retry_writes_outbox_row(
    tracked_client: AsyncTestClient[Any], database_url: str
) -> None:
    job = await register_failed(tracked_client)
    await retry(tracked_client, job)

    rows = await outbox_rows(database_url, job["id"])
    assert len(rows) == 1
    assert rows[0]["attempt"] == 2


# override_params


async def test_retry_merges_override_params_shallowly(
    tracked_client: AsyncTestClient[Any],
) -> None:
    job = await register_failed(
        tracked_client,
        plugin_params={
            "chunk_size": 1000,
            "overlap": 100,
            "splitter": {"kind": "sentence", "language": "en"},
        },
    )
    retried = await retry(
        tracked_client,
        job,
        override_params={"chunk_size": 500, "splitter": {"kind": "page"}, "ocr": True},
    )

    # Top-level keys are replaced whole, so the nested "language" is gone.
    assert retried["plugin_params"] == {
        "chunk_size": 500,
        "overlap": 100,
        "splitter": {"kind": "page"},
        "ocr": True,
    }


async def test_retry_override_is_stored(tracked_client: AsyncTestClient[Any]) -> None:
    job = await register_failed(tracked_client, plugin_params={"chunk_size": 1000})
    await retry(tracked_client, job, override_params={"chunk_size": 250})

    stored = await fetch(tracked_client, job)
    assert stored["plugin_params"] == {"chunk_size": 250}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(None, id="no-body"),
        pytest.param({}, id="empty-body"),
        pytest.param({"override_params": None}, id="null-override"),
        pytest.param({"override_params": {}}, id="empty-override"),
    ],
)
async def test_retry_without_overrides_keeps_params(
    tracked_client: AsyncTestClient[Any], body: dict[str, Any] | None
) -> None:
    job = await register_failed(
        tracked_client, plugin_params={"chunk_size": 1000, "lang": "en"}
    )
    response = await tracked_client.post(
        f"/collections/1/ingestion-jobs/{job['id']}/retry", json=body
    )

    assert response.status_code == 200, response.text
    assert response.json()["plugin_params"] == {"chunk_size": 1000, "lang": "en"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"override_params": [1, 2]}, "override_params", id="list"),
        pytest.param({"override_params": "big"}, "override_params", id="string"),
        pytest.param({"params": {"chunk_size": 1}}, "params", id="unknown-field"),
    ],
)
async def test_retry_rejects_invalid_body(
    tracked_client: AsyncTestClient[Any], body: dict[str, Any], field: str
) -> None:
    job = await register_failed(tracked_client)
    response = await tracked_client.post(
        f"/collections/1/ingestion-jobs/{job['id']}/retry", json=body
    )

    stored = await fetch(tracked_client, job)
    assert response.status_code == 400
    assert field in response.json()["detail"]
    assert stored["status"] == "failed"
    assert stored["attempt"] == 1


# Conflicts and lookups


async def job_in_status(client: AsyncTestClient[Any], status: str) -> dict[str, Any]:
    """Register a job and drive it into ``status`` through the public API."""
    job = await register(client)
    if status == "processing":
        await send_event(client, job["id"], type="started")
    elif status == "completed":
        await send_event(client, job["id"], type="completed", document_count=2)
    elif status == "cancelled":
        response = await client.post(
            f"/collections/1/ingestion-jobs/{job['id']}/cancel"
        )
        assert response.status_code == 200, response.text
    elif status == "deleted":
        await send_event(client, job["id"], type="deleted")
    return await fetch(client, job)


@pytest.mark.parametrize(
    "status", ["pending", "processing", "completed", "cancelled", "deleted"]
)
async def test_retry_of_unfailed_job_conflicts(
    tracked_client: AsyncTestClient[Any], status: str
) -> None:
    job = await job_in_status(tracked_client, status)
    response = await tracked_client.post(
        f"/collections/1/ingestion-jobs/{job['id']}/retry"
    )

    stored = await fetch(tracked_client, job)
    assert job["status"] == status
    assert response.status_code == 409
    assert f"is {status}" in response.json()["detail"]
    assert "only failed jobs" in response.json()["detail"]
    assert stored["status"] == status
    assert stored["attempt"] == 1


async def test_conflicting_retry_writes_no_outbox_row(
    tracked_client: AsyncTestClient[Any], database_url: str
) -> None:
    job = await job_in_status(tracked_client, "completed")
    await tracked_client.post(f"/collections/1/ingestion-jobs/{job['id']}/retry")

    assert await outbox_rows(database_url, job["id"]) == []


async def test_retry_of_unknown_job_is_not_found(
    tracked_client: AsyncTestClient[Any],
) -> None:
    response = await tracked_client.post("/collections/1/ingestion-jobs/424242/retry")

    assert response.status_code == 404
    assert "424242" in response.json()["detail"]


async def test_retry_under_other_collection_is_not_found(
    tracked_client: AsyncTestClient[Any], database_url: str
) -> None:
    job = await register_failed(tracked_client, collection_id=1)
    response = await tracked_client.post(
        f"/collections/2/ingestion-jobs/{job['id']}/retry"
    )

    stored = await fetch(tracked_client, job)
    assert response.status_code == 404
    assert str(job["id"]) in response.json()["detail"]
    assert stored["status"] == "failed"
    assert stored["attempt"] == 1
    assert await outbox_rows(database_url, job["id"]) == []


async def test_retry_without_backend_is_unavailable(
    client: AsyncTestClient[Any], database_url: str
) -> None:
    job = await register_failed(client)
    response = await client.post(f"/collections/1/ingestion-jobs/{job['id']}/retry")

    stored = await fetch(client, job)
    assert response.status_code == 503
    assert "TRACKER_BACKEND_URL" in response.json()["detail"]
    assert stored["status"] == "failed"
    assert stored["attempt"] == 1
    assert stored["error_message"] == "parser crashed"
    assert await outbox_rows(database_url, job["id"]) == []


async def test_retry_without_backend_sends_no_retry_after(
    client: AsyncTestClient[Any],
) -> None:
    job = await register_failed(client)
    response = await client.post(f"/collections/1/ingestion-jobs/{job['id']}/retry")
    assert response.status_code == 503
    assert "retry-after" not in response.headers


async def test_retry_without_backend_checks_status_first(
    client: AsyncTestClient[Any],
) -> None:
    job = await register(client)
    await send_event(client, job["id"], type="completed")
    response = await client.post(f"/collections/1/ingestion-jobs/{job['id']}/retry")
    assert response.status_code == 409
    assert "completed" in response.json()["detail"]


async def test_retry_without_backend_unknown_job_is_404(
    client: AsyncTestClient[Any],
) -> None:
    response = await client.post("/collections/1/ingestion-jobs/424242/retry")
    assert response.status_code == 404


# Events after a retry


@pytest.mark.parametrize(
    "event",
    [
        pytest.param({"type": "started"}, id="started"),
        pytest.param({"type": "progress", "current": 9, "total": 10}, id="progress"),
        pytest.param({"type": "heartbeat"}, id="heartbeat"),
        pytest.param({"type": "completed", "document_count": 7}, id="completed"),
        pytest.param({"type": "failed", "error_message": "late"}, id="failed"),
        pytest.param({"type": "cancelled"}, id="cancelled"),
        pytest.param({"type": "deleted"}, id="deleted"),
    ],
)
async def test_old_attempt_event_is_stale(
    tracked_client: AsyncTestClient[Any], event: dict[str, Any]
) -> None:
    job = await register_failed(tracked_client)
    retried = await retry(tracked_client, job)
    answer = await send_event(tracked_client, job["id"], attempt=1, **event)

    stored = await fetch(tracked_client, job)
    assert answer["applied"] is False
    assert answer["reason"] == "stale_attempt"
    assert stored["status"] == "pending"
    assert stored["attempt"] == 2
    assert stored["progress"] == retried["progress"]
    assert stored["document_count"] == 0
    assert stored["error_message"] is None
    assert stored["updated_at"] == retried["updated_at"]


async def test_new_attempt_event_applies(tracked_client: AsyncTestClient[Any]) -> None:
    job = await register_failed(tracked_client)
    await retry(tracked_client, job)
    answer = await send_event(
        tracked_client, job["id"], type="progress", attempt=2, current=1, total=4
    )

    assert answer["applied"] is True
    assert answer["job"]["status"] == "processing"
    assert answer["job"]["attempt"] == 2
    assert answer["job"]["progress"]["current"] == 1


async def test_event_without_attempt_targets_current(
    tracked_client: AsyncTestClient[Any],
) -> None:
    job = await register_failed(tracked_client)
    await retry(tracked_client, job)
    answer = await send_event(tracked_client, job["id"], type="completed")

    assert answer["applied"] is True
    assert answer["job"]["status"] == "completed"
    assert answer["job"]["attempt"] == 2


async def test_seq_restarts_with_each_attempt(
    tracked_client: AsyncTestClient[Any],
) -> None:
    job = await register(tracked_client)
    for seq in range(1, 9):
        await send_event(
            tracked_client,
            job["id"],
            type="progress",
            attempt=1,
            seq=seq,
            current=seq,
            total=9,
        )
    await send_event(
        tracked_client, job["id"], type="failed", attempt=1, seq=9, error_message="x"
    )
    await retry(tracked_client, job)

    first = await send_event(
        tracked_client,
        job["id"],
        type="progress",
        attempt=2,
        seq=1,
        current=1,
        total=5,
    )
    repeated = await send_event(
        tracked_client,
        job["id"],
        type="progress",
        attempt=2,
        seq=1,
        current=4,
        total=5,
    )
    assert first["applied"] is True
    assert first["job"]["progress"]["current"] == 1
    assert repeated["applied"] is False
    assert repeated["reason"] == "duplicate"
    assert repeated["job"]["progress"]["current"] == 1


async def test_job_retried_twice_reaches_attempt_three(
    tracked_client: AsyncTestClient[Any],
) -> None:
    job = await register_failed(tracked_client)
    await retry(tracked_client, job)
    await send_event(
        tracked_client, job["id"], type="failed", attempt=2, error_message="again"
    )
    third = await retry(tracked_client, job)
    stale = await send_event(tracked_client, job["id"], type="started", attempt=2)

    assert third["attempt"] == 3
    assert third["status"] == "pending"
    assert stale["reason"] == "stale_attempt"
    assert stale["job"]["status"] == "pending"
