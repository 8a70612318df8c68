"""The whole benchmark: start the stack, measure each scenario, print the tables."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import AsyncIterator, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

import httpx

from bench import machine
from bench.fanout import SENDERS, FanoutOptions, measure_fanout
from bench.measure import CpuMeter, Result, measure
from bench.report import (
    SHARED_CORES_NOTE,
    busy_note,
    comparison_table,
    fanout_notes,
    fanout_table,
    results_table,
)
from bench.scenarios import (
    UNKNOWN_PATH,
    event_batch,
    get_job,
    raw_pool,
    raw_update,
    single_event,
    unknown_path,
)
from bench.stack import (
    SERVERS,
    Database,
    ServerName,
    database,
    migrate,
    running,
    tracker_environment,
)
from bench.workers import Worker, register_workers

# Leaves room below PostgreSQL's default max_connections of 100 for the tracker's
# pool, which opens up to 20 connections by default.
RAW_POOL_MAX = 60
REQUEST_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """Settings from the command line, with durations in seconds."""

    duration: float
    warmup: float
    workers: int
    batch_size: int
    server: ServerName | Literal["both"]
    repeat: int
    # Streams of the fan-out scenario, 0 to skip it, and events per second.
    streams: int
    stream_rate: float
    stream_readers: int


@dataclass(frozen=True, slots=True)
class _Stack:
    database: Database
    env: dict[str, str]
    work_dir: Path

    def log_path(self, server: ServerName) -> Path:
        return self.work_dir / f"{server}.log"


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _print_table(table: str, note: str) -> None:
    print(table)
    if note:
        print(note)
    print()


@asynccontextmanager
async def _clients(
    base_url: str, workers: int
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Yield one HTTP/1.1 client per worker, each keeping its connection open.

    Each worker process of a backend has a client of its own. On a 2-core machine,
    one client shared by 50 workers reached a third to a half of this rate, because
    httpx's connection pool then used most of the load generator's CPU.
    """
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with AsyncExitStack() as exits:
        clients = [
            await exits.enter_async_context(
                httpx.AsyncClient(
                    base_url=base_url, limits=limits, timeout=REQUEST_TIMEOUT_SECONDS
                )
            )
            for _ in range(workers)
        ]
        yield clients


def _runner(
    options: Options, workers: list[Worker], tracker_pid: int, stack: _Stack
) -> partial[Coroutine[Any, Any, Result]]:
    """Return ``measure`` with the load, durations and CPU meter of this run."""
    return partial(
        measure,
        workers=workers,
        warmup_seconds=options.warmup,
        seconds=options.duration,
        meter=CpuMeter(tracker_pid, stack.database.postmaster_pid()),
    )


async def _measure_ceiling(
    run: partial[Coroutine[Any, Any, Result]], options: Options, stack: _Stack
) -> Result:
    _progress("measuring the raw UPDATE ceiling")
    size = min(options.workers, RAW_POOL_MAX)
    async with raw_pool(stack.database.url, size) as pool:
        return await run(
            "raw UPDATE, asyncpg", raw_update(pool), events_per_operation=1
        )


async def _run_table(
    options: Options, server: ServerName, stack: _Stack
) -> list[Worker]:
    """Measure every scenario against one tracker and print the results table."""
    async with (
        running(server, stack.env, stack.log_path(server)) as tracker,
        _clients(tracker.base_url, options.workers) as clients,
    ):
        _progress(f"registering {options.batch_size} jobs per worker")
        workers = await register_workers(clients, options.batch_size)
        run = _runner(options, workers, tracker.pid, stack)
        ceiling = await _measure_ceiling(run, options, stack)

        _progress(f"measuring single events, batches and reads under {server}")
        single = await run(
            f"single event, {server}", single_event(clients), events_per_operation=1
        )
        batch = await run(
            f"batch of {options.batch_size}, {server}",
            event_batch(clients, options.batch_size),
            events_per_operation=options.batch_size,
        )
        read = await run(f"GET job, {server}", get_job(clients), events_per_operation=0)

    results = [single, batch, read, ceiling]
    _print_table(results_table(results, ceiling), busy_note(results))
    return workers


@dataclass(frozen=True, slots=True)
class _Target:
    """A running tracker with its measuring function and its workers' clients."""

    run: partial[Coroutine[Any, Any, Result]]
    clients: list[httpx.AsyncClient]


