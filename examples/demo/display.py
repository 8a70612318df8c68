"""Rich output of the demo: headings, check lines, progress bars and tables."""

from __future__ import annotations

from collections.abc import Iterable

from ingestion_tracker_client import CollectionStatus, Job
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

CHECK_PASSED = "✓"
CHECK_FAILED = "✗"


def heading(console: Console, number: int, title: str) -> None:
    console.rule(f"[bold]{number}. {title}", align="left")


def check_line(console: Console, number: int, passed: bool, text: str) -> None:
    """Print the result line of check ``number``, which the end-to-end test reads."""
    mark = f"[green]{CHECK_PASSED}[/]" if passed else f"[red]{CHECK_FAILED}[/]"
    console.print(f"{mark} check {number}: {text}", highlight=False)


def job_progress(console: Console) -> Progress:
    """Progress bars with one row per job: name, bar, current of total, message."""
    return Progress(
        TextColumn("{task.description:<18}"),
        BarColumn(bar_width=20),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]:<10} {task.fields[message]:.28}"),
        console=console,
    )


def label(job: Job) -> str:
    return f"#{job.id} {job.original_filename or job.plugin_name}"


def completed_table(jobs: Iterable[Job]) -> Table:
    table = Table(title="Completed jobs")
    table.add_column("file")
    table.add_column("status")
    table.add_column("chunks", justify="right")
    table.add_column("duration", justify="right")
    for job in jobs:
        duration = job.processing_duration_seconds
        table.add_row(
            label(job),
            job.status,
            str(job.document_count),
            "-" if duration is None else f"{duration:.2f} s",
        )
    return table


def summary_table(summary: CollectionStatus) -> Table:
    table = Table(title=f"{summary.total_jobs} jobs")
    table.add_column("status")
    table.add_column("jobs", justify="right")
    counts = summary.by_status
    for status in ("pending", "processing", "completed", "failed", "cancelled"):
        table.add_row(status, str(getattr(counts, status)))
    return table


def traceback_tail(job: Job, lines: int = 4) -> str:
    """Return the last ``lines`` lines of the job's reported traceback."""
    details = job.error_details or {}
    text = str(details.get("traceback", ""))
    return "\n".join(text.rstrip().splitlines()[-lines:])
