"""Frontend job endpoints: registration, reads, lists, the summary and cancel."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from service.jobs.schemas import JOB_STATUSES
from tests.conftest import ServeApp, register, send_event

SORT_FIELDS = (
    "created_at",
    "updated_at",
    "status",
    "original_filename",
    "file_size",
    "processing_started_at",
)
TIMESTAMP_FIELDS = {"created_at", "updated_at", "processing_started_at"}


async def list_jobs(
    client: AsyncTestClient[Any], collection_id: int = 1, **params: Any
) -> dict[str, Any]:
    """List a collection's jobs with query ``params`` and expect a 200 response."""
    response = await client.get(
        f"/collections/{collection_id}/ingestion-jobs", params=params
    )
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def ids_of(page: dict[str, Any]) -> list[int]:
    return [job["id"] for job in page["items"]]


def sort_value(job: dict[str, Any], field: str) -> Any:
    """Return the value a job sorts by, comparable in Python like in PostgreSQL."""
    value = job[field]
    if value is None:
        return None
    if field in TIMESTAMP_FIELDS:
        return datetime.fromisoformat(value)
    if field == "status":
        return JOB_STATUSES.index(value)
    return value


def expected_ascending(jobs: list[dict[str, Any]], field: str) -> list[int]:
    """Order ids by ``field`` ascending as PostgreSQL does: NULLs last, ties on id."""

    def key(job: dict[str, Any]) -> tuple[bool, Any, int]:
        value = sort_value(job, field)
        return (value is None, 0 if value is None else value, job["id"])

    return [job["id"] for job in sorted(jobs, key=key)]


async def make_sortable_jobs(client: AsyncTestClient[Any]) -> list[int]:
    """Register jobs whose sort columns differ, repeat or are NULL; return the ids."""
    rows = [
        ("delta.pdf", 300, "2026-01-03T08:00:00Z"),
        ("alpha.pdf", None, None),
        ("charlie.pdf", 100, "2026-01-01T08:00:00Z"),
        (None, 300, None),
        ("bravo.pdf", 200, "2026-01-02T08:00:00"),
        ("echo.pdf", None, "2026-01-01T08:00:00Z"),
    ]
    ids = []
    for index, (filename, size, started_at) in enumerate(rows):
        job = await register(
            client,
            external_id=f"sortable-{index}",
            original_filename=filename,
            file_size=size,
        )
        if started_at is not None:
            await send_event(client, job["id"], type="started", occurred_at=started_at)
        ids.append(job["id"])

    # Finish some jobs in an order unlike registration, so updated_at and status vary.
    await send_event(client, ids[4], type="completed")
    await send_event(client, ids[0], type="failed", error_message="bad file")
    await client.post(f"/collections/1/ingestion-jobs/{ids[1]}/cancel")
    return ids


# Registration


async def test_register_new_job_is_created(client: AsyncTestClient[Any]) -> None:
    response = await client.post(
        "/ingestion-jobs",
        json={"collection_id": 1, "plugin_name": "simple", "external_id": "file-1"},
    )
    assert response.status_code == 201
    assert response.json()["external_id"] == "file-1"


async def test_register_same_external_id_returns_existing(
    client: AsyncTestClient[Any],
) -> None:
    body = {"collection_id": 1, "plugin_name": "simple", "external_id": "file-1"}
    first = await client.post("/ingestion-jobs", json=body)
    again = await client.post("/ingestion-jobs", json=body)
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]


async def test_register_external_id_other_collection_is_new(
    client: AsyncTestClient[Any],
) -> None:
    first = await client.post(
        "/ingestion-jobs",
        json={"collection_id": 1, "plugin_name": "simple", "external_id": "file-1"},
    )
    other = await client.post(
        "/ingestion-jobs",
        json={"collection_id": 2, "plugin_name": "simple", "external_id": "file-1"},
    )
    assert other.status_code == 201
    assert other.json()["id"] != first.json()["id"]
    assert other.json()["collection_id"] == 2


