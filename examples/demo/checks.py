"""The six checks of the demo, run in order against a running stack."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
from ingestion_tracker_client import AsyncJobWatch, AsyncTrackerClient, Conflict, Job
from rich.console import Console
from rich.progress import Progress, TaskID

from examples.demo import display
from examples.demo.stack import DOCUMENTS_DIR, Stack

# Seconds that the batch of jobs in check 2 may take to finish.
BATCH_TIMEOUT_SECONDS = 60.0
POLL_SECONDS = 0.2
# Seconds to wait for the collection stream's first cursor before submitting anyway.
STREAM_START_SECONDS = 5.0
# Slow enough that the progress bars move, fast enough for a one-minute demo.
SLOW_PARAMS = {"chunk_size": 300, "chunk_overlap": 50, "delay_per_chunk": 0.1}
# chunk_overlap must be smaller than chunk_size, so this job fails until a retry
# overrides chunk_overlap.
BAD_PARAMS = {"chunk_size": 200, "chunk_overlap": 200}
CANCEL_PARAMS = {"chunk_size": 100, "chunk_overlap": 0, "delay_per_chunk": 0.2}


@dataclass
class Demo:
    """Clients of the running stack and the jobs that the checks created."""

    console: Console
    stack: Stack
    backend: httpx.AsyncClient
    tracker: AsyncTrackerClient
    collection_id: int = 0
    jobs: dict[str, int] = field(default_factory=dict)

    async def upload(
        self, name: str, params: dict[str, Any], key: str | None = None
    ) -> int:
        """Upload a bundled document to ingest-file and return the job id."""
        response = await self.backend.post(
            f"/collections/{self.collection_id}/ingest-file",
            files={"file": (name, (DOCUMENTS_DIR / name).read_bytes())},
            data={
                "plugin_name": "markitdown_ingest",
                "plugin_params": json.dumps(params),
            },
        )
        response.raise_for_status()
        job_id: int = response.json()["job_id"]
        self.jobs[key or name] = job_id
        return job_id

    async def ingest_page(self) -> int:
        url = f"{self.stack.pages_url}/page.html"
        response = await self.backend.post(
            f"/collections/{self.collection_id}/ingest-url",
            json={"urls": [url], "plugin_name": "url_ingest", "plugin_params": {}},
        )
        response.raise_for_status()
        job_id: int = response.json()["job_id"]
        self.jobs["page.html"] = job_id
        return job_id

    async def job(self, key: str) -> Job:
        return await self.tracker.get_job(self.collection_id, self.jobs[key])

    async def wait_for_attempt(self, key: str, attempt: int) -> Job:
        """Poll until the job's ``attempt`` reaches a terminal status."""
        deadline = time.monotonic() + BATCH_TIMEOUT_SECONDS
        while True:
            job = await self.job(key)
            if job.attempt == attempt and job.is_terminal:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Job {job.id} attempt {attempt} did not finish within "
                    f"{BATCH_TIMEOUT_SECONDS} s"
                )
            await asyncio.sleep(POLL_SECONDS)


async def ingest_one_file(demo: Demo) -> bool:
    """Create a collection and ingest notes.md (check 1)."""
    display.heading(demo.console, 1, "Ingest a file")
    created = await demo.backend.post("/collections", json={"name": "Demo"})
    created.raise_for_status()
    demo.collection_id = created.json()["id"]
    job_id = await demo.upload("notes.md", SLOW_PARAMS)
    job = await demo.job("notes.md")
    demo.console.print(
        f"POST /collections -> collection {demo.collection_id}; "
        f"POST /ingest-file notes.md -> job {job_id} ({job.status})"
    )
    passed = job.id == job_id and job.original_filename == "notes.md"
    display.check_line(demo.console, 1, passed, f"job {job_id} registered for notes.md")
    return passed


