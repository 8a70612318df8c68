"""Liveness sweeper: stall flags, heartbeat timeouts, the sweep lock and its loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.config import ConfigError, load_settings
from service.liveness import LivenessSweeper
from service.liveness.store import SWEEP_LOCK_KEY
from service.store.engine import create_engine
from tests.backend import FakeBackend
from tests.conftest import ClientFactory, register, send_event

# A long interval keeps the app's own sweeper, if its lifespan starts one, idle here.
QUIET = {"sweep_interval_seconds": 3600.0}
DEFAULT_STALL = 60
DEFAULT_HEARTBEAT = 600


@pytest.fixture
async def client(make_client: ClientFactory) -> AsyncTestClient[Any]:
    started: AsyncTestClient[Any] = await make_client(**QUIET)
    return started


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=2)
    yield engine
    await engine.dispose()


# A sweeper that has watched for years counts every job's whole silence.
WATCHING_FOR_LONG = datetime(2000, 1, 1, tzinfo=UTC)


def sweeper_at(engine: AsyncEngine, now: datetime, **options: Any) -> LivenessSweeper:
    """Build a sweeper whose clock always returns ``now``."""
    return LivenessSweeper(
        engine,
        interval_seconds=0.01,
        clock=lambda: now,
        watching_since=WATCHING_FOR_LONG,
        **options,
    )


async def silent_since(database_url: str, job_id: int) -> datetime:
    """Read the time a job's silence is measured from, at full precision."""
    connection = await asyncpg.connect(database_url)
    try:
        since: datetime = await connection.fetchval(
            "SELECT COALESCE(last_event_at, processing_started_at, updated_at) "
            "FROM ingestion_jobs WHERE id = $1",
            job_id,
        )
    finally:
        await connection.close()
    return since


async def start_job(client: AsyncTestClient[Any], **fields: Any) -> dict[str, Any]:
    """Register a job that is already processing."""
    return await register(client, status="processing", **fields)


async def fetch(client: AsyncTestClient[Any], job_id: int) -> dict[str, Any]:
    response = await client.get(f"/collections/1/ingestion-jobs/{job_id}")
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


async def history_rows(database_url: str, job_id: int) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database_url)
    try:
        return await connection.fetch(
            "SELECT type, actor, status, error_type FROM ingestion_job_history "
            "WHERE job_id = $1 ORDER BY id",
            job_id,
        )
    finally:
        await connection.close()


# Stall flags


async def test_sweep_flags_job_past_stall_timeout(
    client: AsyncTestClient[Any], engine: AsyncEngine, database_url: str
) -> None:
    job = await start_job(client)
    since = await silent_since(database_url, job["id"])

    result = await sweeper_at(engine, since + timedelta(seconds=61)).run_once()

    current = await fetch(client, job["id"])
    assert result.swept is True
    assert result.stalled == [job["id"]]
    assert result.failed == []
    assert current["stalled"] is True
    assert current["status"] == "processing"


async def test_event_clears_stall_flag(
    client: AsyncTestClient[Any], engine: AsyncEngine, database_url: str
) -> None:
    job = await start_job(client)
    since = await silent_since(database_url, job["id"])
    await sweeper_at(engine, since + timedelta(seconds=61)).run_once()

    answer = await send_event(client, job["id"], type="heartbeat")

    current = await fetch(client, job["id"])
    assert answer["applied"] is True
    assert current["stalled"] is False


async def test_cancel_clears_stall_flag(
    client: AsyncTestClient[Any], engine: AsyncEngine, database_url: str
) -> None:
    job = await start_job(client)
    since = await silent_since(database_url, job["id"])
    await sweeper_at(engine, since + timedelta(seconds=61)).run_once()

    response = await client.post(f"/collections/1/ingestion-jobs/{job['id']}/cancel")

    assert response.status_code == 200
    assert response.json()["stalled"] is False


