"""Worker events: transitions, attempt and seq guards, terminal states, batches."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from tests.conftest import register, send_event


async def test_register_returns_pending_job(client: AsyncTestClient[Any]) -> None:
    response = await client.post(
        "/ingestion-jobs", json={"collection_id": 3, "plugin_name": "simple"}
    )
    job = response.json()
    assert response.status_code == 201
    assert job["status"] == "pending"
    assert job["attempt"] == 1
    assert job["job_id"] == job["id"]
    assert job["progress"] == {
        "current": 0,
        "total": 0,
        "percentage": 0.0,
        "message": None,
    }


async def test_progress_on_pending_job_starts_it(client: AsyncTestClient[Any]) -> None:
    job = await register(client)
    answer = await send_event(
        client, job["id"], type="progress", current=5, total=10, message="half"
    )
    assert answer["applied"] is True
    assert answer["reason"] is None
    assert answer["job"]["status"] == "processing"
    assert answer["job"]["progress"]["percentage"] == 50.0
    assert answer["job"]["processing_started_at"] is not None


async def test_percentage_caps_and_rounds(client: AsyncTestClient[Any]) -> None:
    job = await register(client)
    over = await send_event(client, job["id"], type="progress", current=15, total=10)
    third = await send_event(client, job["id"], type="progress", current=1, total=3)
    empty = await send_event(client, job["id"], type="progress", current=0, total=0)
    assert over["job"]["progress"]["percentage"] == 100.0
    assert third["job"]["progress"]["percentage"] == 33.33
    assert empty["job"]["progress"]["percentage"] == 0.0


async def test_completed_sets_counts_and_duration(client: AsyncTestClient[Any]) -> None:
    job = await register(client)
    await send_event(
        client, job["id"], type="started", occurred_at="2026-01-01T10:00:00"
    )
    answer = await send_event(
        client,
        job["id"],
        type="completed",
        document_count=12,
        processing_stats={"seconds": 4.5},
        occurred_at="2026-01-01T10:00:30Z",
    )
    done = answer["job"]
    assert done["status"] == "completed"
    assert done["document_count"] == 12
    assert done["processing_stats"] == {"seconds": 4.5}
    assert done["processing_started_at"] == "2026-01-01T10:00:00Z"
    assert done["processing_duration_seconds"] == 30.0
    assert done["progress"]["percentage"] == 100.0


async def test_completed_on_pending_job_starts_and_finishes(
    client: AsyncTestClient[Any],
) -> None:
    job = await register(client)
    answer = await send_event(client, job["id"], type="completed", document_count=1)
    assert answer["job"]["status"] == "completed"
    assert answer["job"]["processing_started_at"] is not None


async def test_failed_records_error_details(client: AsyncTestClient[Any]) -> None:
    job = await register(client)
    answer = await send_event(
        client,
        job["id"],
        type="failed",
        error_message="cannot parse PDF",
        error_details={
            "exception_type": "PdfError",
            "traceback": "Traceback...",
            "stage": "convert",
        },
    )
    failed = answer["job"]
    assert failed["status"] == "failed"
    assert failed["error_message"] == "cannot parse PDF"
    assert failed["error_details"]["stage"] == "convert"


async def test_event_after_completion_is_job_terminal(
    client: AsyncTestClient[Any],
) -> None:
    job = await register(client)
    await send_event(client, job["id"], type="completed", document_count=3)
    answer = await send_event(client, job["id"], type="progress", current=1, total=2)
    assert answer["applied"] is False
    assert answer["reason"] == "job_terminal"
    assert answer["job"]["status"] == "completed"
    assert answer["job"]["document_count"] == 3


async def test_failed_after_completion_changes_nothing(
    client: AsyncTestClient[Any],
) -> None:
    job = await register(client)
    await send_event(client, job["id"], type="completed")
    answer = await send_event(client, job["id"], type="failed", error_message="late")
    assert answer["reason"] == "job_terminal"
    assert answer["job"]["error_message"] is None


async def test_deleted_applies_to_terminal_job(client: AsyncTestClient[Any]) -> None:
    job = await register(client)
    await send_event(client, job["id"], type="completed")
    first = await send_event(client, job["id"], type="deleted")
    again = await send_event(client, job["id"], type="deleted")
    assert first["applied"] is True
    assert first["job"]["status"] == "deleted"
    assert again["reason"] == "job_terminal"


async def test_repeated_seq_is_duplicate(client: AsyncTestClient[Any]) -> None:
    job = await register(client)
    await send_event(client, job["id"], type="progress", seq=2, current=2, total=10)
    repeated = await send_event(
        client, job["id"], type="progress", seq=2, current=9, total=10
    )
    older = await send_event(
        client, job["id"], type="progress", seq=1, current=1, total=10
    )
    assert repeated["applied"] is False
    assert repeated["reason"] == "duplicate"
    assert older["reason"] == "duplicate"
    assert older["job"]["progress"]["current"] == 2


async def test_higher_seq_applies(client: AsyncTestClient[Any]) -> None:
    job = await register(client)
    await send_event(client, job["id"], type="progress", seq=1, current=1, total=10)
    answer = await send_event(
        client, job["id"], type="progress", seq=5, current=4, total=10
    )
    assert answer["applied"] is True
    assert answer["job"]["progress"]["current"] == 4


async def test_event_of_future_attempt_is_conflict(
    client: AsyncTestClient[Any],
) -> None:
    job = await register(client)
    response = await client.post(
        f"/ingestion-jobs/{job['id']}/events", json={"type": "started", "attempt": 2}
    )
    assert response.status_code == 409
    assert "attempt 2" in response.json()["detail"]


async def test_unknown_job_event_is_not_found(client: AsyncTestClient[Any]) -> None:
    response = await client.post(
        "/ingestion-jobs/999999/events", json={"type": "started"}
    )
    assert response.status_code == 404
    assert "999999" in response.json()["detail"]


async def test_heartbeat_keeps_status_and_updated_at(
    client: AsyncTestClient[Any],
) -> None:
    job = await register(client)
    started = await send_event(client, job["id"], type="started")
    beat = await send_event(client, job["id"], type="heartbeat")
    assert beat["applied"] is True
    assert beat["job"]["status"] == "processing"
    assert beat["job"]["updated_at"] == started["job"]["updated_at"]
    assert beat["job"]["last_event_at"] >= started["job"]["last_event_at"]


async def test_future_occurred_at_is_clamped_to_now(
    client: AsyncTestClient[Any],
) -> None:
    job = await register(client)
    answer = await send_event(
        client, job["id"], type="started", occurred_at="2999-01-01T00:00:00Z"
    )
    assert answer["job"]["processing_started_at"] < "2999"


async def test_batch_reports_each_event_in_order(client: AsyncTestClient[Any]) -> None:
    first = await register(client, external_id="a")
    second = await register(client, external_id="b")
    response = await client.post(
        "/ingestion-events",
        json={
            "events": [
                {
                    "job_id": first["id"],
                    "type": "progress",
                    "seq": 1,
                    "current": 1,
                    "total": 4,
                },
                {
                    "job_id": first["id"],
                    "type": "progress",
                    "seq": 1,
                    "current": 2,
                    "total": 4,
                },
                {"job_id": second["id"], "type": "completed", "document_count": 2},
                {"job_id": 987654, "type": "started"},
            ]
        },
    )
    results = response.json()["results"]
    assert response.status_code == 200
    assert [result["job_id"] for result in results] == [
        first["id"],
        first["id"],
        second["id"],
        987654,
    ]
    assert [result["applied"] for result in results] == [True, False, True, False]
    assert [result["reason"] for result in results] == [
        None,
        "duplicate",
        None,
        "not_found",
    ]


async def test_batch_flags_cancel_requested(client: AsyncTestClient[Any]) -> None:
    job = await register(client)
    await send_event(client, job["id"], type="started")
    await client.post(f"/collections/1/ingestion-jobs/{job['id']}/cancel")
    response = await client.post(
        "/ingestion-events",
        json={
            "events": [
                {"job_id": job["id"], "type": "progress", "current": 1, "total": 2}
            ]
        },
    )
    result = response.json()["results"][0]
    assert result["applied"] is False
    assert result["reason"] == "job_terminal"
    assert result["cancel_requested"] is True
