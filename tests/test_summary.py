"""Collection summary: stalled jobs, failures grouped by cause, processing durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from tests.conftest import register, send_event


async def summary_of(
    client: AsyncTestClient[Any], collection_id: int = 1
) -> dict[str, Any]:
    response = await client.get(f"/collections/{collection_id}/ingestion-status")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def execute(database_url: str, statement: str, *arguments: Any) -> None:
    """Run one statement on the test's database to age or flag rows directly."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(statement, *arguments)
    finally:
        await connection.close()


async def fail(
    client: AsyncTestClient[Any],
    job_id: int,
    message: str,
    exception_type: str = "FileNotFoundError",
) -> None:
    answer = await send_event(
        client,
        job_id,
        type="failed",
        error_message=message,
        error_details={"exception_type": exception_type},
    )
    assert answer["applied"], answer


async def register_failed(
    client: AsyncTestClient[Any],
    message: str,
    exception_type: str = "FileNotFoundError",
    **fields: Any,
) -> int:
    job_id: int = (await register(client, **fields))["id"]
    await fail(client, job_id, message, exception_type)
    return job_id


async def complete_in(
    client: AsyncTestClient[Any], database_url: str, seconds: float, **fields: Any
) -> int:
    """Register and complete a job whose processing took ``seconds``."""
    job_id: int = (await register(client, **fields))["id"]
    await send_event(client, job_id, type="started")
    await send_event(client, job_id, type="completed")
    await execute(
        database_url,
        "UPDATE ingestion_jobs SET processing_started_at = "
        "processing_completed_at - make_interval(secs => $2) WHERE id = $1",
        job_id,
        seconds,
    )
    return job_id


# Empty collection


async def test_summary_empty_collection_new_fields(
    client: AsyncTestClient[Any],
) -> None:
    summary = await summary_of(client, 77)
    assert summary["stalled"] == 0
    assert summary["failures_last_24h"] == []
    assert summary["processing_duration_last_24h"] == {
        "completed_jobs": 0,
        "p50_seconds": None,
        "p95_seconds": None,
    }


# Stalled jobs


async def test_summary_counts_stalled_processing_jobs(
    client: AsyncTestClient[Any], database_url: str
) -> None:
    ids = [(await register(client, status="processing"))["id"] for _ in range(3)]
    cancelled = (await register(client, status="processing"))["id"]
    await client.post(f"/collections/1/ingestion-jobs/{cancelled}/cancel")
    await execute(
        database_url,
        "UPDATE ingestion_jobs SET stalled_at = now() WHERE id = ANY($1::bigint[])",
        [ids[0], ids[1], cancelled],
    )

    summary = await summary_of(client)
    assert summary["stalled"] == 2
    assert summary["currently_processing"] == 3


async def test_summary_stalled_cleared_by_event(
    client: AsyncTestClient[Any], database_url: str
) -> None:
    job_id = (await register(client, status="processing"))["id"]
    await execute(
        database_url,
        "UPDATE ingestion_jobs SET stalled_at = now() WHERE id = $1",
        job_id,
    )
    assert (await summary_of(client))["stalled"] == 1

    await send_event(client, job_id, type="heartbeat")
    assert (await summary_of(client))["stalled"] == 0


async def test_summary_stalled_counts_own_collection(
    client: AsyncTestClient[Any], database_url: str
) -> None:
    other = (await register(client, collection_id=2, status="processing"))["id"]
    await execute(
        database_url,
        "UPDATE ingestion_jobs SET stalled_at = now() WHERE id = $1",
        other,
    )
    assert (await summary_of(client, 1))["stalled"] == 0
    assert (await summary_of(client, 2))["stalled"] == 1


# Failures grouped by cause


async def test_failures_differing_in_file_name_group(
    client: AsyncTestClient[Any],
) -> None:
    first = await register_failed(client, "No such file: /data/uploads/a.pdf")
    second = await register_failed(client, "No such file: /data/uploads/b-17.pdf")
    newest = await register_failed(client, "No such file: /data/other/c.pdf")

    groups = (await summary_of(client))["failures_last_24h"]
    assert len(groups) == 1
    assert groups[0]["exception_type"] == "FileNotFoundError"
    assert groups[0]["message"] == "No such file: <path>"
    assert groups[0]["count"] == 3
    assert groups[0]["newest_job_id"] == newest
    assert newest not in (first, second)


