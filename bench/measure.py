"""Run an operation from every worker for a fixed time and record what it cost."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bench.cpu import machine_cpu_seconds, own_cpu_seconds, tree_cpu_seconds
from bench.scenarios import Operation
from bench.workers import Worker


def quantile_of(values: Sequence[float], quantile: float) -> float:
    """Return the value below which ``quantile`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(quantile * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Result:
    """Requests of one scenario completed in its measured phase."""

    name: str
    events_per_operation: int
    elapsed_seconds: float
    latencies: list[float]
    # CPU seconds used during the phase by "tracker", "postgres", "bench" and "other"
    # processes of the machine; None where /proc cannot tell.
    cpu_seconds: dict[str, float | None]

    @property
    def operations_per_second(self) -> float:
        return len(self.latencies) / self.elapsed_seconds

    @property
    def events_per_second(self) -> float:
        return self.operations_per_second * self.events_per_operation

    def latency_ms(self, quantile: float) -> float:
        """Return the latency below which ``quantile`` of the requests finished."""
        return quantile_of(self.latencies, quantile) * 1000

    def cpu_ms_per_operation(self, process: str) -> float | None:
        """Return the CPU milliseconds that ``process`` used per completed request."""
        seconds = self.cpu_seconds.get(process)
        return None if seconds is None else 1000 * seconds / len(self.latencies)

    def cpu_percent(self, process: str) -> float | None:
        """Return the CPU that ``process`` used, in percent of one core."""
        seconds = self.cpu_seconds.get(process)
        return None if seconds is None else 100 * seconds / self.elapsed_seconds


class CpuMeter:
    """Reader of the CPU seconds of the tracker, PostgreSQL and this load generator.

    With ``readers``, the stream reader processes count as "readers"; this process
    counts as "bench" either way.
    """

    def __init__(
        self, tracker_pid: int, postgres_pid: int | None, readers: Sequence[int] = ()
    ) -> None:
        self._roots = {"tracker": tracker_pid, "postgres": postgres_pid}
        self._readers = list(readers)

    def read(self) -> dict[str, float | None]:
        totals: dict[str, float | None] = {
            "bench": own_cpu_seconds(),
            "machine": machine_cpu_seconds(),
        }
        for name, pid in self._roots.items():
            totals[name] = None if pid is None else tree_cpu_seconds(pid)
        if self._readers:
            totals["readers"] = _sum_or_none(
                tree_cpu_seconds(pid) for pid in self._readers
            )
        return totals


def _sum_or_none(values: Iterable[float | None]) -> float | None:
    total = 0.0
    for value in values:
        if value is None:
            return None
        total += value
    return total


def cpu_between(
    before: dict[str, float | None], after: dict[str, float | None]
) -> dict[str, float | None]:
    """Return the CPU seconds between two readings, with "other" for the rest."""
    used: dict[str, float | None] = {}
    for name, start in before.items():
        end = after.get(name)
        used[name] = None if start is None or end is None else end - start

    machine = used.pop("machine")
    parts = list(used.values())
    known = [part for part in parts if part is not None]
    # The counters advance in whole clock ticks, so a nearly idle rest can come out
    # slightly below zero.
    used["other"] = (
        None
        if machine is None or len(known) < len(parts)
        else max(0.0, machine - sum(known))
    )
    return used


async def _run_for(
    workers: list[Worker], operation: Operation, seconds: float
) -> tuple[list[float], float]:
    """Loop ``operation`` in every worker until ``seconds`` have passed."""
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds

    async def loop(worker: Worker) -> None:
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            await operation(worker)
            latencies.append(time.perf_counter() - sent)

    async with asyncio.TaskGroup() as group:
        for worker in workers:
            group.create_task(loop(worker))
    return latencies, time.perf_counter() - started


async def measure(
    name: str,
    operation: Operation,
    *,
    workers: list[Worker],
    events_per_operation: int,
    warmup_seconds: float,
    seconds: float,
    meter: CpuMeter,
) -> Result:
    """Warm up with ``operation``, then record a phase of ``seconds``."""
    if warmup_seconds > 0:
        await _run_for(workers, operation, warmup_seconds)

    before = meter.read()
    latencies, elapsed = await _run_for(workers, operation, seconds)
    after = meter.read()
    return Result(
        name=name,
        events_per_operation=events_per_operation,
        elapsed_seconds=elapsed,
        latencies=latencies,
        cpu_seconds=cpu_between(before, after),
    )
