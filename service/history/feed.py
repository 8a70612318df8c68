"""Fan the history out to open streams, on every replica, in commit order.

Each replica runs one ChangeFeed. It LISTENs for the recorder's notifications on a
connection of its own, reads the history rows committed since its cursor in one query,
and hands each row to the streams that follow its job or collection. Notifications are
only a wake-up: the rows come from the table, so a notification lost while the
listening connection was down costs latency (the feed also polls), never a change.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import asyncpg
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from service.errors import InvalidInput
from service.history.recorder import NOTIFY_CHANNEL
from service.limits import BIGINT_MAX
from service.store.engine import driver_connection

logger = structlog.get_logger(__name__)

TERMINAL_STATUSES: Final = frozenset({"completed", "failed", "cancelled", "deleted"})
READ_BATCH = 1000
# A row committed behind a transaction that is still running becomes readable when
# that transaction ends, which sends no notification when it wrote no history.
DEFERRED_POLL_SECONDS = 0.02
LISTEN_RETRY_MAX_SECONDS = 10.0

_CURSOR = re.compile(r"([0-9]{1,19})-([0-9]{1,19})")
_HORIZON = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
_ROW_COLUMNS = "tx, id, job_id, collection_id, status::text AS status, job::text AS job"

# Rows after a cursor, each marked pending while a transaction older than it runs.
READ_AFTER = (
    f"SELECT {_ROW_COLUMNS}, tx >= horizon AS pending "  # noqa: S608
    f"FROM ingestion_job_history, (SELECT {_HORIZON} AS horizon) AS snapshot "
    "WHERE (tx, id) > ($1, $2) ORDER BY tx, id LIMIT $3"
)
REPLAY_JOB = (
    f"SELECT {_ROW_COLUMNS} FROM ingestion_job_history "  # noqa: S608
    f"WHERE job_id = $1 AND (tx, id) > ($2, $3) AND tx < {_HORIZON} "
    "ORDER BY tx, id LIMIT $4"
)
REPLAY_COLLECTION = (
    f"SELECT {_ROW_COLUMNS} FROM ingestion_job_history "  # noqa: S608
    f"WHERE collection_id = $1 AND (tx, id) > ($2, $3) AND tx < {_HORIZON} "
    "ORDER BY tx, id LIMIT $4"
)
LATEST_OF_JOB = (
    f"SELECT {_ROW_COLUMNS} FROM ingestion_job_history "  # noqa: S608
    f"WHERE job_id = $1 AND tx < {_HORIZON} ORDER BY tx DESC, id DESC LIMIT 1"
)
NEWEST_OF_JOB = (
    "SELECT tx, id FROM ingestion_job_history "
    "WHERE job_id = $1 ORDER BY tx DESC, id DESC LIMIT 1"
)
LATEST_READABLE = (
    "SELECT tx, id FROM ingestion_job_history "  # noqa: S608
    f"WHERE tx < {_HORIZON} ORDER BY tx DESC, id DESC LIMIT 1"
)


@dataclass(frozen=True, slots=True, order=True)
class Cursor:
    """A position in the history: the ordering key and id of the last row seen."""

    tx: int
    id: int

    def __str__(self) -> str:
        return f"{self.tx}-{self.id}"

    @classmethod
    def parse(cls, value: str, source: str) -> Cursor:
        """Read a cursor a client sent back; raise InvalidInput naming ``source``."""
        match = _CURSOR.fullmatch(value.strip())
        if match is None or max(int(match[1]), int(match[2])) > BIGINT_MAX:
            preview = value if len(value) <= 40 else value[:40] + "…"
            raise InvalidInput(
                f"Invalid {source}: {preview!r} is not a stream position; send back "
                "the id of the last message received, two numbers joined by '-' such "
                "as '8123-455'"
            )
        return cls(int(match[1]), int(match[2]))


START: Final = Cursor(0, 0)


def sse_message(cursor: Cursor, job_json: str) -> bytes:
    """Encode one server-sent event: the history position as id, the job as data."""
    return f"id: {cursor}\ndata: {job_json}\n\n".encode()


@dataclass(frozen=True, slots=True)
class Change:
    """One history row, ready to send: its position, job and SSE message bytes."""

    cursor: Cursor
    job_id: int
    collection_id: int
    status: str
    message: bytes

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Change:
        cursor = Cursor(row["tx"], row["id"])
        message = sse_message(cursor, row["job"])
        return cls(cursor, row["job_id"], row["collection_id"], row["status"], message)


@dataclass(eq=False, slots=True)
class Subscription:
    """The changes one open stream waits for, in a bounded buffer.

    A stream that cannot keep up overflows its buffer. It then ends, and its client
    reconnects with the id of the last message it got, which replays from the table
    instead of from memory.
    """

    collection_id: int
    job_id: int | None
    buffer: asyncio.Queue[Change | None]
    overflowed: bool = False

    def offer(self, change: Change) -> None:
        if self.overflowed:
            return
        try:
            self.buffer.put_nowait(change)
        except asyncio.QueueFull:
            self.close()

    def close(self) -> None:
        """End the stream after what it already sent, as on overflow or shutdown.

        The buffered changes are dropped with it: the client's reconnect replays them
        from the table, after the last id it received.
        """
        self.overflowed = True
        while not self.buffer.empty():
            self.buffer.get_nowait()
        self.buffer.put_nowait(None)


class ChangeFeed:
    """One replica's reader of the history, shared by all of its open streams."""

    def __init__(
        self,
        engine: AsyncEngine,
        database_url: str,
        *,
        buffer_events: int,
        poll_seconds: float = 1.0,
    ) -> None:
        self._engine = engine
        self._database_url = database_url
        self._buffer_events = buffer_events
        self._poll_seconds = poll_seconds
        self._cursor = START
        self._wake = asyncio.Event()
        self._by_collection: defaultdict[int, set[Subscription]] = defaultdict(set)
        self._tasks: list[asyncio.Task[None]] = []
        self._listener: asyncpg.Connection | None = None
        self._stopped = False

    @property
    def cursor(self) -> Cursor:
        """The position of the last row this feed handed out."""
        return self._cursor

    async def start(self) -> None:
        """Start at the newest readable row; listen and read in the background."""
        async with driver_connection(self._engine) as connection:
            row = await connection.fetchrow(LATEST_READABLE)
        if row is not None:
            self._cursor = Cursor(row["tx"], row["id"])
        self._tasks = [
            asyncio.create_task(self._listen(), name="change-feed-listener"),
            asyncio.create_task(self._read_forever(), name="change-feed-reader"),
        ]
        logger.info("change_feed_started", cursor=str(self._cursor))

    def end_streams(self) -> None:
        """End every open stream after what it sent, and each one opened from now."""
        self._stopped = True
        for subscriptions in self._by_collection.values():
            for subscription in subscriptions:
                subscription.close()
        self._by_collection.clear()

    async def stop(self) -> None:
        """Stop reading and end every open stream."""
        self.end_streams()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        logger.info("change_feed_stopped", cursor=str(self._cursor))

    def subscribe(self, collection_id: int, job_id: int | None) -> Subscription:
        """Register a stream; once the feed stopped, the stream ends at once."""
        subscription = Subscription(
            collection_id, job_id, asyncio.Queue(maxsize=self._buffer_events)
        )
        if self._stopped:
            subscription.close()
            return subscription
        self._by_collection[collection_id].add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscriptions = self._by_collection.get(subscription.collection_id)
        if subscriptions is None:
            return
        subscriptions.discard(subscription)
        if not subscriptions:
            del self._by_collection[subscription.collection_id]

    def wake(self) -> None:
        self._wake.set()

    async def read_once(self) -> bool:
        """Hand out the rows readable since the cursor; True if some must wait."""
        while True:
            async with driver_connection(self._engine) as connection:
                rows = await connection.fetch(
                    READ_AFTER, self._cursor.tx, self._cursor.id, READ_BATCH
                )
            for row in rows:
                if row["pending"]:
                    return True
                change = Change.from_row(row)
                self._dispatch(change)
                self._cursor = change.cursor
            if len(rows) < READ_BATCH:
                return False

    def _dispatch(self, change: Change) -> None:
        for subscription in self._by_collection.get(change.collection_id, ()):
            if subscription.job_id is None or subscription.job_id == change.job_id:
                subscription.offer(change)

    async def _read_forever(self) -> None:
        failures = 0
        deferred = False
        while True:
            timeout = DEFERRED_POLL_SECONDS if deferred else self._poll_seconds
            # Not asyncio.wait_for: on Python 3.11 under the test client, a cancelled
            # wait_for here was seen to leave the task cancelling for ever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            self._wake.clear()
            try:
                deferred = await self.read_once()
                failures = 0
            except Exception:
                failures += 1
                logger.exception(
                    "change_feed_read_failed",
                    cursor=str(self._cursor),
                    consecutive_failures=failures,
                )
                await asyncio.sleep(min(self._poll_seconds * 2**failures, 10.0))

    async def _listen(self) -> None:
        """Keep a LISTEN connection open, reconnecting with backoff when it drops."""
        failures = 0
        while True:
            lost = asyncio.Event()
            try:
                self._listener = await asyncpg.connect(self._database_url)
                self._listener.add_termination_listener(_setter(lost))
                await self._listener.add_listener(NOTIFY_CHANNEL, self._notified)
            except Exception:
                failures += 1
                delay = min(2**failures * 0.1, LISTEN_RETRY_MAX_SECONDS)
                logger.warning(
                    "change_feed_listen_failed", retry_in_seconds=delay, exc_info=True
                )
                await self._close_listener()
                await asyncio.sleep(delay)
                continue
            if failures:
                logger.info("change_feed_listening_again", after_failures=failures)
            failures = 0
            # Read the rows committed while the listener was disconnected.
            self.wake()
            try:
                await lost.wait()
                logger.warning("change_feed_listener_lost")
            finally:
                await self._close_listener()

    async def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None and not listener.is_closed():
            with contextlib.suppress(Exception):
                await listener.close(timeout=2)

    def _notified(self, *_: object) -> None:
        self._wake.set()


