"""Processes that hold the open streams, so that reading them does not share a GIL.

A parent and its reader process talk over a pipe:

1. The reader opens its streams and sends ("opened", count), or ("failed", reason).
2. The parent sends ("drain", first_ns, last_ns, expected, timeout_seconds) once it
   has sent its last event.
3. The reader waits until it has received ``expected`` messages of events sent
   from ``first_ns`` to just before ``last_ns``, or until the timeout, then closes
   its streams and sends ("samples", sent, received, ended_early).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from bench.sse import Samples, SseProtocol, StreamError, request_bytes

OPEN_TIMEOUT_SECONDS = 60.0
# Streams a reader opens at once. Each job stream costs the tracker two queries, and
# its pool has 20 connections by default.
OPENING_CONCURRENCY = 20
DRAIN_POLL_SECONDS = 0.02
STOP_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """One stream to open: its kind (``sse.COLLECTION`` or ``sse.JOB``) and path."""

    kind: int
    path: str


async def _receive(connection: Connection) -> Any:
    """Wait on the event loop until the pipe is readable, then read one message."""
    loop = asyncio.get_running_loop()
    readable = loop.create_future()

    def wake() -> None:
        # The loop may call this again before the awaiting task removes the reader.
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(connection.fileno(), wake)
    try:
        await readable
    finally:
        loop.remove_reader(connection.fileno())
    return connection.recv()


async def _open(
    host: str, port: int, streams: Sequence[StreamSpec], samples: Samples
) -> list[SseProtocol]:
    loop = asyncio.get_running_loop()
    limit = asyncio.Semaphore(OPENING_CONCURRENCY)

    async def open_one(spec: StreamSpec) -> SseProtocol:
        request = request_bytes(host, port, spec.path)
        async with limit:
            _, protocol = await loop.create_connection(
                lambda: SseProtocol(request, spec.kind, samples), host, port
            )
            await protocol.opened
        return protocol

    async with asyncio.timeout(OPEN_TIMEOUT_SECONDS):
        return list(await asyncio.gather(*(open_one(spec) for spec in streams)))


def _count_between(samples: Samples, first_ns: int, last_ns: int) -> int:
    return sum(
        1 for sent in samples.sent for value in sent if first_ns <= value < last_ns
    )


async def _serve(
    connection: Connection, host: str, port: int, streams: Sequence[StreamSpec]
) -> None:
    samples = Samples()
    try:
        protocols = await _open(host, port, streams, samples)
    except (OSError, StreamError, TimeoutError) as exc:
        connection.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    connection.send(("opened", len(protocols)))

    try:
        _, first_ns, last_ns, expected, timeout = await _receive(connection)
    except EOFError:
        # The parent stopped before it sent its last event, as after an error.
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _count_between(samples, first_ns, last_ns) >= expected:
            break
        await asyncio.sleep(DRAIN_POLL_SECONDS)

    ended_early = sum(protocol.ended for protocol in protocols)
    for protocol in protocols:
        protocol.close()
    connection.send(("samples", samples.sent, samples.received, ended_early))


def reader_main(
    connection: Connection, host: str, port: int, streams: Sequence[StreamSpec]
) -> None:
    """Run one reader process: open ``streams``, record, and send the samples."""
    # Ctrl-C reaches the whole process group. The parent then closes the pipe,
    # which ends this process without a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_serve(connection, host, port, streams))


class ReaderProcess:
    """The parent's handle on one reader process."""

    def __init__(self, host: str, port: int, streams: Sequence[StreamSpec]) -> None:
        # spawn, not fork: the parent runs an event loop and helper threads.
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(
            target=reader_main,
            args=(child, host, port, list(streams)),
            name="bench-stream-reader",
            daemon=True,
        )
        self._process.start()
        child.close()
        self.streams = len(streams)

    @property
    def pid(self) -> int:
        pid = self._process.pid
        assert pid is not None, "the process has started"
        return pid

    async def opened(self) -> None:
        """Wait until every stream is open; raise StreamError if one failed."""
        message = await self._message()
        if message[0] != "opened":
            raise StreamError(
                f"a stream reader failed to open its streams: {message[1]}"
            )

    async def drain(
        self, first_ns: int, last_ns: int, expected: int, timeout_seconds: float
    ) -> tuple[Samples, int]:
        """Return the samples and the number of streams the tracker ended early."""
        self._connection.send(("drain", first_ns, last_ns, expected, timeout_seconds))
        _, sent, received, ended_early = await self._message()
        return Samples(sent, received), ended_early

    def stop(self) -> None:
        self._connection.close()
        self._process.join(STOP_TIMEOUT_SECONDS)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()

    async def _message(self) -> Any:
        try:
            return await _receive(self._connection)
        except EOFError:
            raise StreamError(
                f"a stream reader exited with status {self._process.exitcode} "
                "before it finished"
            ) from None
