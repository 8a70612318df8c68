"""Iterators over job changes that TrackerClient.watch() and its twins return.

WatchState in ``_watch`` makes every decision; these drivers only send its requests,
read the event stream and sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, Generator
from types import TracebackType
from typing import Self

import httpx

from ingestion_tracker_client._errors import TrackerConnectionError
from ingestion_tracker_client._models import Job
from ingestion_tracker_client._transport import AsyncHTTP, SyncHTTP, connection_error
from ingestion_tracker_client._watch import WatchRequest, WatchState


class _WatchBase:
    def __init__(self, state: WatchState, read_timeout: float | None) -> None:
        self._state = state
        self._read_timeout = read_timeout
        self._closed = False

    @property
    def last_event_id(self) -> str | None:
        """Cursor of the last change yielded, to resume from with ``last_event_id``.

        None until the stream sent one, and while polling, which has no cursors.
        """
        return self._state.last_event_id

    @property
    def mode(self) -> str:
        """``stream`` while following the event stream, ``poll`` once polling."""
        return "stream" if self._state.streaming else "poll"

    @property
    def closed(self) -> bool:
        return self._closed


class JobWatch(_WatchBase):
    """Blocking iterator of Jobs, one per change, from TrackerClient.watch().

    A job watch ends after the job reaches a terminal status; a collection watch
    runs until closed. Use it in a ``with`` block, or call ``close()``, which also
    works from another thread and ends a blocked read.
    """

    def __init__(
        self, http: SyncHTTP, state: WatchState, read_timeout: float | None
    ) -> None:
        super().__init__(state, read_timeout)
        self._http = http
        self._stop = threading.Event()
        self._response: httpx.Response | None = None
        self._jobs = self._run()

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> Job:
        return next(self._jobs)

    def close(self) -> None:
        """Stop watching and close the open connection; later calls do nothing."""
        self._closed = True
        self._stop.set()
        response = self._response
        if response is not None:
            response.close()
        # ValueError: another thread is iterating, and it stops at its next step.
        with contextlib.suppress(ValueError):
            self._jobs.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self) -> Generator[Job, None, None]:
        state = self._state
        while not state.done:
            request = state.next_request()
            if self._stop.wait(request.delay):
                return
            if request.stream:
                yield from self._follow(request)
            else:
                yield from self._poll(request)

    def _poll(self, request: WatchRequest) -> Generator[Job, None, None]:
        try:
            response = self._http.send(
                request.path, params=request.params, headers=request.headers
            )
        except TrackerConnectionError as exc:
            self._state.poll_failed(exc)
            return
        yield from self._state.polled(response)

    def _follow(self, request: WatchRequest) -> Generator[Job, None, None]:
        state = self._state
        try:
            response = self._http.send(
                request.path,
                headers=request.headers,
                stream=True,
                read_timeout=self._read_timeout,
            )
        except TrackerConnectionError as exc:
            state.connection_failed(exc)
            return
        self._response = response
        try:
            if state.accepts_stream(response):
                yield from self._messages(response)
            else:
                response.read()
                state.stream_refused(response)
        finally:
            self._response = None
            response.close()

    def _messages(self, response: httpx.Response) -> Generator[Job, None, None]:
        """Yield the jobs of an open event stream until it ends or the job is done."""
        state = self._state
        parser = state.new_parser()
        received = False
        error = None
        try:
            for chunk in response.iter_bytes():
                for event in parser.feed(chunk):
                    received = True
                    job = state.accept(event)
                    if job is not None:
                        yield job
                    if state.done:
                        return
                received |= state.synced(parser)
            for event in parser.end():
                received = True
                job = state.accept(event)
                if job is not None:
                    yield job
        except httpx.TransportError as exc:
            error = connection_error(exc, response.request)
        except Exception:
            # close() from another thread breaks the read with an error of its own.
            if self._stop.is_set():
                return
            raise
        received |= state.synced(parser)
        state.stream_ended(error, received)


class AsyncJobWatch(_WatchBase):
    """Asyncio iterator of Jobs, one per change, from AsyncTrackerClient.watch().

    Use it in an ``async with`` block, or await ``aclose()`` from the task that
    iterates, so the connection closes at once. It ends as JobWatch does.
    """

    def __init__(
        self, http: AsyncHTTP, state: WatchState, read_timeout: float | None
    ) -> None:
        super().__init__(state, read_timeout)
        self._http = http
        self._iterating = False
        self._jobs = self._run()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Job:
        self._iterating = True
        try:
            return await anext(self._jobs)
        finally:
            self._iterating = False

    async def aclose(self) -> None:
        """Stop watching and close the open connection; later calls do nothing.

        Called from a task other than the iterating one, it only marks the watch
        closed, and the iterating task stops before its next request.
        """
        self._closed = True
        if not self._iterating:
            await self._jobs.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _run(self) -> AsyncGenerator[Job, None]:
        state = self._state
        while not state.done and not self._closed:
            request = state.next_request()
            if request.delay:
                await asyncio.sleep(request.delay)
            if self._closed:
                return
            if request.stream:
                # aclosing() closes the inner generator, and with it the response,
                # when this one is closed mid-stream.
                async with contextlib.aclosing(self._follow(request)) as jobs:
                    async for job in jobs:
                        yield job
            else:
                for job in await self._poll(request):
                    yield job

    async def _poll(self, request: WatchRequest) -> list[Job]:
        try:
            response = await self._http.send(
                request.path, params=request.params, headers=request.headers
            )
        except TrackerConnectionError as exc:
            self._state.poll_failed(exc)
            return []
        return self._state.polled(response)

    async def _follow(self, request: WatchRequest) -> AsyncGenerator[Job, None]:
        state = self._state
        try:
            response = await self._http.send(
                request.path,
                headers=request.headers,
                stream=True,
                read_timeout=self._read_timeout,
            )
        except TrackerConnectionError as exc:
            state.connection_failed(exc)
            return
        try:
            if state.accepts_stream(response):
                async with contextlib.aclosing(self._messages(response)) as jobs:
                    async for job in jobs:
                        yield job
            else:
                await response.aread()
                state.stream_refused(response)
        finally:
            await response.aclose()

    async def _messages(self, response: httpx.Response) -> AsyncGenerator[Job, None]:
        """Yield the jobs of an open event stream until it ends or the job is done."""
        state = self._state
        parser = state.new_parser()
        received = False
        error = None
        try:
            async for chunk in response.aiter_bytes():
                for event in parser.feed(chunk):
                    received = True
                    job = state.accept(event)
                    if job is not None:
                        yield job
                    if state.done or self._closed:
                        return
                received |= state.synced(parser)
                if self._closed:
                    return
            for event in parser.end():
                received = True
                job = state.accept(event)
                if job is not None:
                    yield job
        except httpx.TransportError as exc:
            error = connection_error(exc, response.request)
        received |= state.synced(parser)
        state.stream_ended(error, received)
