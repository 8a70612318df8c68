"""Run the demo with ``python -m examples.demo``. It exits 0 if all six checks pass.

It starts an embedded PostgreSQL, the tracker, the reference backend and a page
server on loopback, walks six checks with the bundled documents, prints the
collection's summary and stops everything it started, on Ctrl-C too.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import httpx
from ingestion_tracker_client import AsyncTrackerClient, TrackerError
from rich.console import Console

from examples.demo import display
from examples.demo.checks import CHECKS, Demo, cancel_unfinished
from examples.demo.stack import quiet_logging, running_stack


async def run_checks(console: Console) -> bool:
    """Start the stack, run every check in order and return whether all passed."""
    console.print("Starting PostgreSQL, the tracker, the backend and a page server…")
    async with (
        running_stack() as stack,
        httpx.AsyncClient(base_url=stack.backend_url, timeout=30) as backend,
        AsyncTrackerClient(base_url=stack.tracker_url) as tracker,
    ):
        console.print(
            f"tracker {stack.tracker_url}, backend {stack.backend_url}, "
            f"pages {stack.pages_url}"
        )
        demo = Demo(console, stack, backend, tracker)
        try:
            results = await walk(demo)
            await print_summary(demo)
        finally:
            # A plugin runs in a thread that the backend cannot kill, so cancel any
            # unfinished job to let the backend stop at once after a Ctrl-C.
            await cancel_unfinished(demo)
            console.print("Stopping the servers and PostgreSQL…")
    passed = sum(results)
    console.print(f"{passed} of {len(results)} checks passed")
    return passed == len(CHECKS)


async def walk(demo: Demo) -> list[bool]:
    """Run the checks in order. A check that raises counts as failed."""
    results = []
    for number, check in enumerate(CHECKS, start=1):
        try:
            results.append(await check(demo))
        except (httpx.HTTPError, TrackerError, TimeoutError, KeyError) as exc:
            display.check_line(demo.console, number, False, f"raised {exc!r}")
            results.append(False)
    return results


async def print_summary(demo: Demo) -> None:
    if not demo.collection_id:
        return
    summary = await demo.tracker.summary(demo.collection_id)
    demo.console.rule(
        f"[bold]Collection summary: {summary.collection_name}", align="left"
    )
    demo.console.print(display.summary_table(summary))


def main() -> int:
    quiet_logging()
    # A shell starts background jobs with SIGINT ignored, and asyncio.run then
    # leaves it ignored too. Restore the default so Ctrl-C and kill -INT stop the demo.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    console = Console()
    try:
        return 0 if asyncio.run(run_checks(console)) else 1
    except KeyboardInterrupt:
        console.print("Interrupted; everything the demo started has stopped.")
        return 130


if __name__ == "__main__":
    sys.exit(main())