@pytest.mark.parametrize("external_id", ["race-1", "race-2", "race-3"])
async def test_register_concurrent_same_external_id_once(
    serve_app: ServeApp, external_id: str
) -> None:
    # Served over HTTP, because AsyncTestClient runs gathered requests one by one.
    served = await serve_app()
    body = {"collection_id": 1, "plugin_name": "simple", "external_id": external_id}
    responses = await asyncio.gather(
        *(served.post("/ingestion-jobs", json=body) for _ in range(10))
    )
    statuses = sorted(response.status_code for response in responses)
    ids = {response.json()["id"] for response in responses}
    page = (await served.get("/collections/1/ingestion-jobs")).json()
    assert statuses == [200] * 9 + [201]
    assert len(ids) == 1
    assert page["total"] == 1


async def test_register_without_external_id_never_merges(
    client: AsyncTestClient[Any],
) -> None:
    first = await register(client)
    second = await register(client)
    assert first["id"] != second["id"]


async def test_register_processing_sets_started_at(
    client: AsyncTestClient[Any],
) -> None:
    job = await register(client, status="processing")
    assert job["status"] == "processing"
    assert job["processing_started_at"] is not None
    assert job["processing_completed_at"] is None


async def test_register_pending_leaves_started_at_null(
    client: AsyncTestClient[Any],
) -> None:
    job = await register(client)
    assert job["status"] == "pending"
    assert job["processing_started_at"] is None


async def test_register_stores_every_field(client: AsyncTestClient[Any]) -> None:
    fields = {
        "collection_id": 9,
        "collection_name": "Papers",
        "owner": "bob",
        "original_filename": "report.pdf",
        "file_path": "/data/9/report.pdf",
        "file_url": "http://backend.test/static/9/report.pdf",
        "file_size": 2048,
        "content_type": "application/pdf",
        "plugin_name": "markitdown_ingest",
        "plugin_params": {"chunk_size": 500, "splitter": {"kind": "tokens"}},
        "source": "url",
        "external_id": "registry-17",
    }
    response = await client.post("/ingestion-jobs", json=fields)
    job = response.json()
    assert response.status_code == 201
    for name, value in fields.items():
        assert job[name] == value, name
    assert job["attempt"] == 1
    assert job["document_count"] == 0


# Reading one job


async def test_get_job_returns_it(client: AsyncTestClient[Any]) -> None:
    job = await register(client, original_filename="a.txt")
    response = await client.get(f"/collections/1/ingestion-jobs/{job['id']}")
    assert response.status_code == 200
    assert response.json() == job


async def test_get_unknown_job_is_not_found(client: AsyncTestClient[Any]) -> None:
    response = await client.get("/collections/1/ingestion-jobs/424242")
    assert response.status_code == 404
    assert response.json() == {
        "status_code": 404,
        "detail": "Ingestion job 424242 not found in collection 1",
    }


async def test_get_job_other_collection_not_found(
    client: AsyncTestClient[Any],
) -> None:
    job = await register(client, collection_id=1)
    response = await client.get(f"/collections/2/ingestion-jobs/{job['id']}")
    assert response.status_code == 404
    assert str(job["id"]) in response.json()["detail"]


# Listing


async def test_list_empty_collection(client: AsyncTestClient[Any]) -> None:
    page = await list_jobs(client, collection_id=55)
    assert page == {
        "total": 0,
        "items": [],
        "limit": 50,
        "offset": 0,
        "has_more": False,
    }


async def test_list_only_own_collection(client: AsyncTestClient[Any]) -> None:
    own = await register(client, collection_id=1)
    await register(client, collection_id=2)
    page = await list_jobs(client, collection_id=1)
    assert ids_of(page) == [own["id"]]
    assert page["total"] == 1