async def watch_progress(demo: Demo) -> bool:
    """Submit the other documents and show every job's progress live (check 2)."""
    display.heading(demo.console, 2, "Watch the jobs' progress as it changes")
    latest: dict[int, Job] = {}
    readings: dict[int, set[int]] = {}
    with display.job_progress(demo.console) as bars:
        rows = JobRows(bars)
        async with demo.tracker.watch_collection(demo.collection_id) as watch:
            changes: asyncio.Queue[Job] = asyncio.Queue()
            reader = asyncio.create_task(forward(watch, changes))
            try:
                async with asyncio.timeout(BATCH_TIMEOUT_SECONDS):
                    await submit_batch(demo, watch, latest)
                    rows.show(latest.values())
                    while not all_finished(demo, latest):
                        job = await next_change(changes, reader)
                        if newer(job, latest.get(job.id)):
                            latest[job.id] = job
                        readings.setdefault(job.id, set()).add(job.progress.current)
                        rows.show([latest[job.id]])
            finally:
                reader.cancel()
                await asyncio.wait({reader})

    moving = max((len(values) for values in readings.values()), default=0)
    passed = all_finished(demo, latest) and moving >= 3
    display.check_line(
        demo.console,
        2,
        passed,
        f"{len(demo.jobs)} jobs finished; one showed {moving} progress readings "
        f"from the {watch.mode}",
    )
    return passed


async def forward(watch: AsyncJobWatch, changes: asyncio.Queue[Job]) -> None:
    async for job in watch:
        changes.put_nowait(job)


async def next_change(changes: asyncio.Queue[Job], reader: asyncio.Task[None]) -> Job:
    """Return the next job the watch yielded, or raise what ended the watch."""
    if not changes.empty():
        return changes.get_nowait()
    getter = asyncio.ensure_future(changes.get())
    await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
    if getter.done():
        return getter.result()
    getter.cancel()
    reader.result()
    raise RuntimeError("The collection watch ended before every job finished")


async def submit_batch(
    demo: Demo, watch: AsyncJobWatch, latest: dict[int, Job]
) -> None:
    """Submit the documents of check 2 once the watch follows the collection.

    The collection stream sends its cursor first, so once the watch has one, every
    later change reaches it. The jobs read just then fill in what happened before.
    """
    start = time.monotonic()
    while watch.last_event_id is None and watch.mode == "stream":
        if time.monotonic() - start > STREAM_START_SECONDS:
            break
        await asyncio.sleep(0.01)
    page = await demo.tracker.list_jobs(demo.collection_id, limit=100)
    for job in page.items:
        if newer(job, latest.get(job.id)):
            latest[job.id] = job
    await demo.upload("report.docx", SLOW_PARAMS)
    await demo.upload("scan.pdf", {})
    await demo.ingest_page()
    await demo.upload("broken.pdf", {})
    await demo.upload("notes.md", BAD_PARAMS, key="bad-params.md")


def newer(job: Job, known: Job | None) -> bool:
    """Tell whether ``job`` is at least as recent as the version already shown."""
    if known is None or job.updated_at is None or known.updated_at is None:
        return True
    return job.updated_at >= known.updated_at


def all_finished(demo: Demo, latest: dict[int, Job]) -> bool:
    return all(
        job_id in latest and latest[job_id].is_terminal for job_id in demo.jobs.values()
    )


class JobRows:
    """One progress bar per job, added when the job first shows up."""

    def __init__(self, bars: Progress) -> None:
        self._bars = bars
        self._tasks: dict[int, TaskID] = {}

    def show(self, jobs: Iterable[Job]) -> None:
        for job in jobs:
            if job.id not in self._tasks:
                self._tasks[job.id] = self._bars.add_task(
                    display.label(job), total=None, status="", message=""
                )
            self._bars.update(
                self._tasks[job.id],
                completed=job.progress.current,
                total=job.progress.total or None,
                status=job.status,
                message=job.progress.message or "",
            )


async def show_completed(demo: Demo) -> bool:
    """Show the duration and chunk count of the completed jobs (check 3)."""
    display.heading(demo.console, 3, "Completed jobs show duration and chunks")
    keys = ["notes.md", "report.docx", "scan.pdf", "page.html"]
    jobs = [await demo.job(key) for key in keys]
    demo.console.print(display.completed_table(jobs))
    passed = all(
        job.status == "completed"
        and job.document_count > 0
        and job.processing_duration_seconds is not None
        for job in jobs
    )
    display.check_line(
        demo.console, 3, passed, f"{len(jobs)} jobs completed with chunks and duration"
    )
    return passed


async def show_failure(demo: Demo) -> bool:
    """Show the stored error and traceback of the corrupted PDF (check 4)."""
    display.heading(demo.console, 4, "A corrupted file's error and traceback")
    job = await demo.job("broken.pdf")
    details = job.error_details or {}
    demo.console.print(f"status: {job.status}", highlight=False)
    demo.console.print(f"error_message: {job.error_message}", highlight=False)
    demo.console.print(f"exception_type: {details.get('exception_type')}")
    demo.console.print("traceback, last lines:", style="bold")
    demo.console.print(display.traceback_tail(job), highlight=False, markup=False)
    passed = job.status == "failed" and "Traceback" in str(details.get("traceback"))
    display.check_line(demo.console, 4, passed, "broken.pdf failed with a traceback")
    return passed


