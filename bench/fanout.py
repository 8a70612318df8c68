"""Stream fan-out: hold many event streams open, send paced events, time deliveries.

Every stream follows the same collection. Four in five are collection streams, which
receive every event. The rest are job streams, one per job, which receive only their
job's events. Events are sent at a fixed rate, round-robin over the jobs, and each
carries its send time in its progress message (see ``bench.sse``), so a reader
process recovers the delay of every message it receives.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
import msgspec

from bench.cpu import tree_cpu_seconds
from bench.measure import CpuMeter, cpu_between
from bench.readers import ReaderProcess, StreamSpec
from bench.scenarios import PROGRESS_TOTAL, Applied
from bench.sse import COLLECTION, JOB, Samples, stamp
from bench.workers import BenchError, Worker, check_status, register_workers

# A collection of its own, so that no other scenario's events reach the streams.
FANOUT_COLLECTION_ID = 2
# One stream in this many follows a single job; the others follow the collection.
JOB_STREAM_SHARE = 5
# HTTP clients that send the events, each with one connection, so that a slow
# response does not hold back the next event.
SENDERS = 4
# The history keeps one row per job and second for progress events: a newer row
# replaces an older one that a stream may not have read yet. Spacing each job's
# events wider than that keeps every event, so every stream gets every message.
JOB_EVENT_SPACING_SECONDS = 2.0
DRAIN_TIMEOUT_SECONDS = 10.0
REQUEST_TIMEOUT_SECONDS = 30.0
COLLECTION_STREAM = "/collections/{collection}/ingestion-stream"
JOB_STREAM = "/collections/{collection}/ingestion-jobs/{job}/stream"


@dataclass(frozen=True, slots=True, kw_only=True)
class FanoutOptions:
    """One fan-out measurement, with the rate in events per second."""

    streams: int
    rate: float
    readers: int
    warmup: float
    seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class FanoutResult:
    """Deliveries of events sent in the measured phase, with times in seconds."""

    collection_streams: int
    job_streams: int
    readers: int
    seconds: float
    post_latencies: list[float]
    # Delays of collection streams' messages, then of job streams' messages.
    delays: tuple[list[float], list[float]]
    expected: int
    ended_early: int
    cpu_seconds: dict[str, float | None]
    busiest_reader_seconds: float | None

    @property
    def streams(self) -> int:
        return self.collection_streams + self.job_streams

    @property
    def delivered(self) -> int:
        return sum(len(delays) for delays in self.delays)

    @property
    def events_per_second(self) -> float:
        return len(self.post_latencies) / self.seconds

    @property
    def messages_per_second(self) -> float:
        return self.delivered / self.seconds

    def cpu_percent(self, process: str) -> float | None:
        """Return the CPU that ``process`` used, in percent of one core."""
        seconds = self.cpu_seconds.get(process)
        return None if seconds is None else 100 * seconds / self.seconds

    def busiest_reader_percent(self) -> float | None:
        """Return the CPU of the busiest reader process, in percent of one core."""
        seconds = self.busiest_reader_seconds
        return None if seconds is None else 100 * seconds / self.seconds


@dataclass(frozen=True, slots=True)
class _Sent:
    job_id: int
    sent_ns: int
    latency_ns: int


def _stream_specs(streams: int, job_ids: Sequence[int]) -> list[tuple[StreamSpec, int]]:
    """Return each stream with the job it follows, or 0 for a collection stream."""
    job_streams = streams // JOB_STREAM_SHARE
    collection = COLLECTION_STREAM.format(collection=FANOUT_COLLECTION_ID)
    specs = [(StreamSpec(COLLECTION, collection), 0)] * (streams - job_streams)
    for job_id in job_ids[:job_streams]:
        path = JOB_STREAM.format(collection=FANOUT_COLLECTION_ID, job=job_id)
        specs.append((StreamSpec(JOB, path), job_id))
    return specs


def _jobs_needed(streams: int, rate: float) -> int:
    return max(streams // JOB_STREAM_SHARE, math.ceil(rate * JOB_EVENT_SPACING_SECONDS))


async def _sleep_until(monotonic_ns: int) -> None:
    await asyncio.sleep(max(0.0, (monotonic_ns - time.monotonic_ns()) / 1e9))


async def _send_paced(
    clients: Sequence[httpx.AsyncClient],
    worker: Worker,
    rate: float,
    start_ns: int,
    end_ns: int,
) -> list[_Sent]:
    """Send a progress event every 1/``rate`` seconds from ``start_ns`` on."""
    due: asyncio.Queue[int | None] = asyncio.Queue()
    sent: list[_Sent] = []

    async def pace() -> None:
        interval_ns = round(1e9 / rate)
        for tick_ns in range(start_ns, end_ns, interval_ns):
            await _sleep_until(tick_ns)
            due.put_nowait(worker.next_job())
        for _ in clients:
            due.put_nowait(None)

    async def send(client: httpx.AsyncClient) -> None:
        while (job_id := await due.get()) is not None:
            seq = worker.next_seq(job_id)
            sent_ns = time.monotonic_ns()
            body = {
                "type": "progress",
                "seq": seq,
                "current": seq,
                "total": PROGRESS_TOTAL,
                "message": stamp(sent_ns),
            }
            response = await client.post(f"/ingestion-jobs/{job_id}/events", json=body)
            latency_ns = time.monotonic_ns() - sent_ns
            check_status(response, 200)
            if not msgspec.json.decode(response.content, type=Applied).applied:
                raise BenchError(
                    f"progress event {seq} of job {job_id} was not applied"
                )
            sent.append(_Sent(job_id, sent_ns, latency_ns))

    async with asyncio.TaskGroup() as group:
        group.create_task(pace())
        for client in clients:
            group.create_task(send(client))
    return sent


async def _cpu_in_window(
    meter: CpuMeter, readers: Sequence[ReaderProcess], first_ns: int, last_ns: int
) -> tuple[dict[str, float | None], float | None]:
    """Return the CPU seconds of the measured phase, and the busiest reader's."""
    await _sleep_until(first_ns)
    before = meter.read()
    readers_before = [tree_cpu_seconds(reader.pid) for reader in readers]
    await _sleep_until(last_ns)
    after = meter.read()
    readers_after = [tree_cpu_seconds(reader.pid) for reader in readers]

    used = [
        None if start is None or end is None else end - start
        for start, end in zip(readers_before, readers_after, strict=True)
    ]
    busiest = None if None in used else max(u for u in used if u is not None)
    return cpu_between(before, after), busiest


