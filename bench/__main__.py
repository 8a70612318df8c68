"""Command line of the benchmark: ``python -m bench --help``."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence

import asyncpg
import httpx

from bench.run import Options, run
from bench.stack import StackError
from bench.workers import BenchError
from service.events.schemas import MAX_BATCH_EVENTS
from service.logging import configure_logging

# Failures whose message is enough to act on, so no traceback is printed for them.
EXPECTED_FAILURES = (BenchError, StackError, httpx.HTTPError, asyncpg.PostgresError)

DESCRIPTION = """\
Start PostgreSQL (embedded in a temporary directory unless DATABASE_URL is set),
migrate it, serve the tracker on a free loopback port and measure single events,
event batches and job reads from concurrent simulated workers, beside a raw asyncpg
UPDATE loop on the same table. Then time the delivery of paced progress events to
many open server-sent event streams, against one stream. The tracker, PostgreSQL and
this load generator share
the machine's cores. With DATABASE_URL set, the benchmark adds jobs to that database:
point it at a throwaway one.
"""


def _bounded(
    kind: Callable[[str], float], low: float, high: float
) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{value:g} is out of range; use a value from {low:g} to {high:g}"
            )
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--duration",
        type=_bounded(float, 0.5, 600),
        default=5.0,
        help="measured seconds per scenario, after the warm-up (default: 5)",
    )
    parser.add_argument(
        "--warmup",
        type=_bounded(float, 0, 60),
        default=1.0,
        help="seconds of unrecorded load before each scenario (default: 1)",
    )
    parser.add_argument(
        "--workers",
        type=_bounded(int, 1, 500),
        default=50,
        help="concurrent simulated workers, each with its own HTTP connection and "
        "jobs (default: 50)",
    )
    parser.add_argument(
        "--batch-size",
        type=_bounded(int, 1, MAX_BATCH_EVENTS),
        default=50,
        help="events per batch request, and jobs each worker owns (default: 50)",
    )
    parser.add_argument(
        "--server",
        choices=("uvicorn", "granian", "both"),
        default="uvicorn",
        help="ASGI server of the tracker; 'both' measures every scenario under "
        "uvicorn, then single events and requests to a path with no route under "
        "each server in turn (default: uvicorn)",
    )
    parser.add_argument(
        "--streams",
        type=_bounded(int, 0, 2000),
        default=300,
        help="open event streams in the fan-out scenario, one in five of them a job "
        "stream and the rest collection streams; 0 skips the scenario (default: 300)",
    )
    parser.add_argument(
        "--stream-rate",
        type=_bounded(float, 1, 500),
        default=20.0,
        help="progress events per second sent in the fan-out scenario (default: 20)",
    )
    parser.add_argument(
        "--stream-readers",
        type=_bounded(int, 1, 16),
        default=2,
        help="processes that hold the fan-out scenario's streams open and time "
        "their messages (default: 2)",
    )
    parser.add_argument(
        "--repeat",
        type=_bounded(int, 1, 20),
        default=3,
        help="rounds of the server comparison with --server both (default: 3)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and return the exit status."""
    args = _parser().parse_args(argv)
    options = Options(
        duration=args.duration,
        warmup=args.warmup,
        workers=int(args.workers),
        batch_size=int(args.batch_size),
        server=args.server,
        repeat=int(args.repeat),
        streams=int(args.streams),
        stream_rate=args.stream_rate,
        stream_readers=int(args.stream_readers),
    )
    # The embedded PostgreSQL helper logs through structlog, so show only warnings.
    configure_logging("warning", "console")
    warnings.filterwarnings("ignore", module="platformdirs")
    try:
        run(options)
    except KeyboardInterrupt:
        print(
            "bench: interrupted; every process it started is stopped",
            file=sys.stderr,
        )
        return 130
    except Exception as exc:
        failure = _expected_failure(exc)
        if failure is None:
            raise
        print(f"bench: {type(failure).__name__}: {failure}", file=sys.stderr)
        return 1
    return 0


def _expected_failure(exc: BaseException) -> BaseException | None:
    """Return the first failure with a known cause, looking inside task groups."""
    if isinstance(exc, EXPECTED_FAILURES):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _expected_failure(inner)
            if found is not None:
                return found
    return None


if __name__ == "__main__":
    raise SystemExit(main())