@pytest.mark.parametrize(
    "name", ["TRACKER_STALL_TIMEOUT_SECONDS", "TRACKER_HEARTBEAT_TIMEOUT_SECONDS"]
)
def test_timeout_setting_above_a_week_is_rejected(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({name: str(7 * 24 * 3600 + 1)})


async def test_stalled_job_is_not_flagged_twice(
    client: AsyncTestClient[Any], engine: AsyncEngine, database_url: str
) -> None:
    job = await start_job(client)
    since = await silent_since(database_url, job["id"])
    await sweeper_at(engine, since + timedelta(seconds=61)).run_once()

    again = await sweeper_at(engine, since + timedelta(seconds=120)).run_once()

    assert again.swept is True
    assert again.stalled == []
    assert again.failed == []


@pytest.mark.parametrize("silent", [DEFAULT_STALL - 0.5, DEFAULT_STALL, 60.999])
async def test_sweep_ignores_job_at_stall_timeout(
    client: AsyncTestClient[Any], engine: AsyncEngine, database_url: str, silent: float
) -> None:
    job = await start_job(client)
    since = await silent_since(database_url, job["id"])

    result = await sweeper_at(engine, since + timedelta(seconds=silent)).run_once()

    current = await fetch(client, job["id"])
    assert result.stalled == []
    assert current["stalled"] is False


# Heartbeat timeouts


async def test_sweep_fails_job_past_heartbeat_timeout(
    client: AsyncTestClient[Any], engine: AsyncEngine, database_url: str
) -> None:
    job = await start_job(client)
    since = await silent_since(database_url, job["id"])

    result = await sweeper_at(engine, since + timedelta(seconds=612.5)).run_once()

    current = await fetch(client, job["id"])
    assert result.failed == [job["id"]]
    assert result.stalled == []
    assert current["status"] == "failed"
    assert current["stalled"] is False
    assert current["error_message"] == (
        "No event arrived for 612 s, longer than the heartbeat timeout of 600 s, so "
        "the worker is presumed lost. Retry the job to run it again."
    )
    assert current["processing_completed_at"] is not None


async def test_timed_out_job_error_details(
    client: AsyncTestClient[Any], engine: AsyncEngine, database_url: str
) -> None:
    job = await start_job(client)
    await send_event(client, job["id"], type="progress", current=1, total=4)
    since = await silent_since(database_url, job["id"])

    await sweeper_at(engine, since + timedelta(seconds=700)).run_once()

    details = (await fetch(client, job["id"]))["error_details"]
    assert details["exception_type"] == "HeartbeatTimeout"
    assert details["stage"] == "liveness"
    assert details["silent_seconds"] == 700
    assert details["heartbeat_timeout_seconds"] == DEFAULT_HEARTBEAT
    last_event_at = datetime.fromisoformat(details["last_event_at"])
    assert last_event_at == since


async def test_stalled_job_times_out_later(
    client: AsyncTestClient[Any], engine: AsyncEngine, database_url: str
) -> None:
    job = await start_job(client)
    since = await silent_since(database_url, job["id"])
    await sweeper_at(engine, since + timedelta(seconds=61)).run_once()

    result = await sweeper_at(engine, since + timedelta(seconds=601)).run_once()

    current = await fetch(client, job["id"])
    assert result.failed == [job["id"]]
    assert current["status"] == "failed"
    assert current["stalled"] is False


async def test_sweep_stalls_job_at_heartbeat_timeout(
    client: AsyncTestClient[Any], engine: AsyncEngine, database_url: str
) -> None:
    job = await start_job(client)
    since = await silent_since(database_url, job["id"])

    moment = since + timedelta(seconds=DEFAULT_HEARTBEAT)
    result = await sweeper_at(engine, moment).run_once()

    current = await fetch(client, job["id"])
    assert result.failed == []
    assert result.stalled == [job["id"]]
    assert current["status"] == "processing"


async def test_timed_out_job_accepts_retry(
    make_client: ClientFactory,
    backend: FakeBackend,
    engine: AsyncEngine,
    database_url: str,
) -> None:
    client = await make_client(
        backend_url=backend.url, backend_token="backend-secret", **QUIET
    )
    job = await start_job(client, source="base")
    since = await silent_since(database_url, job["id"])
    await sweeper_at(engine, since + timedelta(seconds=601)).run_once()

    response = await client.post(f"/collections/1/ingestion-jobs/{job['id']}/retry")

    retried = response.json()
    assert response.status_code == 200, response.text
    assert retried["status"] == "pending"
    assert retried["attempt"] == 2
    assert retried["error_message"] is None


async def test_sweep_without_clock_uses_database_time(
    client: AsyncTestClient[Any], engine: AsyncEngine, database_url: str
) -> None:
    job = await start_job(client)
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "UPDATE ingestion_jobs SET last_event_at = now() - interval '2 hours' "
            "WHERE id = $1",
            job["id"],
        )
    finally:
        await connection.close()

    sweeper = LivenessSweeper(
        engine, interval_seconds=1, watching_since=WATCHING_FOR_LONG
    )
    result = await sweeper.run_once()

    current = await fetch(client, job["id"])
    assert result.failed == [job["id"]]
    assert current["error_details"]["silent_seconds"] >= 7200