def _setter(event: asyncio.Event) -> Callable[[object], None]:
    def set_event(_: object) -> None:
        event.set()

    return set_event


async def replay(
    engine: AsyncEngine,
    after: Cursor,
    *,
    collection_id: int,
    job_id: int | None,
) -> list[Change]:
    """Return one page of readable rows after ``after`` for a job or a collection."""
    async with driver_connection(engine) as connection:
        if job_id is not None:
            rows: Sequence[asyncpg.Record] = await connection.fetch(
                REPLAY_JOB, job_id, after.tx, after.id, READ_BATCH
            )
        else:
            rows = await connection.fetch(
                REPLAY_COLLECTION, collection_id, after.tx, after.id, READ_BATCH
            )
    return [Change.from_row(row) for row in rows]


NEXT_TRANSACTION = "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"


async def check_not_ahead(engine: AsyncEngine, after: Cursor, source: str) -> None:
    """Raise InvalidInput for a position no transaction of this database reached yet.

    Such a position comes from another database, or from before a restore; a
    stream resumed from it would wait for ever.
    """
    async with driver_connection(engine) as connection:
        next_transaction: int = await connection.fetchval(NEXT_TRANSACTION)
    if after.tx >= next_transaction:
        raise InvalidInput(
            f"Invalid {source}: {after} is ahead of this tracker's history, so it "
            "comes from another database or from before a restore; reconnect "
            "without it to start from the current state"
        )


async def has_rows_after(engine: AsyncEngine, job_id: int, after: Cursor) -> bool:
    """Tell whether the job has history after ``after``, readable yet or not."""
    async with driver_connection(engine) as connection:
        row = await connection.fetchrow(NEWEST_OF_JOB, job_id)
    return row is not None and Cursor(row["tx"], row["id"]) > after


async def latest_of_job(engine: AsyncEngine, job_id: int) -> Change | None:
    """Return the job's newest readable row, or None when it has none yet."""
    async with driver_connection(engine) as connection:
        row = await connection.fetchrow(LATEST_OF_JOB, job_id)
    return None if row is None else Change.from_row(row)
