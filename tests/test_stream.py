"""Server-sent event streams over real HTTP: order, replay, replicas, slow clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest

from service.events.schemas import Event
from service.events.store import apply_event
from service.history.feed import Change, ChangeFeed, Cursor, Subscription
from service.history.stream import _live
from service.store.engine import create_engine
from tests.conftest import ServeApp

READ_TIMEOUT = 10.0
JOB_STREAM = "/collections/{collection}/ingestion-jobs/{job}/stream"
COLLECTION_STREAM = "/collections/{collection}/ingestion-stream"


@dataclass
class Message:
    """One dispatched or id-only SSE message."""

    id: str | None = None
    data: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def job(self) -> dict[str, Any]:
        assert self.data is not None
        decoded: dict[str, Any] = json.loads(self.data)
        return decoded


class Reader:
    """Reads SSE messages from a streaming httpx response."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def message(self) -> Message | None:
        """Return the next message or comment block; None when the stream ended."""
        message = Message()
        seen = False
        async with asyncio.timeout(READ_TIMEOUT):
            async for line in self._lines:
                if line == "":
                    if seen:
                        return message
                    continue
                seen = True
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "":
                    message.comments.append(value)
                elif name == "id":
                    message.id = value
                elif name == "data":
                    message.data = value
                elif name == "retry":
                    message.retry = int(value)
        return message if seen else None

    async def change(self) -> Message:
        """Return the next message that carries a job, skipping keep-alives."""
        while True:
            message = await self.message()
            assert message is not None, "the stream ended"
            if message.data is not None:
                return message

    async def rest(self) -> list[Message]:
        """Return the remaining messages with a job until the stream ends."""
        messages = []
        while (message := await self.message()) is not None:
            if message.data is not None:
                messages.append(message)
        return messages


@contextlib.asynccontextmanager
async def stream(
    client: httpx.AsyncClient, path: str, **headers: str
) -> AsyncIterator[Reader]:
    async with client.stream("GET", path, headers=headers) as response:
        yield Reader(response)


async def register(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"collection_id": 1, "plugin_name": "markitdown_ingest", **fields}
    response = await client.post("/ingestion-jobs", json=body)
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


async def report(client: httpx.AsyncClient, job_id: int, **event: Any) -> None:
    response = await client.post(f"/ingestion-jobs/{job_id}/events", json=event)
    assert response.status_code == 200, response.text
    assert response.json()["applied"], response.text


async def run_job(client: httpx.AsyncClient, job_id: int) -> None:
    """Report a whole attempt: started, three progress steps, completed."""
    await report(client, job_id, type="started", seq=1)
    for step in range(1, 4):
        await report(
            client, job_id, type="progress", seq=1 + step, current=step, total=3
        )
    await report(client, job_id, type="completed", seq=5, document_count=3)


# One job's stream


async def test_job_stream_opens_with_retry_advice(serve_app: ServeApp) -> None:
    client = await serve_app()
    job = await register(client)

    async with stream(client, JOB_STREAM.format(collection=1, job=job["id"])) as reader:
        first = await reader.message()

    assert first is not None
    assert first.retry == 2000


async def test_job_stream_sends_content_type_event_stream(serve_app: ServeApp) -> None:
    client = await serve_app()
    job = await register(client)

    async with stream(client, JOB_STREAM.format(collection=1, job=job["id"])) as reader:
        content_type = reader.response.headers["content-type"]

    assert content_type.startswith("text/event-stream")


async def test_job_stream_starts_with_job(serve_app: ServeApp) -> None:
    client = await serve_app()
    job = await register(client)

    async with stream(client, JOB_STREAM.format(collection=1, job=job["id"])) as reader:
        first = await reader.change()

    assert first.job == job


async def test_job_stream_sends_every_change_in_order(serve_app: ServeApp) -> None:
    client = await serve_app()
    job = await register(client)

    async with stream(client, JOB_STREAM.format(collection=1, job=job["id"])) as reader:
        await reader.change()
        await run_job(client, job["id"])
        changes = await reader.rest()

    seen = [(m.job["status"], m.job["progress"]["current"]) for m in changes]
    assert seen == [
        ("processing", 0),
        ("processing", 1),
        ("processing", 2),
        ("processing", 3),
        ("completed", 3),
    ]