async def test_failures_differing_in_number_group(
    client: AsyncTestClient[Any],
) -> None:
    await register_failed(client, "Timed out after 30 s on page 4", "TimeoutError")
    newest = await register_failed(
        client, "Timed out after 45.5 s on page 120", "TimeoutError"
    )

    groups = (await summary_of(client))["failures_last_24h"]
    assert len(groups) == 1
    assert groups[0]["message"] == "Timed out after <n> s on page <n>"
    assert groups[0]["count"] == 2
    assert groups[0]["newest_job_id"] == newest


async def test_failures_of_different_types_stay_apart(
    client: AsyncTestClient[Any],
) -> None:
    await register_failed(client, "cannot read 'a.pdf'", "PdfReadError")
    await register_failed(client, "cannot read 'b.pdf'", "PdfReadError")
    unicode_job = await register_failed(
        client, "cannot read 'c.pdf'", "UnicodeDecodeError"
    )

    groups = (await summary_of(client))["failures_last_24h"]
    assert [group["exception_type"] for group in groups] == [
        "PdfReadError",
        "UnicodeDecodeError",
    ]
    assert [group["count"] for group in groups] == [2, 1]
    assert groups[1]["newest_job_id"] == unicode_job


async def test_failures_different_messages_stay_apart(
    client: AsyncTestClient[Any],
) -> None:
    await register_failed(client, "Connection refused", "OSError")
    await register_failed(client, "Permission denied: /srv/a/b.pdf", "OSError")

    groups = (await summary_of(client))["failures_last_24h"]
    assert len(groups) == 2


async def test_failures_without_type_group_as_unknown(
    client: AsyncTestClient[Any],
) -> None:
    job_id = (await register(client))["id"]
    await send_event(client, job_id, type="failed", error_message="boom")

    groups = (await summary_of(client))["failures_last_24h"]
    assert groups[0]["exception_type"] == "UnknownError"
    assert groups[0]["message"] == "boom"


async def test_failures_older_than_24h_excluded(
    client: AsyncTestClient[Any], database_url: str
) -> None:
    old = await register_failed(client, "No such file: /data/a.pdf")
    recent = await register_failed(client, "No such file: /data/b.pdf")
    await execute(
        database_url,
        "UPDATE ingestion_job_history SET received_at = now() - interval '25 hours' "
        "WHERE job_id = $1",
        old,
    )

    groups = (await summary_of(client))["failures_last_24h"]
    assert len(groups) == 1
    assert groups[0]["count"] == 1
    assert groups[0]["newest_job_id"] == recent


async def test_failures_of_other_collection_excluded(
    client: AsyncTestClient[Any],
) -> None:
    await register_failed(client, "No such file: /data/a.pdf", collection_id=2)
    assert (await summary_of(client, 1))["failures_last_24h"] == []
    assert len((await summary_of(client, 2))["failures_last_24h"]) == 1


async def test_failures_retried_job_counts_each_attempt(
    tracked_client: AsyncTestClient[Any],
) -> None:
    job_id = await register_failed(
        tracked_client, "No such file: /a/b.pdf", source="base"
    )
    response = await tracked_client.post(
        f"/collections/1/ingestion-jobs/{job_id}/retry"
    )
    assert response.status_code == 200, response.text
    await fail(tracked_client, job_id, "No such file: /a/c.pdf")

    groups = (await summary_of(tracked_client))["failures_last_24h"]
    assert len(groups) == 1
    assert groups[0]["count"] == 2
    assert groups[0]["newest_job_id"] == job_id


async def test_failures_retried_then_completed_still_count(
    tracked_client: AsyncTestClient[Any],
) -> None:
    job_id = await register_failed(
        tracked_client, "No such file: /a/b.pdf", source="base"
    )
    response = await tracked_client.post(
        f"/collections/1/ingestion-jobs/{job_id}/retry"
    )
    assert response.status_code == 200, response.text
    await send_event(tracked_client, job_id, type="completed")

    summary = await summary_of(tracked_client)
    assert summary["by_status"]["failed"] == 0
    assert summary["failures_last_24h"][0]["count"] == 1


async def test_failures_most_frequent_first(client: AsyncTestClient[Any]) -> None:
    await register_failed(client, "rare", "RareError")
    for _ in range(3):
        await register_failed(client, "often", "FrequentError")
    await register_failed(client, "sometimes", "OccasionalError")
    await register_failed(client, "sometimes", "OccasionalError")

    groups = (await summary_of(client))["failures_last_24h"]
    assert [group["exception_type"] for group in groups] == [
        "FrequentError",
        "OccasionalError",
        "RareError",
    ]