async def test_list_default_newest_first(client: AsyncTestClient[Any]) -> None:
    ids = [(await register(client))["id"] for _ in range(4)]
    page = await list_jobs(client)
    assert ids_of(page) == list(reversed(ids))


async def test_list_filters_one_status(client: AsyncTestClient[Any]) -> None:
    pending = await register(client)
    failed = await register(client)
    await send_event(client, failed["id"], type="failed")
    page = await list_jobs(client, status="pending")
    assert ids_of(page) == [pending["id"]]
    assert page["total"] == 1


async def test_list_filters_comma_separated_statuses(
    client: AsyncTestClient[Any],
) -> None:
    await register(client)
    failed = await register(client)
    completed = await register(client)
    await send_event(client, failed["id"], type="failed")
    await send_event(client, completed["id"], type="completed")
    page = await list_jobs(client, status="failed,completed", sort_order="asc")
    assert ids_of(page) == [failed["id"], completed["id"]]
    assert page["total"] == 2


async def test_list_filters_repeated_status(client: AsyncTestClient[Any]) -> None:
    await register(client)
    failed = await register(client)
    completed = await register(client)
    await send_event(client, failed["id"], type="failed")
    await send_event(client, completed["id"], type="completed")
    response = await client.get(
        "/collections/1/ingestion-jobs?status=failed&status=completed&sort_order=asc"
    )
    page = response.json()
    assert response.status_code == 200
    assert ids_of(page) == [failed["id"], completed["id"]]
    assert page["total"] == 2


async def test_list_status_without_match_is_empty(
    client: AsyncTestClient[Any],
) -> None:
    await register(client)
    page = await list_jobs(client, status="deleted")
    assert page["items"] == []
    assert page["total"] == 0


@pytest.mark.parametrize("sort_by", SORT_FIELDS)
async def test_list_sorts_ascending(client: AsyncTestClient[Any], sort_by: str) -> None:
    ids = await make_sortable_jobs(client)
    page = await list_jobs(client, sort_by=sort_by, sort_order="asc")
    assert sorted(ids_of(page)) == ids
    assert ids_of(page) == expected_ascending(page["items"], sort_by)


@pytest.mark.parametrize("sort_by", SORT_FIELDS)
async def test_list_sorts_descending(
    client: AsyncTestClient[Any], sort_by: str
) -> None:
    # Descending is the exact reverse of ascending: NULLs first, ties on id descending.
    ids = await make_sortable_jobs(client)
    page = await list_jobs(client, sort_by=sort_by, sort_order="desc")
    expected = list(reversed(expected_ascending(page["items"], sort_by)))
    assert sorted(ids_of(page)) == ids
    assert ids_of(page) == expected


async def test_list_sorts_status_in_lifecycle_order(
    client: AsyncTestClient[Any],
) -> None:
    ids = await make_sortable_jobs(client)
    page = await list_jobs(client, sort_by="status", sort_order="asc")
    statuses = [job["status"] for job in page["items"]]
    assert statuses == [
        "pending",
        "processing",
        "processing",
        "completed",
        "failed",
        "cancelled",
    ]
    assert ids_of(page) == [ids[3], ids[2], ids[5], ids[4], ids[0], ids[1]]


async def test_list_limit_offset_and_has_more(client: AsyncTestClient[Any]) -> None:
    ids = [(await register(client))["id"] for _ in range(5)]
    first = await list_jobs(client, limit=2, offset=0, sort_order="asc")
    last = await list_jobs(client, limit=2, offset=4, sort_order="asc")
    beyond = await list_jobs(client, limit=2, offset=10, sort_order="asc")
    assert ids_of(first) == ids[:2]
    assert first["total"] == 5
    assert first["limit"] == 2
    assert first["offset"] == 0
    assert first["has_more"] is True
    assert ids_of(last) == ids[4:]
    assert last["has_more"] is False
    assert beyond["items"] == []
    assert beyond["total"] == 5
    assert beyond["has_more"] is False