async def test_job_stream_ids_increase(serve_app: ServeApp) -> None:
    client = await serve_app()
    job = await register(client)

    async with stream(client, JOB_STREAM.format(collection=1, job=job["id"])) as reader:
        await reader.change()
        await run_job(client, job["id"])
        changes = await reader.rest()

    cursors = [Cursor.parse(m.id or "", "id") for m in changes]
    assert cursors == sorted(set(cursors))


async def test_job_stream_ends_after_terminal_status(serve_app: ServeApp) -> None:
    client = await serve_app()
    job = await register(client)
    await report(client, job["id"], type="failed", error_message="boom")

    async with stream(client, JOB_STREAM.format(collection=1, job=job["id"])) as reader:
        changes = await reader.rest()

    assert [m.job["status"] for m in changes] == ["failed"]


async def test_job_stream_shows_operator_cancel(serve_app: ServeApp) -> None:
    client = await serve_app()
    job = await register(client)

    async with stream(client, JOB_STREAM.format(collection=1, job=job["id"])) as reader:
        await reader.change()
        response = await client.post(
            f"/collections/1/ingestion-jobs/{job['id']}/cancel"
        )
        assert response.status_code == 200
        changes = await reader.rest()

    assert changes[-1].job["cancel_requested_at"] is not None


async def test_job_stream_of_unknown_job_is_404(serve_app: ServeApp) -> None:
    client = await serve_app()

    response = await client.get(JOB_STREAM.format(collection=1, job=999))

    assert response.status_code == 404


async def test_job_stream_of_other_collection_is_404(serve_app: ServeApp) -> None:
    client = await serve_app()
    job = await register(client)

    response = await client.get(JOB_STREAM.format(collection=2, job=job["id"]))

    assert response.status_code == 404


# Reconnecting with Last-Event-ID


async def test_reconnect_replays_missed_changes_once(serve_app: ServeApp) -> None:
    client = await serve_app()
    job = await register(client)
    path = JOB_STREAM.format(collection=1, job=job["id"])
    async with stream(client, path) as reader:
        await reader.change()
        await report(client, job["id"], type="started", seq=1)
        seen = await reader.change()
    await report(client, job["id"], type="progress", seq=2, current=1, total=2)
    await report(client, job["id"], type="completed", seq=3)

    async with stream(client, path, **{"Last-Event-ID": seen.id or ""}) as reader:
        missed = await reader.rest()

    assert [m.job["status"] for m in missed] == ["processing", "completed"]


async def test_reconnect_repeats_nothing(serve_app: ServeApp) -> None:
    client = await serve_app()
    job = await register(client)
    path = JOB_STREAM.format(collection=1, job=job["id"])
    async with stream(client, path) as reader:
        await reader.change()
        await report(client, job["id"], type="started", seq=1)
        seen = await reader.change()
    await report(client, job["id"], type="completed", seq=2)

    async with stream(client, path, **{"Last-Event-ID": seen.id or ""}) as reader:
        missed = await reader.rest()

    assert seen.id not in [m.id for m in missed]


async def test_reconnect_with_query_parameter(serve_app: ServeApp) -> None:
    client = await serve_app()
    job = await register(client)
    path = JOB_STREAM.format(collection=1, job=job["id"])
    async with stream(client, path) as reader:
        first = await reader.change()
    await report(client, job["id"], type="completed", seq=1)

    async with stream(client, f"{path}?last_event_id={first.id}") as reader:
        missed = await reader.rest()

    assert [m.job["status"] for m in missed] == ["completed"]


async def test_finished_job_reconnect_is_204(
    serve_app: ServeApp,
) -> None:
    client = await serve_app()
    job = await register(client)
    await report(client, job["id"], type="completed")
    path = JOB_STREAM.format(collection=1, job=job["id"])
    async with stream(client, path) as reader:
        last = (await reader.rest())[-1]

    response = await client.get(path, headers={"Last-Event-ID": last.id or ""})

    assert response.status_code == 204


@pytest.mark.parametrize(
    "value", ["abc", "1", "1-2-3", "-1-2", "99999999999999999999-1"]
)
async def test_malformed_last_event_id_is_400(serve_app: ServeApp, value: str) -> None:
    client = await serve_app()
    job = await register(client)

    response = await client.get(
        JOB_STREAM.format(collection=1, job=job["id"]),
        headers={"Last-Event-ID": value},
    )

    assert response.status_code == 400


