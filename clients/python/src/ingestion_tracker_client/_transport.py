"""The HTTP layer that every client shares: options, auth, error mapping, decoding."""

from __future__ import annotations

from typing import Any, TypeVar

import httpx
import msgspec

from ingestion_tracker_client._errors import (
    InvalidResponse,
    TrackerConnectionError,
    error_for_response,
)
from ingestion_tracker_client._events import scrub

__version__ = "0.1.0"
USER_AGENT = f"ingestion-tracker-client/{__version__}"
DEFAULT_TIMEOUT = 10.0

T = TypeVar("T")
Params = dict[str, str | int]


def _client_options(
    base_url: str, token: str | None, timeout: float | None
) -> dict[str, Any]:
    """Check the options every client takes and build httpx's keyword arguments."""
    if not base_url.startswith(("http://", "https://")):
        raise ValueError(
            f"base_url must start with http:// or https://, got {base_url!r}"
        )
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be a number of seconds above 0, got {timeout}")
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return {"base_url": base_url, "headers": headers, "timeout": timeout}


def _encode(body: object) -> bytes | None:
    if body is None:
        return None
    try:
        return msgspec.json.encode(body)
    except UnicodeEncodeError:
        return msgspec.json.encode(scrub(msgspec.to_builtins(body)))


def _content_headers(content: bytes | None) -> dict[str, str] | None:
    return None if content is None else {"Content-Type": "application/json"}


def connection_error(
    exc: httpx.TransportError, request: httpx.Request
) -> TrackerConnectionError:
    """Translate an httpx transport failure into the SDK's connection error."""
    if isinstance(exc, httpx.TimeoutException):
        outcome = f"timed out ({type(exc).__name__})"
    else:
        outcome = f"failed: {type(exc).__name__}: {exc}"
    return TrackerConnectionError(
        f"{request.method} {request.url} {outcome}; check that the tracker is running "
        "and reachable at this URL",
        request=request,
    )


def _checked(response: httpx.Response) -> httpx.Response:
    if response.is_error:
        raise error_for_response(response)
    return response


def _timeout_option(timeout: float | None) -> Any:
    """Return the per-request timeout, or httpx's marker for the client's own."""
    return httpx.USE_CLIENT_DEFAULT if timeout is None else timeout


def _read_timeout_option(client_timeout: httpx.Timeout, read: float | None) -> Any:
    """Return the client's timeout with the time allowed between reads replaced."""
    if read is None:
        return httpx.USE_CLIENT_DEFAULT
    return httpx.Timeout(
        connect=client_timeout.connect,
        read=read,
        write=client_timeout.write,
        pool=client_timeout.pool,
    )


class _Closable:
    """The closed-client check of both flavours."""

    def __init__(self, owner: str) -> None:
        self._owner = owner
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self, method: str, path: str) -> None:
        if self._closed:
            raise RuntimeError(
                f"Cannot send {method} {path} because this {self._owner} is closed; "
                f"create a new {self._owner}, or send requests before close()."
            )


class SyncHTTP(_Closable):
    """Blocking requests to the tracker, raising the SDK's exceptions."""

    def __init__(
        self,
        *,
        owner: str,
        base_url: str,
        token: str | None,
        timeout: float | None,
        transport: httpx.BaseTransport | None,
    ) -> None:
        super().__init__(owner)
        options = _client_options(base_url, token, timeout)
        self._client = httpx.Client(transport=transport, **options)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        body: object = None,
        request_timeout: float | None = None,
    ) -> httpx.Response:
        """Send a request and return its 2xx response."""
        self._check_open(method, path)
        content = _encode(body)
        request = self._client.build_request(
            method,
            path,
            params=params,
            content=content,
            headers=_content_headers(content),
            timeout=_timeout_option(request_timeout),
        )
        try:
            response = self._client.send(request)
        except httpx.TransportError as exc:
            raise connection_error(exc, request) from exc
        return _checked(response)

    def send(
        self,
        path: str,
        *,
        params: Params | None = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        read_timeout: float | None = None,
    ) -> httpx.Response:
        """Send a GET and return the response whatever its status.

        With ``stream`` the body is left unread, and the caller must close the
        response. ``read_timeout`` replaces the client's timeout between two reads.
        """
        self._check_open("GET", path)
        request = self._client.build_request(
            "GET",
            path,
            params=params,
            headers=headers,
            timeout=_read_timeout_option(self._client.timeout, read_timeout),
        )
        try:
            return self._client.send(request, stream=stream)
        except httpx.TransportError as exc:
            raise connection_error(exc, request) from exc

    def close(self) -> None:
        self._closed = True
        self._client.close()


class AsyncHTTP(_Closable):
    """Asyncio requests to the tracker, raising the SDK's exceptions."""

    def __init__(
        self,
        *,
        owner: str,
        base_url: str,
        token: str | None,
        timeout: float | None,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        super().__init__(owner)
        options = _client_options(base_url, token, timeout)
        self._client = httpx.AsyncClient(transport=transport, **options)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        body: object = None,
        request_timeout: float | None = None,
    ) -> httpx.Response:
        """Send a request and return its 2xx response."""
        self._check_open(method, path)
        content = _encode(body)
        request = self._client.build_request(
            method,
            path,
            params=params,
            content=content,
            headers=_content_headers(content),
            timeout=_timeout_option(request_timeout),
        )
        try:
            response = await self._client.send(request)
        except httpx.TransportError as exc:
            raise connection_error(exc, request) from exc
        return _checked(response)

    async def send(
        self,
        path: str,
        *,
        params: Params | None = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        read_timeout: float | None = None,
    ) -> httpx.Response:
        """Send a GET and return the response whatever its status; see SyncHTTP."""
        self._check_open("GET", path)
        request = self._client.build_request(
            "GET",
            path,
            params=params,
            headers=headers,
            timeout=_read_timeout_option(self._client.timeout, read_timeout),
        )
        try:
            return await self._client.send(request, stream=stream)
        except httpx.TransportError as exc:
            raise connection_error(exc, request) from exc

    async def aclose(self) -> None:
        self._closed = True
        await self._client.aclose()


def decode(response: httpx.Response, kind: type[T]) -> T:
    """Decode a 2xx response body as ``kind``, or raise InvalidResponse."""
    try:
        return msgspec.json.decode(response.content, type=kind)
    except msgspec.DecodeError as exc:  # msgspec.ValidationError is one too
        request = response.request
        raise InvalidResponse(
            f"{request.method} {request.url} returned {response.status_code} with a "
            f"body that is not a valid {kind.__name__}: {exc}",
            request=request,
        ) from exc