async def test_list_exact_last_page_has_no_more(client: AsyncTestClient[Any]) -> None:
    for _ in range(4):
        await register(client)
    page = await list_jobs(client, limit=2, offset=2)
    assert len(page["items"]) == 2
    assert page["has_more"] is False


@pytest.mark.parametrize("sort_order", ["asc", "desc"])
async def test_list_pages_through_ties_once(
    client: AsyncTestClient[Any], sort_order: str
) -> None:
    ids = [(await register(client, file_size=1000))["id"] for _ in range(25)]
    seen: list[int] = []
    for offset in range(0, 28, 7):
        page = await list_jobs(
            client, sort_by="file_size", sort_order=sort_order, limit=7, offset=offset
        )
        seen.extend(ids_of(page))
    expected = ids if sort_order == "asc" else list(reversed(ids))
    assert len(seen) == 25
    assert seen == expected


# Collection summary


async def test_summary_empty_collection(client: AsyncTestClient[Any]) -> None:
    response = await client.get("/collections/77/ingestion-status")
    assert response.status_code == 200
    assert response.json() == {
        "collection_id": 77,
        "collection_name": None,
        "total_jobs": 0,
        "by_status": dict.fromkeys(JOB_STATUSES, 0),
        "currently_processing": 0,
        "recent_failures": [],
        "oldest_processing_job": None,
        "stalled": 0,
        "failures_last_24h": [],
        "processing_duration_last_24h": {
            "completed_jobs": 0,
            "p50_seconds": None,
            "p95_seconds": None,
        },
    }


async def test_summary_counts_every_status(client: AsyncTestClient[Any]) -> None:
    await register(client)
    processing = await register(client)
    completed = await register(client)
    failed = await register(client)
    cancelled = await register(client)
    deleted = await register(client)
    await register(client, collection_id=2, status="processing")
    await send_event(client, processing["id"], type="started")
    await send_event(client, completed["id"], type="completed")
    await send_event(client, failed["id"], type="failed")
    await client.post(f"/collections/1/ingestion-jobs/{cancelled['id']}/cancel")
    await send_event(client, deleted["id"], type="deleted")

    response = await client.get("/collections/1/ingestion-status")
    summary = response.json()
    assert response.status_code == 200
    assert summary["collection_id"] == 1
    assert summary["by_status"] == dict.fromkeys(JOB_STATUSES, 1)
    assert summary["total_jobs"] == 6
    assert summary["currently_processing"] == 1


async def test_summary_collection_name_from_registration(
    client: AsyncTestClient[Any],
) -> None:
    await register(client, collection_id=4, collection_name="Research papers")
    response = await client.get("/collections/4/ingestion-status")
    assert response.json()["collection_name"] == "Research papers"


async def test_summary_recent_failures_newest_first(
    client: AsyncTestClient[Any],
) -> None:
    ids = [(await register(client))["id"] for _ in range(7)]
    failure_order = [ids[3], ids[0], ids[6], ids[1], ids[5], ids[2], ids[4]]
    for job_id in failure_order:
        await send_event(client, job_id, type="failed", error_message=f"job {job_id}")
    response = await client.get("/collections/1/ingestion-status")
    failures = response.json()["recent_failures"]
    assert [job["id"] for job in failures] == list(reversed(failure_order))[:5]
    assert all(job["status"] == "failed" for job in failures)


async def test_summary_oldest_processing_job(client: AsyncTestClient[Any]) -> None:
    later = await register(client)
    earliest = await register(client)
    middle = await register(client)
    await register(client)
    await send_event(
        client, later["id"], type="started", occurred_at="2026-02-01T00:00:00Z"
    )
    await send_event(
        client, earliest["id"], type="started", occurred_at="2026-01-01T00:00:00Z"
    )
    await send_event(
        client, middle["id"], type="started", occurred_at="2026-01-15T00:00:00Z"
    )
    response = await client.get("/collections/1/ingestion-status")
    oldest = response.json()["oldest_processing_job"]
    assert oldest["id"] == earliest["id"]
    assert oldest["processing_started_at"] == "2026-01-01T00:00:00Z"