async def test_last_event_id_from_the_future_is_400(serve_app: ServeApp) -> None:
    client = await serve_app()

    response = await client.get(
        COLLECTION_STREAM.format(collection=1),
        headers={"Last-Event-ID": "9999999999-1"},
    )

    assert response.status_code == 400


async def test_non_ascii_digits_in_position_are_400(serve_app: ServeApp) -> None:
    client = await serve_app()

    response = await client.get(
        COLLECTION_STREAM.format(collection=1),
        params={"last_event_id": "\uff11-\uff12"},
    )

    assert response.status_code == 400


async def test_malformed_last_event_id_names_the_header(serve_app: ServeApp) -> None:
    client = await serve_app()

    response = await client.get(
        COLLECTION_STREAM.format(collection=1), headers={"Last-Event-ID": "x"}
    )

    assert "Last-Event-ID" in response.json()["detail"]


# A collection's stream


async def test_collection_stream_starts_with_a_position(serve_app: ServeApp) -> None:
    client = await serve_app()

    async with stream(client, COLLECTION_STREAM.format(collection=1)) as reader:
        await reader.message()
        position = await reader.message()

    assert position is not None
    assert position.id is not None
    assert position.data is None


async def test_collection_stream_sends_changes_of_its_jobs_only(
    serve_app: ServeApp,
) -> None:
    client = await serve_app()
    async with stream(client, COLLECTION_STREAM.format(collection=1)) as reader:
        first = await register(client)
        await register(client, collection_id=2)
        second = await register(client)
        changes = [await reader.change(), await reader.change()]

    assert [m.job["id"] for m in changes] == [first["id"], second["id"]]


async def test_collection_reconnect_replays_what_was_missed(
    serve_app: ServeApp,
) -> None:
    client = await serve_app()
    async with stream(client, COLLECTION_STREAM.format(collection=1)) as reader:
        await reader.message()
        position = await reader.message()
    assert position is not None
    job = await register(client)
    await report(client, job["id"], type="started")

    async with stream(
        client,
        COLLECTION_STREAM.format(collection=1),
        **{"Last-Event-ID": position.id or ""},
    ) as reader:
        missed = [await reader.change(), await reader.change()]

    assert [m.job["status"] for m in missed] == ["pending", "processing"]


async def test_idle_stream_sends_keepalive_comments(serve_app: ServeApp) -> None:
    client = await serve_app(stream_keepalive_seconds=0.05)

    async with stream(client, COLLECTION_STREAM.format(collection=1)) as reader:
        await reader.message()
        await reader.message()
        keepalive = await reader.message()

    assert keepalive is not None
    assert keepalive.comments == ["keep-alive"]


async def test_stream_needs_an_api_token(serve_app: ServeApp) -> None:
    client = await serve_app(api_tokens=("api-token",), worker_tokens=("worker",))

    response = await client.get(COLLECTION_STREAM.format(collection=1))

    assert response.status_code == 401


# Replicas, order under lock waits, a lost listener, slow clients


async def test_stream_from_another_replica(serve_app: ServeApp) -> None:
    worker_side = await serve_app()
    reader_side = await serve_app()
    job = await register(worker_side)

    async with stream(
        reader_side, JOB_STREAM.format(collection=1, job=job["id"])
    ) as reader:
        await reader.change()
        await run_job(worker_side, job["id"])
        changes = await reader.rest()

    assert [m.job["status"] for m in changes][-1] == "completed"


async def test_other_replica_sees_every_change(serve_app: ServeApp) -> None:
    worker_side = await serve_app()
    reader_side = await serve_app()
    job = await register(worker_side)

    async with stream(
        reader_side, JOB_STREAM.format(collection=1, job=job["id"])
    ) as reader:
        await reader.change()
        await run_job(worker_side, job["id"])
        changes = await reader.rest()

    assert len(changes) == 5


