"""A scripted tracker behind MockTransport: event streams and poll responses."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import msgspec

Answer = Callable[[httpx.Request], httpx.Response]


def job_json(
    status: str = "processing", current: int = 0, **fields: Any
) -> dict[str, Any]:
    """Job 5 of collection 1 as the tracker sends it, with a field this SDK lacks."""
    return {
        "id": 5,
        "job_id": 5,
        "collection_id": 1,
        "status": status,
        "attempt": 1,
        "plugin_name": "simple_ingest",
        "progress": {"current": current, "total": 4, "percentage": current * 25.0},
        "updated_at": "2026-01-01T10:00:00Z",
        "stalled": False,
        "field_from_a_newer_tracker": [1, 2],
        **fields,
    }


def message(cursor: str, status: str = "processing", **fields: Any) -> str:
    data = msgspec.json.encode(job_json(status, **fields)).decode()
    return f"id: {cursor}\ndata: {data}\n\n"


class Body(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body sent in chunks that may break off or block until closed.

    ``drop`` raises httpx.ReadError after the last chunk, as a reset connection
    does. ``hold`` keeps the body open after the last chunk until it is closed.
    """

    def __init__(self, chunks: list[bytes], *, drop: bool, hold: bool) -> None:
        self.chunks = chunks
        self.drop = drop
        self.hold = hold
        self.closed = threading.Event()
        self._async_closed: asyncio.Event | None = None

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        if self.hold:
            self.closed.wait(5)
        if self.drop:
            raise httpx.ReadError("connection reset by peer")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.hold:
            self._async_closed = asyncio.Event()
            async with asyncio.timeout(5):
                await self._async_closed.wait()
        if self.drop:
            raise httpx.ReadError("connection reset by peer")

    def close(self) -> None:
        self.closed.set()

    async def aclose(self) -> None:
        self.closed.set()
        if self._async_closed is not None:
            self._async_closed.set()


class ScriptedTracker:
    """Return response n to request n, repeating the last, and record both."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.bodies: list[Body] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        index = min(len(self.requests), len(self.answers) - 1)
        self.requests.append(request)
        response = self.answers[index](request)
        if isinstance(response.stream, Body):
            self.bodies.append(response.stream)
        return response

    def header(self, index: int, name: str) -> str | None:
        return self.requests[index].headers.get(name)

    def paths(self) -> list[str]:
        return [request.url.path for request in self.requests]


def stream(
    *messages: str, drop: bool = False, hold: bool = False, retry: int | None = 0
) -> Answer:
    """Build a response that sends an event stream of ``messages``, one per chunk.

    ``retry`` is sent first, 0 by default so reconnects in tests do not wait.
    """
    head = [] if retry is None else [f"retry: {retry}\n\n"]
    chunks = [text.encode() for text in [*head, *messages]]

    def answer(request: httpx.Request) -> httpx.Response:
        body = Body(list(chunks), drop=drop, hold=hold)
        headers = {"content-type": "text/event-stream; charset=utf-8"}
        return httpx.Response(200, headers=headers, stream=body)

    return answer


def status(code: int, detail: str = "Not Found", **headers: str) -> Answer:
    def answer(request: httpx.Request) -> httpx.Response:
        body = {"status_code": code, "detail": detail}
        return httpx.Response(code, json=body, headers=headers)

    return answer


def empty(code: int, **headers: str) -> Answer:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(code, headers=headers)

    return answer


def job_answer(
    status: str = "processing", etag: str | None = None, **fields: Any
) -> Answer:
    def answer(request: httpx.Request) -> httpx.Response:
        headers = {} if etag is None else {"ETag": etag}
        return httpx.Response(200, json=job_json(status, **fields), headers=headers)

    return answer


def page_answer(
    jobs: list[dict[str, Any]], has_more: bool = False, etag: str | None = None
) -> Answer:
    def answer(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params.get("offset", 0))
        body = {
            "total": len(jobs),
            "items": jobs,
            "limit": 100,
            "offset": offset,
            "has_more": has_more,
        }
        headers = {} if etag is None else {"ETag": etag}
        return httpx.Response(200, json=body, headers=headers)

    return answer
