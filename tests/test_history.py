"""Job history endpoint: entries, attempt summaries, merged progress, paging, actors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from tests import conftest
from tests.conftest import ClientFactory, send_event
from tests.test_forwarding import retry

# Jobs here default to source base, which the fake backend accepts without a stored
# file, so a retried job stays pending until a test reports an event.


async def register(client: AsyncTestClient[Any], **fields: Any) -> dict[str, Any]:
    return await conftest.register(client, **{"source": "base", **fields})


async def read_history(
    client: AsyncTestClient[Any], job: dict[str, Any], **params: Any
) -> dict[str, Any]:
    """GET the job's history with ``params``; the response must be a 200."""
    response = await client.get(history_path(job), params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def history_path(job: dict[str, Any], collection_id: int | None = None) -> str:
    collection = job["collection_id"] if collection_id is None else collection_id
    return f"/collections/{collection}/ingestion-jobs/{job['id']}/history"


async def send_batch(client: AsyncTestClient[Any], *events: dict[str, Any]) -> None:
    """Post events in one batch, which the tracker applies in one transaction."""
    response = await client.post("/ingestion-events", json={"events": list(events)})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert all(result["applied"] for result in results), results


async def execute_sql(database_url: str, statement: str, *arguments: Any) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(statement, *arguments)
    finally:
        await connection.close()


async def age_history_windows(database_url: str, job_id: int) -> None:
    """Move the job's merge windows 2 s back, as if the next event came later."""
    await execute_sql(
        database_url,
        "UPDATE ingestion_job_history "
        "SET window_started_at = window_started_at - interval '2 seconds' "
        "WHERE job_id = $1",
        job_id,
    )


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def timestamp(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def kinds(body: dict[str, Any]) -> list[tuple[str, str]]:
    """Return (type, status) of each entry, in response order."""
    return [(item["type"], item["status"]) for item in body["items"]]


# A job retried twice


async def run_three_attempts(
    client: AsyncTestClient[Any], started: list[datetime]
) -> dict[str, Any]:
    """Fail attempts 1 and 2, retrying each, and complete attempt 3.

    Attempt n starts at ``started[n - 1]`` and ends a minute later.
    """
    job = await register(client)
    for attempt, start in enumerate(started, 1):
        end = timestamp(start + timedelta(minutes=1))
        await send_event(
            client, job["id"], type="started", occurred_at=timestamp(start)
        )
        if attempt == len(started):
            await send_event(
                client, job["id"], type="completed", document_count=4, occurred_at=end
            )
            break
        await send_event(
            client,
            job["id"],
            type="failed",
            error_message=f"parser crashed in attempt {attempt}",
            error_details={"exception_type": f"ParseError{attempt}"},
            occurred_at=end,
        )
        await retry(client, job)
    return job


def attempt_starts() -> list[datetime]:
    now = datetime.now(UTC).replace(microsecond=0)
    return [now - timedelta(hours=hours) for hours in (3, 2, 1)]


async def test_history_lists_retried_job_changes(
    tracked_client: AsyncTestClient[Any],
) -> None:
    job = await run_three_attempts(tracked_client, attempt_starts())

    body = await read_history(tracked_client, job)
    assert kinds(body) == [
        ("registered", "pending"),
        ("started", "processing"),
        ("failed", "failed"),
        ("retry", "pending"),
        ("started", "processing"),
        ("failed", "failed"),
        ("retry", "pending"),
        ("started", "processing"),
        ("completed", "completed"),
    ]
    assert [item["attempt"] for item in body["items"]] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    ids = [item["id"] for item in body["items"]]
    assert ids == sorted(ids)
    assert body["has_more"] is False
    assert body["job_id"] == job["id"]
    assert body["collection_id"] == job["collection_id"]


async def test_history_summarises_retried_attempts(
    tracked_client: AsyncTestClient[Any],
) -> None:
    starts = attempt_starts()
    job = await run_three_attempts(tracked_client, starts)

    body = await read_history(tracked_client, job)
    summaries = body["by_attempt"]
    assert body["attempts"] == 3
    assert [summary["attempt"] for summary in summaries] == [1, 2, 3]
    assert [summary["status"] for summary in summaries] == [
        "failed",
        "failed",
        "completed",
    ]
    assert [parse_time(summary["started_at"]) for summary in summaries] == starts
    assert [parse_time(summary["ended_at"]) for summary in summaries] == [
        start + timedelta(minutes=1) for start in starts
    ]
    assert [summary["error_message"] for summary in summaries] == [
        "parser crashed in attempt 1",
        "parser crashed in attempt 2",
        None,
    ]
    assert [summary["error_type"] for summary in summaries] == [
        "ParseError1",
        "ParseError2",
        None,
    ]
    # Attempt 1: registered, started, failed. Later ones: retry, started, end.
    assert [summary["entries"] for summary in summaries] == [3, 3, 3]


async def test_retry_entry_records_changes(
    tracked_client: AsyncTestClient[Any],
) -> None:
    job = await run_three_attempts(tracked_client, attempt_starts())

    body = await read_history(tracked_client, job)
    retry_entry = body["items"][3]
    assert retry_entry["type"] == "retry"
    assert retry_entry["changes"]["status"] == "pending"
    assert retry_entry["changes"]["attempt"] == 2
    assert retry_entry["changes"]["error_message"] is None


# Merged progress and heartbeat entries


async def test_history_merges_progress_within_second(
    client: AsyncTestClient[Any],
) -> None:
    job = await register(client)
    progress = [
        {
            "job_id": job["id"],
            "type": "progress",
            "seq": current + 1,
            "current": current,
            "total": 40,
            "message": f"page {current}",
        }
        for current in range(1, 41)
    ]
    await send_batch(
        client, {"job_id": job["id"], "type": "started", "seq": 1}, *progress
    )

    body = await read_history(client, job)
    assert kinds(body) == [
        ("registered", "pending"),
        ("started", "processing"),
        ("progress", "processing"),
    ]
    merged = body["items"][2]
    assert merged["seq"] == 41
    assert merged["changes"]["progress"] == {
        "current": 40,
        "total": 40,
        "percentage": 100.0,
        "message": "page 40",
    }
    assert body["by_attempt"][0]["entries"] == 3


async def test_history_keeps_separate_progress_windows(
    client: AsyncTestClient[Any], database_url: str
) -> None:
    job = await register(client)
    await send_event(client, job["id"], type="started")
    await send_event(client, job["id"], type="progress", current=1, total=3)
    await age_history_windows(database_url, job["id"])
    await send_event(client, job["id"], type="progress", current=2, total=3)
    await send_event(client, job["id"], type="progress", current=3, total=3)

    body = await read_history(client, job)
    progress = [item for item in body["items"] if item["type"] == "progress"]
    assert [item["changes"]["progress"]["current"] for item in progress] == [1, 3]


async def test_merged_progress_keeps_status_change(
    client: AsyncTestClient[Any],
) -> None:
    job = await register(client)
    # The first progress event starts the pending job, and the second replaces its row.
    await send_event(client, job["id"], type="progress", current=1, total=2)
    await send_event(client, job["id"], type="progress", current=2, total=2)

    body = await read_history(client, job)
    merged = body["items"][1]
    assert len(body["items"]) == 2
    assert merged["changes"]["status"] == "processing"
    assert merged["changes"]["progress"]["current"] == 2
    assert merged["changes"]["processing_started_at"] is not None


async def test_history_never_merges_status_changes(
    client: AsyncTestClient[Any],
) -> None:
    job = await register(client)
    job_id = job["id"]
    await send_batch(
        client,
        {"job_id": job_id, "type": "progress", "current": 1, "total": 9},
        {"job_id": job_id, "type": "heartbeat"},
        {"job_id": job_id, "type": "progress", "current": 2, "total": 9},
        {"job_id": job_id, "type": "failed", "error_message": "disk full"},
    )

    body = await read_history(client, job)
    assert kinds(body) == [
        ("registered", "pending"),
        ("progress", "processing"),
        ("heartbeat", "processing"),
        ("progress", "processing"),
        ("failed", "failed"),
    ]


async def test_history_keeps_last_progress_per_attempt(
    tracked_client: AsyncTestClient[Any],
) -> None:
    job = await register(tracked_client)
    await send_event(tracked_client, job["id"], type="progress", current=5, total=9)
    await send_event(tracked_client, job["id"], type="failed")
    await retry(tracked_client, job)
    await send_event(tracked_client, job["id"], type="progress", current=7, total=9)

    body = await read_history(tracked_client, job)
    progress = [item for item in body["items"] if item["type"] == "progress"]
    assert [item["attempt"] for item in progress] == [1, 2]
    assert [item["changes"]["progress"]["current"] for item in progress] == [5, 7]


# Filter and paging


async def test_attempt_filter_returns_one_attempt(
    tracked_client: AsyncTestClient[Any],
) -> None:
    job = await run_three_attempts(tracked_client, attempt_starts())

    body = await read_history(tracked_client, job, attempt=2)
    assert kinds(body) == [
        ("retry", "pending"),
        ("started", "processing"),
        ("failed", "failed"),
    ]
    assert {item["attempt"] for item in body["items"]} == {2}
    assert [summary["attempt"] for summary in body["by_attempt"]] == [1, 2, 3]
    assert body["attempts"] == 3


async def test_attempt_filter_beyond_job_empty(
    client: AsyncTestClient[Any],
) -> None:
    job = await register(client)

    body = await read_history(client, job, attempt=5)
    assert body["items"] == []
    assert body["has_more"] is False
    assert len(body["by_attempt"]) == 1


async def register_with_entries(client: AsyncTestClient[Any]) -> dict[str, Any]:
    """Register a job with seven entries, which alternate types so that none merge."""
    job = await register(client)
    job_id = job["id"]
    await send_batch(
        client,
        {"job_id": job_id, "type": "started"},
        {"job_id": job_id, "type": "progress", "current": 1, "total": 2},
        {"job_id": job_id, "type": "heartbeat"},
        {"job_id": job_id, "type": "progress", "current": 2, "total": 2},
        {"job_id": job_id, "type": "heartbeat"},
        {"job_id": job_id, "type": "completed"},
    )
    return job


async def test_pages_cover_every_entry_once(
    client: AsyncTestClient[Any],
) -> None:
    job = await register_with_entries(client)
    everything = await read_history(client, job)

    first = await read_history(client, job, limit=3)
    second = await read_history(client, job, limit=3, after=first["next_after"])
    third = await read_history(client, job, limit=3, after=second["next_after"])
    assert len(everything["items"]) == 7
    assert [len(page["items"]) for page in (first, second, third)] == [3, 3, 1]
    assert [page["has_more"] for page in (first, second, third)] == [True, True, False]
    assert first["next_after"] == first["items"][-1]["id"]
    assert [
        item["id"] for page in (first, second, third) for item in page["items"]
    ] == [item["id"] for item in everything["items"]]


async def test_page_after_last_entry_empty(
    client: AsyncTestClient[Any],
) -> None:
    job = await register_with_entries(client)
    everything = await read_history(client, job)
    last_id = everything["items"][-1]["id"]

    body = await read_history(client, job, after=last_id)
    assert body["items"] == []
    assert body["has_more"] is False
    assert body["next_after"] == last_id


async def test_full_last_page_has_no_more(
    client: AsyncTestClient[Any],
) -> None:
    job = await register_with_entries(client)

    body = await read_history(client, job, limit=7)
    assert len(body["items"]) == 7
    assert body["has_more"] is False


async def test_next_after_returns_later_entries(
    client: AsyncTestClient[Any],
) -> None:
    job = await register(client)
    first = await read_history(client, job)
    await send_event(client, job["id"], type="started")

    later = await read_history(client, job, after=first["next_after"])
    assert kinds(later) == [("started", "processing")]


async def test_history_default_limit_is_500(
    client: AsyncTestClient[Any], database_url: str
) -> None:
    job = await register(client)
    await execute_sql(
        database_url,
        "INSERT INTO ingestion_job_history "
        "(job_id, collection_id, attempt, type, actor, status, occurred_at, job) "
        "SELECT job_id, collection_id, attempt, 'heartbeat', actor, status, "
        "occurred_at, job FROM ingestion_job_history, generate_series(1, 600) "
        "WHERE job_id = $1",
        job["id"],
    )

    body = await read_history(client, job)
    assert len(body["items"]) == 500
    assert body["has_more"] is True
    assert body["by_attempt"][0]["entries"] == 601


# Actors and times


async def test_actor_names_token(
    make_client: ClientFactory,
) -> None:
    client = await make_client(
        api_tokens=("alice:secret-a",), worker_tokens=("w1:secret-w",)
    )
    worker = {"Authorization": "Bearer secret-w"}
    api = {"Authorization": "Bearer secret-a"}
    registered = await client.post(
        "/ingestion-jobs", json={**conftest.JOB_DEFAULTS}, headers=worker
    )
    job = registered.json()
    started = await client.post(
        f"/ingestion-jobs/{job['id']}/events", json={"type": "started"}, headers=worker
    )
    cancelled = await client.post(
        f"/collections/1/ingestion-jobs/{job['id']}/cancel", headers=api
    )
    response = await client.get(history_path(job), headers=api)

    assert registered.status_code == 201
    assert started.status_code == 200
    assert cancelled.status_code == 200
    assert response.status_code == 200
    assert [(item["type"], item["actor"]) for item in response.json()["items"]] == [
        ("registered", "worker:w1"),
        ("started", "worker:w1"),
        ("cancel", "api:alice"),
    ]


async def test_actor_without_token_name_is_scope(
    make_client: ClientFactory,
) -> None:
    client = await make_client(api_tokens=("secret-a",), worker_tokens=("secret-w",))
    worker = {"Authorization": "Bearer secret-w"}
    api = {"Authorization": "Bearer secret-a"}
    job = (
        await client.post(
            "/ingestion-jobs", json={**conftest.JOB_DEFAULTS}, headers=worker
        )
    ).json()
    await client.post(f"/collections/1/ingestion-jobs/{job['id']}/cancel", headers=api)

    response = await client.get(history_path(job), headers=api)
    actors = [item["actor"] for item in response.json()["items"]]
    assert actors == ["worker", "api"]


async def test_history_rejects_worker_token(make_client: ClientFactory) -> None:
    client = await make_client(api_tokens=("secret-a",), worker_tokens=("secret-w",))
    job = (
        await client.post(
            "/ingestion-jobs",
            json={**conftest.JOB_DEFAULTS},
            headers={"Authorization": "Bearer secret-w"},
        )
    ).json()

    response = await client.get(
        history_path(job), headers={"Authorization": "Bearer secret-w"}
    )
    assert response.status_code == 403


async def test_occurred_at_kept_apart_from_received_at(
    client: AsyncTestClient[Any],
) -> None:
    job = await register(client)
    occurred = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    await send_event(client, job["id"], type="started", occurred_at=timestamp(occurred))

    entry = (await read_history(client, job))["items"][1]
    received = parse_time(entry["received_at"])
    assert parse_time(entry["occurred_at"]) == occurred
    assert received - occurred > timedelta(minutes=59)
    assert received <= datetime.now(UTC)


async def test_future_occurred_at_capped(
    client: AsyncTestClient[Any],
) -> None:
    job = await register(client)
    future = datetime.now(UTC) + timedelta(hours=1)
    await send_event(client, job["id"], type="started", occurred_at=timestamp(future))

    entry = (await read_history(client, job))["items"][1]
    assert parse_time(entry["occurred_at"]) <= parse_time(entry["received_at"])


# Jobs without history


async def test_job_without_entries_summarised_from_row(
    client: AsyncTestClient[Any], database_url: str
) -> None:
    job = await register(client)
    await send_event(
        client,
        job["id"],
        type="failed",
        error_message="bad file",
        error_details={"exception_type": "ValueError"},
    )
    await execute_sql(
        database_url, "DELETE FROM ingestion_job_history WHERE job_id = $1", job["id"]
    )

    body = await read_history(client, job)
    assert body["items"] == []
    assert body["next_after"] is None
    assert body["attempts"] == 1
    assert body["by_attempt"] == [
        {
            "attempt": 1,
            "status": "failed",
            "started_at": None,
            "ended_at": body["by_attempt"][0]["ended_at"],
            "error_message": "bad file",
            "error_type": "ValueError",
            "entries": 0,
        }
    ]
    assert body["by_attempt"][0]["ended_at"] is not None


async def test_earlier_attempts_without_entries_filled(
    tracked_client: AsyncTestClient[Any], database_url: str
) -> None:
    job = await register(tracked_client)
    await send_event(tracked_client, job["id"], type="failed")
    await execute_sql(
        database_url, "DELETE FROM ingestion_job_history WHERE job_id = $1", job["id"]
    )
    await retry(tracked_client, job)

    body = await read_history(tracked_client, job)
    summaries = body["by_attempt"]
    assert [summary["attempt"] for summary in summaries] == [1, 2]
    assert [summary["status"] for summary in summaries] == ["failed", "pending"]
    assert [summary["entries"] for summary in summaries] == [0, 1]


# Errors


async def test_history_of_other_collection_is_404(
    client: AsyncTestClient[Any],
) -> None:
    job = await register(client, collection_id=1)

    response = await client.get(history_path(job, collection_id=2))
    assert response.status_code == 404
    assert str(job["id"]) in response.json()["detail"]


async def test_history_of_unknown_job_is_404(client: AsyncTestClient[Any]) -> None:
    response = await client.get(history_path({"collection_id": 1, "id": 999_999}))
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("limit", "0", ">= 1"),
        ("limit", "1001", "<= 1000"),
        ("limit", "many", "int"),
        ("attempt", "0", ">= 1"),
        ("attempt", "2147483648", "<= 2147483647"),
        ("attempt", "1.5", "int"),
        ("after", "-1", ">= 0"),
        ("after", "9223372036854775808", "<= 9223372036854775807"),
    ],
)
async def test_history_rejects_bad_query_parameter(
    client: AsyncTestClient[Any], name: str, value: str, expected: str
) -> None:
    job = await register(client)

    response = await client.get(history_path(job), params={name: value})
    detail = response.json()["detail"]
    assert response.status_code == 400
    assert f"query parameter {name}" in detail
    assert expected in detail


async def test_history_documented_in_openapi(client: AsyncTestClient[Any]) -> None:
    response = await client.get("/schema/openapi.json")

    operation = response.json()["paths"][
        "/collections/{collection_id}/ingestion-jobs/{job_id}/history"
    ]["get"]
    parameters = {parameter["name"] for parameter in operation["parameters"]}
    assert operation["summary"] == "Read the history of an ingestion job"
    assert {"attempt", "limit", "after"} <= parameters
    assert set(operation["responses"]) >= {"200", "400", "404"}
    assert operation["security"] == [{"api_token": []}]