async def age_failure(database_url: str, job_id: int, received_at: datetime) -> None:
    await execute(
        database_url,
        "UPDATE ingestion_job_history SET received_at = $2 "
        "WHERE job_id = $1 AND error_cause IS NOT NULL",
        job_id,
        received_at,
    )


async def test_failures_ties_newest_first(
    client: AsyncTestClient[Any], database_url: str
) -> None:
    # The job registered first failed last, so the order is by time, not by id.
    newer = await register_failed(client, "first", "NewerError")
    older = await register_failed(client, "second", "OlderError")
    now = datetime.now(UTC)
    await age_failure(database_url, newer, now - timedelta(hours=1))
    await age_failure(database_url, older, now - timedelta(hours=2))

    groups = (await summary_of(client))["failures_last_24h"]
    assert [group["newest_job_id"] for group in groups] == [newer, older]


async def test_failures_newest_by_received_time(
    client: AsyncTestClient[Any], database_url: str
) -> None:
    newer = await register_failed(client, "No such file: /a/b.pdf")
    older = await register_failed(client, "No such file: /a/c.pdf")
    newest_time = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    await age_failure(database_url, newer, newest_time)
    await age_failure(database_url, older, newest_time - timedelta(hours=1))

    groups = (await summary_of(client))["failures_last_24h"]
    assert groups[0]["count"] == 2
    assert groups[0]["newest_job_id"] == newer
    assert groups[0]["last_failed_at"] == newest_time.isoformat().replace("+00:00", "Z")


async def test_failures_at_most_ten_groups(client: AsyncTestClient[Any]) -> None:
    for number in range(11):
        await register_failed(client, "failed", f"Error{chr(ord('A') + number)}")

    types = [
        group["exception_type"]
        for group in (await summary_of(client))["failures_last_24h"]
    ]
    assert len(types) == 10
    assert types[0] == "ErrorK"
    assert "ErrorA" not in types


# Processing durations


async def test_durations_percentiles(
    client: AsyncTestClient[Any], database_url: str
) -> None:
    for seconds in range(1, 21):
        await complete_in(client, database_url, seconds)

    durations = (await summary_of(client))["processing_duration_last_24h"]
    assert durations["completed_jobs"] == 20
    # Linear interpolation: 0.5 * 19 = 9.5 lies halfway between 10 and 11, and
    # 0.95 * 19 = 18.05 lies 5 % of the way from 19 to 20.
    assert durations["p50_seconds"] == pytest.approx(10.5)
    assert durations["p95_seconds"] == pytest.approx(19.05)


async def test_durations_single_job(
    client: AsyncTestClient[Any], database_url: str
) -> None:
    await complete_in(client, database_url, 2.5)

    durations = (await summary_of(client))["processing_duration_last_24h"]
    assert durations["completed_jobs"] == 1
    assert durations["p50_seconds"] == pytest.approx(2.5)
    assert durations["p95_seconds"] == pytest.approx(2.5)


async def test_durations_older_than_24h_excluded(
    client: AsyncTestClient[Any], database_url: str
) -> None:
    old = await complete_in(client, database_url, 1000)
    await complete_in(client, database_url, 4)
    await execute(
        database_url,
        "UPDATE ingestion_jobs SET processing_completed_at = now() - interval "
        "'25 hours', processing_started_at = now() - interval '26 hours' WHERE id = $1",
        old,
    )

    durations = (await summary_of(client))["processing_duration_last_24h"]
    assert durations["completed_jobs"] == 1
    assert durations["p50_seconds"] == pytest.approx(4)
    assert durations["p95_seconds"] == pytest.approx(4)


async def test_durations_skip_jobs_not_completed(
    client: AsyncTestClient[Any], database_url: str
) -> None:
    await complete_in(client, database_url, 3)
    failed = (await register(client, status="processing"))["id"]
    await fail(client, failed, "boom")
    deleted = await complete_in(client, database_url, 500)
    await send_event(client, deleted, type="deleted")
    await complete_in(client, database_url, 7, collection_id=2)

    durations = (await summary_of(client))["processing_duration_last_24h"]
    assert durations["completed_jobs"] == 1
    assert durations["p50_seconds"] == pytest.approx(3)


async def test_summary_openapi_describes_new_fields(
    client: AsyncTestClient[Any],
) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    properties = schema["components"]["schemas"]["CollectionStatus"]["properties"]
    for field in ("stalled", "failures_last_24h", "processing_duration_last_24h"):
        assert properties[field].get("description"), field