async def test_summary_oldest_skips_finished_jobs(
    client: AsyncTestClient[Any],
) -> None:
    finished = await register(client)
    running = await register(client)
    await send_event(
        client, finished["id"], type="started", occurred_at="2026-01-01T00:00:00Z"
    )
    await send_event(client, finished["id"], type="completed")
    await send_event(
        client, running["id"], type="started", occurred_at="2026-03-01T00:00:00Z"
    )
    response = await client.get("/collections/1/ingestion-status")
    assert response.json()["oldest_processing_job"]["id"] == running["id"]


# Cancel


async def test_cancel_pending_job(client: AsyncTestClient[Any]) -> None:
    job = await register(client)
    response = await client.post(f"/collections/1/ingestion-jobs/{job['id']}/cancel")
    cancelled = response.json()
    assert response.status_code == 200
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancel_requested_at"] is not None


async def test_cancel_processing_job(client: AsyncTestClient[Any]) -> None:
    job = await register(client)
    await send_event(client, job["id"], type="progress", current=1, total=4)
    response = await client.post(f"/collections/1/ingestion-jobs/{job['id']}/cancel")
    cancelled = response.json()
    assert response.status_code == 200
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancel_requested_at"] is not None
    assert cancelled["processing_completed_at"] is not None


@pytest.mark.parametrize(
    ("event", "status"),
    [
        ({"type": "completed"}, "completed"),
        ({"type": "failed", "error_message": "broken"}, "failed"),
        ({"type": "cancelled"}, "cancelled"),
        ({"type": "deleted"}, "deleted"),
    ],
)
async def test_cancel_finished_job_is_conflict(
    client: AsyncTestClient[Any], event: dict[str, Any], status: str
) -> None:
    job = await register(client)
    await send_event(client, job["id"], **event)
    response = await client.post(f"/collections/1/ingestion-jobs/{job['id']}/cancel")
    body = response.json()
    assert response.status_code == 409
    assert body["status_code"] == 409
    assert f"is {status}" in body["detail"]
    assert "pending or processing" in body["detail"]


async def test_cancel_twice_is_conflict(client: AsyncTestClient[Any]) -> None:
    job = await register(client)
    await client.post(f"/collections/1/ingestion-jobs/{job['id']}/cancel")
    response = await client.post(f"/collections/1/ingestion-jobs/{job['id']}/cancel")
    assert response.status_code == 409
    assert "is cancelled" in response.json()["detail"]


async def test_cancel_other_collection_not_found(
    client: AsyncTestClient[Any],
) -> None:
    job = await register(client, collection_id=1)
    response = await client.post(f"/collections/2/ingestion-jobs/{job['id']}/cancel")
    unchanged = await client.get(f"/collections/1/ingestion-jobs/{job['id']}")
    assert response.status_code == 404
    assert str(job["id"]) in response.json()["detail"]
    assert unchanged.json()["status"] == "pending"


async def test_cancel_unknown_job_not_found(client: AsyncTestClient[Any]) -> None:
    response = await client.post("/collections/1/ingestion-jobs/31337/cancel")
    assert response.status_code == 404


async def test_event_after_cancel_reports_cancel(
    client: AsyncTestClient[Any],
) -> None:
    job = await register(client)
    await send_event(client, job["id"], type="started")
    await client.post(f"/collections/1/ingestion-jobs/{job['id']}/cancel")
    answer = await send_event(client, job["id"], type="progress", current=2, total=4)
    assert answer["applied"] is False
    assert answer["reason"] == "job_terminal"
    assert answer["cancel_requested"] is True
    assert answer["job"]["status"] == "cancelled"
    assert answer["job"]["progress"]["current"] == 0
