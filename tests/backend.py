"""A real HTTP server on loopback that plays the knowledge-base backend in tests."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from typing import Any

import uvicorn


@dataclass
class ReceivedRequest:
    """One request the fake backend received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeBackend:
    """Returns scripted status codes to ingest requests and serves stored files.

    ``statuses`` is consumed one code per ingest request; once empty, requests get 202.
    """

    statuses: list[int] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    received: list[ReceivedRequest] = field(default_factory=list)
    port: int = 0
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ingest_requests(self) -> list[ReceivedRequest]:
        return [request for request in self.received if request.method == "POST"]

    async def start(self) -> None:
        config = uvicorn.Config(
            self._app,
            host="127.0.0.1",
            port=0,
            lifespan="off",
            log_config=None,
            interface="asgi3",
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:  # noqa: ASYNC110 - uvicorn exposes no start event
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        assert self._task is not None
        self._server.should_exit = True
        await self._task

    async def wait_for_ingest_requests(self, count: int) -> None:
        """Wait up to 10 seconds until at least ``count`` ingest requests arrived."""
        async with asyncio.timeout(10):
            while len(self.ingest_requests) < count:
                await self._arrived.wait()
                self._arrived.clear()

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {
            key.decode().lower(): value.decode() for key, value in scope["headers"]
        }
        request = ReceivedRequest(scope["method"], scope["path"], headers, body)
        self.received.append(request)
        self._arrived.set()

        if request.method == "GET":
            content = self.files.get(request.path)
            status = 200 if content is not None else 404
            await self._answer(send, status, content or b"not found", "text/plain")
            return
        status = self.statuses.pop(0) if self.statuses else 202
        await self._answer(
            send, status, b'{"detail": "scripted answer"}', "application/json"
        )

    @staticmethod
    async def _answer(send: Any, status: int, body: bytes, content_type: str) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", content_type.encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


def closed_port_url() -> str:
    """Return a loopback URL on a port that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