async def test_first_sweep_forgives_silence_before_start(
    client: AsyncTestClient[Any], engine: AsyncEngine, database_url: str
) -> None:
    """A job silent while no tracker ran is not failed by the first sweep."""
    job = await register(client, status="processing")
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "UPDATE ingestion_jobs SET last_event_at = now() - interval '2 hours' "
            "WHERE id = $1",
            job["id"],
        )
    finally:
        await connection.close()

    result = await LivenessSweeper(engine, interval_seconds=1).run_once()

    assert result.failed == []


async def test_sweep_after_gap_forgives_silence(
    client: AsyncTestClient[Any], engine: AsyncEngine, database_url: str
) -> None:
    """Sweeps that stopped for longer than the gap restart the count."""
    job = await register(client, status="processing")
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "UPDATE ingestion_jobs SET last_event_at = now() - interval '2 hours' "
            "WHERE id = $1",
            job["id"],
        )
        database_now: datetime = await connection.fetchval("SELECT now()")
    finally:
        await connection.close()
    sweeper = LivenessSweeper(
        engine, interval_seconds=1, watching_since=WATCHING_FOR_LONG
    )
    # The last sweep that reached the database was an hour ago.
    sweeper._last_contact = database_now - timedelta(hours=1)

    result = await sweeper.run_once()

    assert result.failed == []


# What the sweep leaves alone


async def test_sweep_ignores_pending_and_terminal_jobs(
    client: AsyncTestClient[Any], engine: AsyncEngine, database_url: str
) -> None:
    pending = await register(client)
    completed = await start_job(client)
    await send_event(client, completed["id"], type="completed", document_count=3)
    failed = await start_job(client)
    await send_event(client, failed["id"], type="failed", error_message="bad PDF")
    cancelled = await start_job(client)
    await send_event(client, cancelled["id"], type="cancelled")
    jobs = [pending, completed, failed, cancelled]
    before = [await fetch(client, job["id"]) for job in jobs]

    far_future = datetime.now(UTC) + timedelta(days=30)
    result = await sweeper_at(engine, far_future).run_once()

    after = [await fetch(client, job["id"]) for job in jobs]
    assert result.swept is True
    assert result.stalled == []
    assert result.failed == []
    for old, new in zip(before, after, strict=True):
        assert new == old, f"job {old['id']} ({old['status']}) changed"


async def test_sweep_skips_job_locked_by_event(
    client: AsyncTestClient[Any], engine: AsyncEngine, database_url: str
) -> None:
    job = await start_job(client)
    since = await silent_since(database_url, job["id"])
    connection = await asyncpg.connect(database_url)
    try:
        async with connection.transaction():
            await connection.execute(
                "SELECT id FROM ingestion_jobs WHERE id = $1 FOR UPDATE", job["id"]
            )
            result = await sweeper_at(engine, since + timedelta(seconds=61)).run_once()
    finally:
        await connection.close()

    assert result.swept is True
    assert result.stalled == []