async def _start_targets(
    exits: AsyncExitStack, options: Options, workers: list[Worker], stack: _Stack
) -> dict[ServerName, _Target]:
    """Start a tracker under each server, to be stopped when ``exits`` closes."""
    targets: dict[ServerName, _Target] = {}
    for server in SERVERS:
        tracker = await exits.enter_async_context(
            running(server, stack.env, stack.log_path(server))
        )
        clients = await exits.enter_async_context(
            _clients(tracker.base_url, options.workers)
        )
        run = _runner(options, workers, tracker.pid, stack)
        targets[server] = _Target(run, clients)
    return targets


async def _measure_rounds(
    targets: dict[ServerName, _Target], repeat: int
) -> tuple[list[dict[str, Result]], list[dict[str, Result]]]:
    """Return single-event and no-route results, one dict per round and server."""
    events: list[dict[str, Result]] = []
    no_routes: list[dict[str, Result]] = []
    for number in range(repeat):
        order = SERVERS if number % 2 == 0 else SERVERS[::-1]
        events.append({})
        no_routes.append({})
        for server in order:
            _progress(f"round {number + 1}: measuring under {server}")
            run, clients = targets[server].run, targets[server].clients
            events[-1][server] = await run(
                f"single event, {server}", single_event(clients), events_per_operation=1
            )
            no_routes[-1][server] = await run(
                f"unknown path, {server}", unknown_path(clients), events_per_operation=0
            )
    return events, no_routes


async def _compare_servers(
    options: Options, workers: list[Worker], stack: _Stack
) -> None:
    """Load each server in turn, round after round, and print the ratios.

    Both trackers run for the whole comparison and only one receives load at a
    time, so that changes in the machine's other load fall on both alike. The
    order alternates between rounds. Requests to a path with no route cost no
    database work, so they show the part of the difference that lies in the server
    and the framework.
    """
    async with AsyncExitStack() as exits:
        _progress("starting uvicorn and granian side by side")
        targets = await _start_targets(exits, options, workers, stack)
        events, no_routes = await _measure_rounds(targets, options.repeat)

    print(machine.server_versions(), end="\n\n")
    for title, rounds in (
        ("Single events, one worker process per server:", events),
        (f"GET {UNKNOWN_PATH} (404, no database work):", no_routes),
    ):
        print(title)
        every = [result for results in rounds for result in results.values()]
        _print_table(comparison_table(rounds), busy_note(every))


async def _run_fanout(options: Options, server: ServerName, stack: _Stack) -> None:
    """Measure delivery with one stream, then with ``options.streams``, and print.

    Both measurements run against the same new tracker, so the first one's streams
    are closed before the second one's open.
    """
    loaded = FanoutOptions(
        streams=options.streams,
        rate=options.stream_rate,
        readers=options.stream_readers,
        warmup=options.warmup,
        seconds=options.duration,
    )
    async with (
        running(server, stack.env, stack.log_path(server)) as tracker,
        _clients(tracker.base_url, SENDERS) as clients,
    ):
        results = []
        for fanout in (replace(loaded, streams=1, readers=1), loaded):
            noun = "stream" if fanout.streams == 1 else "streams"
            _progress(f"measuring delivery to {fanout.streams} {noun} under {server}")
            results.append(
                await measure_fanout(
                    clients,
                    fanout,
                    tracker_pid=tracker.pid,
                    postgres_pid=stack.database.postmaster_pid(),
                )
            )

    print(
        f"Stream fan-out under {server}: {options.stream_rate:g} progress events/s "
        "on one collection, each timed from just before its POST to its arrival "
        "on each stream:"
    )
    _print_table(fanout_table(results), fanout_notes(*results))


async def _measure_all(options: Options, stack: _Stack) -> None:
    url = stack.database.url
    print(await machine.describe(url, options.workers, options.duration))
    print(SHARED_CORES_NOTE.format(cores=machine.cores()), end="\n\n")

    table_server: ServerName = "uvicorn" if options.server == "both" else options.server
    workers = await _run_table(options, table_server, stack)
    if options.streams:
        await _run_fanout(options, table_server, stack)
    if options.server == "both":
        await _compare_servers(options, workers, stack)


def run(options: Options) -> None:
    """Start PostgreSQL, migrate it, run every measurement and stop what started."""
    with (
        tempfile.TemporaryDirectory(prefix="ingestion-tracker-bench-") as work_dir,
        database(Path(work_dir)) as db,
    ):
        env = tracker_environment(db.url, Path(work_dir))
        _progress("applying migrations")
        migrate(env)
        stack = _Stack(db, env, Path(work_dir))
        asyncio.run(_measure_all(options, stack))
