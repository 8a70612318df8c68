"""Plain-text tables of the results, ready to paste into docs/benchmarks.md."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Protocol

from bench.fanout import DRAIN_TIMEOUT_SECONDS, FanoutResult
from bench.measure import Result, quantile_of

# CPU use of other processes, in percent of one core, above which a table of
# results gets a warning.
BUSY_LIMIT_PERCENT = 20.0
SHARED_CORES_NOTE = (
    "The tracker, PostgreSQL and this load generator share the machine's {cores} "
    "cores. The CPU columns show each one's use in percent of one core, and 'other' "
    "is the use of every other process on the machine in the same time."
)


# CPU use of one stream reader process, in percent of one core, above which the
# readers may have delayed the messages they timed.
READER_BUSY_PERCENT = 80.0


class _Measured(Protocol):
    def cpu_percent(self, process: str) -> float | None: ...


def _number(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: Sequence[str], rows: list[list[str]]) -> str:
    separator = ["---"] * len(header)
    return "\n".join(_row(cells) for cells in [list(header), separator, *rows])


def results_table(results: list[Result], ceiling: Result) -> str:
    """Format one row per scenario, with its rate as a fraction of the raw ceiling.

    The ratio divides events/s by the raw UPDATEs/s, or requests/s for a read.
    """
    header = (
        "scenario",
        "ops/s",
        "events/s",
        "p50 ms",
        "p99 ms",
        "ratio to raw UPDATE",
        "CPU tracker %",
        "CPU postgres %",
        "CPU bench %",
        "CPU other %",
    )
    rows = []
    for result in results:
        rate = result.events_per_second or result.operations_per_second
        events = result.events_per_second if result.events_per_operation else None
        rows.append(
            [
                result.name,
                _number(result.operations_per_second),
                "-" if events is None else _number(events),
                _number(result.latency_ms(0.50), 2),
                _number(result.latency_ms(0.99), 2),
                _number(rate / ceiling.operations_per_second, 2),
                _number(result.cpu_percent("tracker")),
                _number(result.cpu_percent("postgres")),
                _number(result.cpu_percent("bench")),
                _number(result.cpu_percent("other")),
            ]
        )
    return _table(header, rows)


def comparison_table(rounds: list[dict[str, Result]]) -> str:
    """Format one row per round of the server comparison, then the medians."""
    header = (
        "round",
        "uvicorn requests/s",
        "granian requests/s",
        "granian / uvicorn",
        "p50 / p99 ms, uvicorn",
        "p50 / p99 ms, granian",
        "tracker CPU ms per request, uvicorn / granian",
        "CPU other %, uvicorn / granian",
    )
    rows = [
        [str(number), *_comparison_cells([results])]
        for number, results in enumerate(rounds, start=1)
    ]
    if len(rounds) > 1:
        rows.append(["median", *_comparison_cells(rounds)])
    return _table(header, rows)


def _comparison_cells(rounds: list[dict[str, Result]]) -> list[str]:
    """Return the cells of one comparison row, each the median over ``rounds``."""

    def median(server: str, value: Callable[[Result], float | None]) -> float | None:
        values = [value(results[server]) for results in rounds]
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    def rate(result: Result) -> float:
        return result.operations_per_second

    def cpu_ms(result: Result) -> float | None:
        return result.cpu_ms_per_operation("tracker")

    def other(result: Result) -> float | None:
        return result.cpu_percent("other")

    def p50(result: Result) -> float:
        return result.latency_ms(0.50)

    def p99(result: Result) -> float:
        return result.latency_ms(0.99)

    ratio = statistics.median(
        results["granian"].operations_per_second
        / results["uvicorn"].operations_per_second
        for results in rounds
    )
    return [
        _number(median("uvicorn", rate)),
        _number(median("granian", rate)),
        _number(ratio, 2),
        _pair(median("uvicorn", p50), median("uvicorn", p99), 2),
        _pair(median("granian", p50), median("granian", p99), 2),
        _pair(median("uvicorn", cpu_ms), median("granian", cpu_ms), 2),
        _pair(median("uvicorn", other), median("granian", other), 0),
    ]


def busy_note(
    results: Sequence[_Measured], limit_percent: float = BUSY_LIMIT_PERCENT
) -> str:
    """Return a warning when other processes used much CPU during a measurement."""
    others = [result.cpu_percent("other") for result in results]
    busiest = max((other for other in others if other is not None), default=0.0)
    if busiest <= limit_percent:
        return ""
    return (
        f"NOTE: other processes used up to {busiest:.0f}% of one core during these "
        "measurements, so the rates are lower and the latencies higher than this "
        "machine gives when it is otherwise idle."
    )


def _pair(first: float | None, second: float | None, digits: int) -> str:
    return f"{_number(first, digits)} / {_number(second, digits)}"


def _ms(values: Sequence[float], quantile: float) -> float | None:
    return quantile_of(values, quantile) * 1000 if values else None


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _every_delay(result: FanoutResult) -> list[float]:
    collection, job = result.delays
    return [*collection, *job]


def _streams_cell(result: FanoutResult) -> str:
    if not result.job_streams:
        return f"{result.streams} (collection)"
    return (
        f"{result.streams} ({result.collection_streams} collection, "
        f"{result.job_streams} job)"
    )


def fanout_table(results: Sequence[FanoutResult]) -> str:
    """Format one row per fan-out measurement: delivery delays beside POST latency."""
    header = (
        "streams",
        "events/s",
        "messages/s",
        "delivered",
        "delivery p50 ms",
        "delivery p99 ms",
        "delivery max ms",
        "POST p50 ms",
        "POST p99 ms",
        "delivery p50 / POST p50",
        "CPU tracker %",
        "CPU postgres %",
        "CPU readers %",
        "CPU bench %",
        "CPU other %",
    )
    rows = []
    for result in results:
        delays = _every_delay(result)
        delivery_p50 = _ms(delays, 0.50)
        rows.append(
            [
                _streams_cell(result),
                _number(result.events_per_second, 1),
                _number(result.messages_per_second),
                f"{result.delivered:,} of {result.expected:,}",
                _number(delivery_p50, 2),
                _number(_ms(delays, 0.99), 2),
                _number(_ms(delays, 1.0), 2),
                _number(_ms(result.post_latencies, 0.50), 2),
                _number(_ms(result.post_latencies, 0.99), 2),
                _number(_ratio(delivery_p50, _ms(result.post_latencies, 0.50)), 2),
                _number(result.cpu_percent("tracker")),
                _number(result.cpu_percent("postgres")),
                _number(result.cpu_percent("readers")),
                _number(result.cpu_percent("bench")),
                _number(result.cpu_percent("other")),
            ]
        )
    return _table(header, rows)


def fanout_notes(baseline: FanoutResult, loaded: FanoutResult) -> str:
    """Return the ratios of ``loaded`` to ``baseline`` and warnings about the run."""
    base, load = _every_delay(baseline), _every_delay(loaded)
    lines = [
        f"Delivery with {loaded.streams} streams against {baseline.streams}: p50 "
        f"{_number(_ratio(_ms(load, 0.50), _ms(base, 0.50)), 2)} times, p99 "
        f"{_number(_ratio(_ms(load, 0.99), _ms(base, 0.99)), 2)} times.",
    ]
    if loaded.job_streams:
        collection, job = loaded.delays
        lines.append(
            f"With {loaded.streams} streams, p50 / p99 ms of collection streams "
            f"{_number(_ms(collection, 0.50), 2)} / {_number(_ms(collection, 0.99), 2)}"
            f", of job streams {_number(_ms(job, 0.50), 2)} / "
            f"{_number(_ms(job, 0.99), 2)}."
        )
    busiest = loaded.busiest_reader_percent()
    processes = "process" if loaded.readers == 1 else "processes"
    lines.append(
        f"{loaded.readers} reader {processes} held the {loaded.streams} streams; the "
        f"busiest used {_number(busiest)}% of one core."
    )
    for result in (baseline, loaded):
        lines.extend(_fanout_warnings(result))
    busy = busy_note([baseline, loaded])
    if busy:
        lines.append(busy)
    return "\n".join(lines)


def _fanout_warnings(result: FanoutResult) -> list[str]:
    warnings = []
    busiest = result.busiest_reader_percent()
    if busiest is not None and busiest > READER_BUSY_PERCENT:
        warnings.append(
            f"NOTE: a reader process used {busiest:.0f}% of one core with "
            f"{result.streams} streams, so the readers may have added to the delays; "
            "rerun with more --stream-readers."
        )
    missing = result.expected - result.delivered
    if missing or result.ended_early:
        warnings.append(
            f"NOTE: with {result.streams} streams, {missing:,} messages did not "
            f"arrive within {DRAIN_TIMEOUT_SECONDS:g} s of the last event, and the "
            f"tracker ended {result.ended_early} streams early, as it does when a "
            "stream's buffer overflows."
        )
    return warnings