# Per-job timeouts


async def test_shorter_job_timeouts_override_defaults(
    client: AsyncTestClient[Any], engine: AsyncEngine, database_url: str
) -> None:
    short = await start_job(
        client, stall_timeout_seconds=5, heartbeat_timeout_seconds=10
    )
    default = await start_job(client)
    since = await silent_since(database_url, default["id"])

    result = await sweeper_at(engine, since + timedelta(seconds=11)).run_once()

    assert short["stall_timeout_seconds"] == 5
    assert short["heartbeat_timeout_seconds"] == 10
    assert result.failed == [short["id"]]
    assert result.stalled == []


async def test_longer_job_timeouts_override_defaults(
    client: AsyncTestClient[Any], engine: AsyncEngine, database_url: str
) -> None:
    long = await start_job(
        client, stall_timeout_seconds=120, heartbeat_timeout_seconds=1200
    )
    default = await start_job(client)
    since = await silent_since(database_url, default["id"])

    result = await sweeper_at(engine, since + timedelta(seconds=700)).run_once()

    assert result.failed == [default["id"]]
    assert result.stalled == [long["id"]]


async def test_app_timeout_settings_apply_to_new_jobs(
    make_client: ClientFactory, engine: AsyncEngine, database_url: str
) -> None:
    client = await make_client(
        stall_timeout_seconds=30, heartbeat_timeout_seconds=90, **QUIET
    )
    job = await start_job(client)
    since = await silent_since(database_url, job["id"])

    result = await sweeper_at(engine, since + timedelta(seconds=91)).run_once()

    assert job["stall_timeout_seconds"] == 30
    assert job["heartbeat_timeout_seconds"] == 90
    assert result.failed == [job["id"]]


# Registration checks of the timeouts


async def test_register_rejects_heartbeat_below_stall(
    client: AsyncTestClient[Any],
) -> None:
    response = await client.post(
        "/ingestion-jobs",
        json={
            "collection_id": 1,
            "plugin_name": "simple_ingest",
            "source": "base",
            "stall_timeout_seconds": 120,
            "heartbeat_timeout_seconds": 60,
        },
    )

    assert response.status_code == 400
    assert "heartbeat_timeout_seconds" in response.json()["detail"]


async def test_register_rejects_heartbeat_below_default_stall(
    client: AsyncTestClient[Any],
) -> None:
    response = await client.post(
        "/ingestion-jobs",
        json={
            "collection_id": 1,
            "plugin_name": "simple_ingest",
            "source": "base",
            "heartbeat_timeout_seconds": DEFAULT_STALL - 1,
        },
    )

    assert response.status_code == 400
    assert "heartbeat_timeout_seconds" in response.json()["detail"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stall_timeout_seconds", 0),
        ("heartbeat_timeout_seconds", 0),
        ("stall_timeout_seconds", 7 * 24 * 3600 + 1),
        ("heartbeat_timeout_seconds", 7 * 24 * 3600 + 1),
    ],
)
async def test_register_rejects_timeout_out_of_range(
    client: AsyncTestClient[Any], field: str, value: int
) -> None:
    response = await client.post(
        "/ingestion-jobs",
        json={
            "collection_id": 1,
            "plugin_name": "simple_ingest",
            "source": "base",
            field: value,
        },
    )

    assert response.status_code == 400
    assert field in response.json()["detail"]


# History