async def retry_with_override(demo: Demo) -> bool:
    """Retry the failed job with override_params and see attempt 2 run (check 5)."""
    display.heading(demo.console, 5, "Retry a failed job with override_params")
    failed = await demo.job("bad-params.md")
    demo.console.print(
        f"attempt {failed.attempt}: {failed.status}, params {failed.plugin_params}, "
        f"error: {failed.error_message}",
        highlight=False,
    )
    override = {"chunk_overlap": 20}
    await demo.tracker.retry(demo.collection_id, failed.id, override_params=override)
    demo.console.print(f"POST .../retry with override_params {override}")
    job = await demo.wait_for_attempt("bad-params.md", attempt=2)
    run_status = await wait_for_run_end(demo, job.id, attempt=2)
    demo.console.print(
        f"attempt {job.attempt}: {job.status}, params {job.plugin_params}, "
        f"{job.document_count} chunks; the backend's run of attempt 2 ended "
        f"{run_status}",
        highlight=False,
    )
    passed = (
        failed.status == "failed"
        and job.attempt == 2
        and job.status == "completed"
        and run_status == "completed"
    )
    display.check_line(demo.console, 5, passed, f"job {job.id} attempt 2 {job.status}")
    return passed


async def cancel_slow_job(demo: Demo) -> bool:
    """Cancel a slow job and see its worker stop short of the total (check 6)."""
    display.heading(demo.console, 6, "Cancel a long-running job")
    job_id = await demo.upload("notes.md", CANCEL_PARAMS, key="slow.md")
    cancelled_at = None
    job: Job | None = None
    with display.job_progress(demo.console) as bars:
        rows = JobRows(bars)
        async with (
            demo.tracker.watch(demo.collection_id, job_id) as watch,
            asyncio.timeout(BATCH_TIMEOUT_SECONDS),
        ):
            # The watch ends after the job reaches a terminal status.
            async for job in watch:
                rows.show([job])
                if job.progress.current >= 5 and cancelled_at is None:
                    await demo.tracker.cancel(demo.collection_id, job_id)
                    cancelled_at = job.progress.current

    stopped = await wait_for_run_end(demo, job_id, attempt=1)
    await asyncio.sleep(1.0)
    later = await demo.job("slow.md")
    progress = later.progress
    demo.console.print(
        f"tracker: {later.status} at {progress.current} of {progress.total} chunks; "
        f"backend worker ended with {stopped!r}; one second later still at "
        f"{progress.current}",
        highlight=False,
    )
    passed = (
        job is not None
        and cancelled_at is not None
        and later.status == "cancelled"
        and stopped == "cancelled"
        and progress.current < progress.total
        and progress.current == job.progress.current
    )
    display.check_line(
        demo.console, 6, passed, f"job {job_id} cancelled, worker stopped early"
    )
    return passed


async def wait_for_run_end(demo: Demo, job_id: int, attempt: int) -> str | None:
    """Wait until the backend's run of ``attempt`` ends and return its final status.

    The tracker may show the outcome before the backend's task records it, so a
    check of the backend's side waits for the record. Return None on a timeout.
    """
    deadline = time.monotonic() + BATCH_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        run = demo.stack.runner.runs.get(job_id)
        if run is not None and run.attempt == attempt:
            return run.final_status
        await asyncio.sleep(POLL_SECONDS)
    return None


async def cancel_unfinished(demo: Demo) -> None:
    """Cancel every job of the demo's collection that has not finished yet."""
    if not demo.collection_id:
        return
    page = await demo.tracker.list_jobs(
        demo.collection_id, status=["pending", "processing"], limit=100
    )
    for job in page.items:
        # A job that finished after the listing returns 409 Conflict, which is expected.
        with contextlib.suppress(Conflict):
            await demo.tracker.cancel(demo.collection_id, job.id)
    if page.items:
        demo.console.print(f"Cancelled {len(page.items)} unfinished jobs")


CHECKS = [
    ingest_one_file,
    watch_progress,
    show_completed,
    show_failure,
    retry_with_override,
    cancel_slow_job,
]
