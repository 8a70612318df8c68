"""The benchmark's stream fan-out: its SSE parser, and a small run on a real tracker."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from bench.fanout import FanoutOptions, measure_fanout
from bench.sse import COLLECTION, JOB, Samples, SseProtocol, StreamError, stamp
from bench.stack import running, tracker_environment

HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


def chunk(payload: bytes) -> bytes:
    return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"


def job_message(cursor: str, message: str | None) -> bytes:
    job = {"id": 7, "progress": {"current": 1, "total": 2, "message": message}}
    return f"id: {cursor}\ndata: {json.dumps(job)}\n\n".encode()


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True


async def open_protocol(kind: int = COLLECTION) -> tuple[SseProtocol, Samples]:
    samples = Samples()
    protocol = SseProtocol(b"GET / HTTP/1.1\r\n\r\n", kind, samples)
    protocol.connection_made(FakeTransport())
    return protocol, samples


async def test_sse_protocol_opens_on_first_id() -> None:
    protocol, _ = await open_protocol()

    protocol.data_received(HEAD + chunk(b"retry: 2000\n\n") + chunk(b"id: 5-1\n\n"))

    assert protocol.opened.done()


async def test_sse_protocol_records_stamped_messages() -> None:
    protocol, samples = await open_protocol(JOB)
    protocol.data_received(HEAD + chunk(job_message("5-1", None)))

    protocol.data_received(chunk(job_message("5-2", stamp(123))))

    assert list(samples.sent[JOB]) == [123]
    assert len(samples.received[JOB]) == 1


async def test_sse_protocol_skips_message_that_opens_stream() -> None:
    protocol, samples = await open_protocol(JOB)

    protocol.data_received(HEAD + chunk(job_message("5-1", stamp(99))))

    assert list(samples.sent[JOB]) == []


async def test_sse_protocol_joins_split_chunks() -> None:
    protocol, samples = await open_protocol()
    protocol.data_received(HEAD + chunk(b"id: 5-1\n\n"))
    framed = chunk(job_message("5-2", stamp(1))) + chunk(b": keep-alive\n\n")
    framed += chunk(job_message("5-3", stamp(2)))

    for position in range(0, len(framed), 7):
        protocol.data_received(framed[position : position + 7])

    assert list(samples.sent[COLLECTION]) == [1, 2]


async def test_sse_protocol_rejects_error_status() -> None:
    protocol, _ = await open_protocol()

    protocol.data_received(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")

    with pytest.raises(StreamError, match="404"):
        await protocol.opened


async def test_fanout_delivers_every_event(database_url: str, tmp_path: Path) -> None:
    env = tracker_environment(database_url, tmp_path)
    options = FanoutOptions(streams=5, rate=20, readers=2, warmup=0.2, seconds=0.5)

    async with (
        running("uvicorn", env, tmp_path / "tracker.log") as tracker,
        httpx.AsyncClient(base_url=tracker.base_url) as client,
    ):
        result = await measure_fanout(
            [client], options, tracker_pid=tracker.pid, postgres_pid=None
        )

    assert result.collection_streams == 4
    assert result.job_streams == 1
    assert result.post_latencies
    assert result.delivered == result.expected
    assert result.ended_early == 0
    assert min(result.delays[COLLECTION]) > 0