def _expected(
    specs: Sequence[tuple[StreamSpec, int]], measured: Sequence[_Sent]
) -> int:
    """Return the messages that ``specs`` should receive for the measured events."""
    collection_streams = sum(1 for spec, _ in specs if spec.kind == COLLECTION)
    followers = Counter(job_id for spec, job_id in specs if spec.kind == JOB)
    return sum(collection_streams + followers[event.job_id] for event in measured)


def _delays(samples: Samples, kind: int, first_ns: int, last_ns: int) -> list[float]:
    return [
        (received - sent) / 1e9
        for sent, received in zip(
            samples.sent[kind], samples.received[kind], strict=True
        )
        if first_ns <= sent < last_ns
    ]


def _start_readers(
    base_url: str, specs: Sequence[tuple[StreamSpec, int]], count: int
) -> list[ReaderProcess]:
    url = httpx.URL(base_url)
    assert url.port is not None, "the tracker's URL names its port"
    count = min(count, len(specs))
    return [
        ReaderProcess(url.host, url.port, [spec for spec, _ in specs[number::count]])
        for number in range(count)
    ]


async def measure_fanout(
    clients: Sequence[httpx.AsyncClient],
    options: FanoutOptions,
    *,
    tracker_pid: int,
    postgres_pid: int | None,
) -> FanoutResult:
    """Open the streams, send events through ``clients``, and time every delivery."""
    jobs = _jobs_needed(options.streams, options.rate)
    [worker] = await register_workers(
        clients[:1], jobs, collection_id=FANOUT_COLLECTION_ID
    )
    specs = _stream_specs(options.streams, worker.job_ids)
    base_url = str(clients[0].base_url)
    readers = _start_readers(base_url, specs, options.readers)
    try:
        await asyncio.gather(*(reader.opened() for reader in readers))

        start_ns = time.monotonic_ns()
        first_ns = start_ns + round(options.warmup * 1e9)
        last_ns = first_ns + round(options.seconds * 1e9)
        meter = CpuMeter(tracker_pid, postgres_pid, [r.pid for r in readers])
        sent, (cpu_seconds, busiest) = await asyncio.gather(
            _send_paced(clients, worker, options.rate, start_ns, last_ns),
            _cpu_in_window(meter, readers, first_ns, last_ns),
        )
        measured = [event for event in sent if first_ns <= event.sent_ns < last_ns]

        count = len(readers)
        results = await asyncio.gather(
            *(
                reader.drain(
                    first_ns,
                    last_ns,
                    _expected(specs[number::count], measured),
                    DRAIN_TIMEOUT_SECONDS,
                )
                for number, reader in enumerate(readers)
            )
        )
    finally:
        for reader in readers:
            reader.stop()

    delays: tuple[list[float], list[float]] = ([], [])
    for samples, _ in results:
        for kind in (COLLECTION, JOB):
            delays[kind].extend(_delays(samples, kind, first_ns, last_ns))
    job_streams = sum(1 for spec, _ in specs if spec.kind == JOB)
    return FanoutResult(
        collection_streams=len(specs) - job_streams,
        job_streams=job_streams,
        readers=len(readers),
        seconds=options.seconds,
        post_latencies=[event.latency_ns / 1e9 for event in measured],
        delays=delays,
        expected=_expected(specs, measured),
        ended_early=sum(ended for _, ended in results),
        cpu_seconds=cpu_seconds,
        busiest_reader_seconds=busiest,
    )
