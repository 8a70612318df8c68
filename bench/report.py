"""Plain-text tables of the results, ready to paste into docs/benchmarks.md."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

from bench.measure import Result

# CPU use of other processes, in percent of one core, above which a table of
# results gets a warning.
BUSY_LIMIT_PERCENT = 20.0
SHARED_CORES_NOTE = (
    "The tracker, PostgreSQL and this load generator share the machine's {cores} "
    "cores. The CPU columns show each one's use in percent of one core, and 'other' "
    "is the use of every other process on the machine in the same time."
)


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


def busy_note(results: list[Result], limit_percent: float = BUSY_LIMIT_PERCENT) -> str:
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
