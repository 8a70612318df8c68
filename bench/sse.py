"""Server-sent event readers on raw sockets, which record each message's delay.

Several hundred streams that each receive every event add up to thousands of
messages a second, read on the same cores as the tracker. So each stream here is an
asyncio protocol that parses HTTP/1.1 chunked framing and SSE messages itself, which
costs less CPU than httpx's line iterator, and decodes only the field that carries
the send time.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from dataclasses import dataclass, field

import msgspec

# The progress message of each benchmark event: this prefix and then the sender's
# time.monotonic_ns() just before the POST. On Linux that clock is CLOCK_MONOTONIC,
# which every process of the machine shares, so a reader process can subtract it.
STAMP_PREFIX = "bench-sent-ns="
COLLECTION, JOB = 0, 1


class _Progress(msgspec.Struct):
    message: str | None = None


class _StreamedJob(msgspec.Struct):
    """The field of a streamed job that carries the send time."""

    progress: _Progress


_decode_job = msgspec.json.Decoder(_StreamedJob).decode


def stamp(sent_ns: int) -> str:
    """Return the progress message that carries a send time."""
    return f"{STAMP_PREFIX}{sent_ns}"


def read_stamp(data: bytes) -> int | None:
    """Return the send time in a streamed job's JSON, or None if it has none."""
    message = _decode_job(data).progress.message
    if message is None or not message.startswith(STAMP_PREFIX):
        return None
    return int(message[len(STAMP_PREFIX) :])


@dataclass(slots=True)
class Samples:
    """Send and receive times, in monotonic nanoseconds, of each kind of stream."""

    sent: tuple[array[int], array[int]] = field(
        default_factory=lambda: (array("q"), array("q"))
    )
    received: tuple[array[int], array[int]] = field(
        default_factory=lambda: (array("q"), array("q"))
    )

    def add(self, kind: int, sent_ns: int, received_ns: int) -> None:
        self.sent[kind].append(sent_ns)
        self.received[kind].append(received_ns)


class StreamError(RuntimeError):
    """A stream returned something other than an open event stream."""


class SseProtocol(asyncio.Protocol):
    """One open stream: sends the GET, then records every stamped message.

    The first message with an id (the id-only message of a collection stream, or
    the job as it is on a job stream) marks the stream as open. Messages before
    it are not recorded.
    """

    def __init__(self, request: bytes, kind: int, samples: Samples) -> None:
        self.kind = kind
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ended = False
        self._request = request
        self._samples = samples
        self._head = b""
        self._chunked: bool | None = None
        self._framed = bytearray()
        self._text = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        received_ns = time.monotonic_ns()
        try:
            if self._chunked is None:
                data = self._read_head(data)
                if self._chunked is None:
                    return
            if self._chunked:
                self._framed += data
                self._unchunk()
            else:
                self._text += data
            self._read_messages(received_ns)
        except (StreamError, ValueError, msgspec.DecodeError) as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        if not self.opened.done():
            reason = exc or StreamError(
                "the tracker closed the stream before it opened"
            )
            self.opened.set_exception(reason)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _fail(self, exc: Exception) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
        self.close()

    def _read_head(self, data: bytes) -> bytes:
        """Read the status line and headers; return the body bytes after them."""
        self._head += data
        head, separator, rest = self._head.partition(b"\r\n\r\n")
        if not separator:
            return b""
        status_line, *headers = head.decode("latin-1").split("\r\n")
        if status_line.split(" ", 2)[1:2] != ["200"]:
            raise StreamError(f"the stream returned {status_line!r}, expected 200")
        names = {line.partition(":")[0].strip().lower(): line for line in headers}
        content_type = names.get("content-type", "").lower()
        if "text/event-stream" not in content_type:
            raise StreamError(
                f"the stream returned {content_type or 'no content type'}"
            )
        encoding = names.get("transfer-encoding", "").lower()
        self._chunked = "chunked" in encoding
        self._head = b""
        return rest

    def _unchunk(self) -> None:
        """Move every complete chunk's payload from the framed to the text buffer."""
        while True:
            line_end = self._framed.find(b"\r\n")
            if line_end < 0:
                return
            size = int(bytes(self._framed[:line_end]).split(b";")[0], 16)
            if size == 0:
                self.close()
                return
            start = line_end + 2
            end = start + size
            if len(self._framed) < end + 2:
                return
            self._text += self._framed[start:end]
            del self._framed[: end + 2]

    def _read_messages(self, received_ns: int) -> None:
        while True:
            end = self._text.find(b"\n\n")
            if end < 0:
                return
            message = bytes(self._text[:end])
            del self._text[: end + 2]
            self._read_message(message, received_ns)

    def _read_message(self, message: bytes, received_ns: int) -> None:
        data: bytes | None = None
        has_id = False
        for line in message.split(b"\n"):
            if line.startswith(b"data: "):
                data = line[6:]
            elif line.startswith(b"id: "):
                has_id = True
        if not self.opened.done():
            if has_id:
                self.opened.set_result(None)
            return
        if data is None:
            return
        sent_ns = read_stamp(data)
        if sent_ns is not None:
            self._samples.add(self.kind, sent_ns, received_ns)


def request_bytes(host: str, port: int, path: str) -> bytes:
    """Return the GET request of a stream, as a browser's EventSource sends it."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
    ).encode()