async def test_job_order_survives_lock_wait(
    serve_app: ServeApp, database_url: str
) -> None:
    """A batch that got its transaction id first but waited for the job's lock."""
    client = await serve_app()
    first = await register(client)
    second = await register(client)
    engine = create_engine(database_url, pool_size=1)
    connection = await asyncpg.connect(database_url)
    try:
        transaction = connection.transaction()
        await transaction.start()
        # Takes a transaction id before the other job's change commits.
        await connection.execute(
            "SELECT 1 FROM ingestion_jobs WHERE id = $1 FOR UPDATE", first["id"]
        )
        await report(client, second["id"], type="started", seq=1)
        await apply_event(
            connection, second["id"], Event(type="progress", seq=2, current=1), "worker"
        )
        await transaction.commit()
    finally:
        await connection.close()
        await engine.dispose()

    async with stream(
        client, COLLECTION_STREAM.format(collection=1), **{"Last-Event-ID": "0-0"}
    ) as reader:
        changes = [await reader.change() for _ in range(4)]

    of_second = [
        m.job["progress"]["current"] for m in changes if m.job["id"] == second["id"]
    ]
    assert of_second == [0, 0, 1]


async def test_stream_survives_a_lost_listener(
    serve_app: ServeApp, database_url: str
) -> None:
    client = await serve_app()
    job = await register(client)
    async with stream(client, JOB_STREAM.format(collection=1, job=job["id"])) as reader:
        await reader.change()
        admin = await asyncpg.connect(database_url)
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query LIKE 'LISTEN%'"
            )
        finally:
            await admin.close()
        await report(client, job["id"], type="completed")
        changes = await reader.rest()

    assert [m.job["status"] for m in changes] == ["completed"]


async def test_slow_subscription_overflows() -> None:
    subscription = Subscription(1, None, asyncio.Queue(maxsize=2))

    for position in range(3):
        subscription.offer(_change(position + 1))

    assert subscription.overflowed


async def test_overflow_drops_buffer_for_replay() -> None:
    subscription = Subscription(1, None, asyncio.Queue(maxsize=2))
    for position in range(3):
        subscription.offer(_change(position + 1))

    drained = []
    while not subscription.buffer.empty():
        drained.append(subscription.buffer.get_nowait())

    assert drained == [None]


async def test_feed_overflows_a_subscription_nobody_reads(
    serve_app: ServeApp, database_url: str
) -> None:
    client = await serve_app()
    job = await register(client)
    engine = create_engine(database_url, pool_size=1)
    feed = ChangeFeed(engine, database_url, buffer_events=2, poll_seconds=0.05)
    await feed.start()
    try:
        subscription = feed.subscribe(1, job["id"])
        for seq in range(1, 6):
            await report(client, job["id"], type="progress", seq=seq, current=seq)
        async with asyncio.timeout(READ_TIMEOUT):
            while not subscription.overflowed:  # noqa: ASYNC110 - a plain flag
                await asyncio.sleep(0.02)
    finally:
        await feed.stop()
        await engine.dispose()

    assert subscription.buffer.get_nowait() is None


async def test_live_stream_ends_when_its_buffer_overflowed() -> None:
    subscription = Subscription(1, None, asyncio.Queue(maxsize=2))
    subscription.offer(_change(1))
    first = await subscription.buffer.get()
    for position in range(2, 5):
        subscription.offer(_change(position))

    sent = [message async for _, _, message in _live(subscription, Cursor(0, 0), 5)]

    # The client received 1-1 only, so its reconnect replays 1-2 onwards.
    assert first is not None
    assert sent == []


async def test_reconnect_waits_for_final_row_behind_open_transaction(
    serve_app: ServeApp, database_url: str
) -> None:
    client = await serve_app()
    job = await register(client)
    path = JOB_STREAM.format(collection=1, job=job["id"])
    async with stream(client, path) as reader:
        first = await reader.change()
    blocker = await asyncpg.connect(database_url)
    transaction = blocker.transaction()
    await transaction.start()
    try:
        # An older transaction keeps the completed row unreadable for a moment.
        await blocker.execute("SELECT pg_current_xact_id()")
        await report(client, job["id"], type="completed")
        async with stream(client, path, **{"Last-Event-ID": first.id or ""}) as reader:
            status_code = reader.response.status_code
            await transaction.rollback()
            missed = await reader.rest()
    finally:
        await blocker.close()

    assert status_code == 200
    assert [m.job["status"] for m in missed] == ["completed"]


def _change(position: int) -> Change:
    return Change(
        Cursor(1, position), 1, 1, "processing", f"id: 1-{position}\n\n".encode()
    )