async def test_sweep_records_history_as_tracker(
    client: AsyncTestClient[Any], engine: AsyncEngine, database_url: str
) -> None:
    job = await start_job(client)
    since = await silent_since(database_url, job["id"])
    await sweeper_at(engine, since + timedelta(seconds=61)).run_once()
    await sweeper_at(engine, since + timedelta(seconds=601)).run_once()

    rows = await history_rows(database_url, job["id"])

    by_type = {row["type"]: row for row in rows}
    assert [row["type"] for row in rows] == ["registered", "stalled", "timed_out"]
    assert by_type["stalled"]["actor"] == "tracker"
    assert by_type["stalled"]["status"] == "processing"
    assert by_type["timed_out"]["actor"] == "tracker"
    assert by_type["timed_out"]["status"] == "failed"
    assert by_type["timed_out"]["error_type"] == "HeartbeatTimeout"


# The sweep lock and batches


async def test_sweep_skipped_while_lock_held(
    client: AsyncTestClient[Any], engine: AsyncEngine, database_url: str
) -> None:
    job = await start_job(client)
    since = await silent_since(database_url, job["id"])
    other = await asyncpg.connect(database_url)
    try:
        async with other.transaction():
            await other.execute("SELECT pg_advisory_xact_lock($1)", SWEEP_LOCK_KEY)
            result = await sweeper_at(engine, since + timedelta(seconds=601)).run_once()
    finally:
        await other.close()

    current = await fetch(client, job["id"])
    assert result.swept is False
    assert result.failed == []
    assert current["status"] == "processing"


async def test_sweep_changes_jobs_beyond_one_batch(
    client: AsyncTestClient[Any], engine: AsyncEngine, database_url: str
) -> None:
    stalling = [await start_job(client) for _ in range(7)]
    dying = [
        await start_job(client, stall_timeout_seconds=5, heartbeat_timeout_seconds=10)
        for _ in range(5)
    ]
    since = await silent_since(database_url, stalling[-1]["id"])

    sweeper = sweeper_at(engine, since + timedelta(seconds=61), batch_size=3)
    result = await sweeper.run_once()

    assert sorted(result.stalled) == [job["id"] for job in stalling]
    assert sorted(result.failed) == [job["id"] for job in dying]
    for job in stalling:
        assert (await fetch(client, job["id"]))["stalled"] is True, job["id"]


# The loop


def flaky_engine(database_url: str, failures: int) -> tuple[AsyncEngine, list[int]]:
    """Build an engine whose first ``failures`` connection attempts fail.

    Returns the engine and a list that grows by one per connection attempt.
    """
    attempts: list[int] = []

    async def connect() -> asyncpg.Connection:
        attempts.append(len(attempts))
        if len(attempts) <= failures:
            raise ConnectionRefusedError("connection refused by the test")
        return await asyncpg.connect(database_url)

    engine = create_async_engine("postgresql+asyncpg://", async_creator=connect)
    return engine, attempts


async def wait_for(condition: Callable[[], Any], seconds: float = 10.0) -> None:
    """Poll an async condition until it is true, for at most ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {seconds} s")
        await asyncio.sleep(0.02)


async def test_loop_survives_database_errors(
    client: AsyncTestClient[Any], database_url: str
) -> None:
    job = await start_job(client)
    since = await silent_since(database_url, job["id"])
    engine, attempts = flaky_engine(database_url, failures=2)
    now = since + timedelta(seconds=601)
    sweeper = LivenessSweeper(
        engine,
        interval_seconds=0.01,
        clock=lambda: now,
        watching_since=WATCHING_FOR_LONG,
    )

    task = asyncio.create_task(sweeper.run())
    try:

        async def job_failed() -> bool:
            return (await fetch(client, job["id"]))["status"] == "failed"

        await wait_for(job_failed)
        running = not task.done()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await engine.dispose()

    assert len(attempts) > 2
    assert running is True


def test_sweeper_rejects_non_positive_interval() -> None:
    engine = create_async_engine("postgresql+asyncpg://")

    with pytest.raises(ValueError, match="interval_seconds"):
        LivenessSweeper(engine, interval_seconds=0)


async def test_sweep_rejects_naive_clock(engine: AsyncEngine) -> None:
    sweeper = sweeper_at(engine, datetime(2026, 1, 1))

    with pytest.raises(ValueError, match="time zone"):
        await sweeper.run_once()
