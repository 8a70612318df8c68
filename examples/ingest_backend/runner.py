"""Start ingest jobs: register or resume them in the tracker, run plugins in tasks."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

import msgspec
import structlog
from ingestion_tracker_client import AsyncWorkerClient, JobFields, resume_from_headers

from examples.ingest_backend.plugins import PLUGINS, PluginInput

logger = structlog.get_logger(__name__)

# Seconds that running plugins get to finish when the backend stops.
SHUTDOWN_GRACE_SECONDS = 5.0


class IngestAccepted(msgspec.Struct):
    """Response of the ingest endpoints: the tracker's job and its status."""

    job_id: int
    status: str


@dataclass
class IngestRequest:
    """One accepted ingest request, ready to register and run."""

    collection_id: int
    plugin_name: str
    source: str
    plugin_input: PluginInput
    fields: JobFields = field(default_factory=lambda: JobFields())


@dataclass
class RunRecord:
    """Outcome of the last run of a job in this process, for demos and tests."""

    attempt: int | None
    final_status: str | None


class JobRunner:
    """Register or resume jobs and run their plugins as background tasks."""

    def __init__(self, worker: AsyncWorkerClient, *, flush_interval: float) -> None:
        self._worker = worker
        self._flush_interval = flush_interval
        self._accepted: dict[str, IngestAccepted] = {}
        # Serializes requests with an Idempotency-Key so a repeat waits for the first.
        self._idempotency_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.runs: dict[int, RunRecord] = {}

    async def submit(
        self, request: IngestRequest, headers: Mapping[str, str]
    ) -> tuple[IngestAccepted, bool]:
        """Start a job unless its Idempotency-Key was seen; return it and if it is new.

        Raises ValueError for malformed retry headers.
        """
        key = headers.get("idempotency-key")
        if key is None:
            return await self._start(request, headers), True

        async with self._idempotency_lock:
            seen = self._accepted.get(key)
            if seen is not None:
                logger.info("ingest_repeated", idempotency_key=key, job_id=seen.job_id)
                return seen, False
            accepted = await self._start(request, headers)
            self._accepted[key] = accepted
            return accepted, True

    async def _start(
        self, request: IngestRequest, headers: Mapping[str, str]
    ) -> IngestAccepted:
        resumed = resume_from_headers(headers)
        if resumed is not None:
            job_id, attempt = resumed
            status = "pending"
            logger.info("retry_resumed", job_id=job_id, attempt=attempt)
        else:
            fields: JobFields = {
                **request.fields,
                "plugin_params": request.plugin_input.params,
            }
            job = await self._worker.register(
                collection_id=request.collection_id,
                plugin_name=request.plugin_name,
                source=request.source,
                **fields,
            )
            job_id, attempt, status = job.id, job.attempt, job.status
            logger.info("job_registered", job_id=job_id, plugin=request.plugin_name)

        task = asyncio.create_task(self._run(job_id, attempt, request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return IngestAccepted(job_id=job_id, status=status)

    async def _run(self, job_id: int, attempt: int, request: IngestRequest) -> None:
        """Run the plugin in a thread as the reporter sends started and the outcome."""
        _, plugin = PLUGINS[request.plugin_name]
        reporter = self._worker.reporter(
            job_id, attempt=attempt, flush_interval=self._flush_interval
        )
        try:
            async with reporter:
                result = await asyncio.to_thread(plugin, request.plugin_input, reporter)
                reporter.completed(
                    result.document_count,
                    result.processing_stats,
                    message=f"Added {result.document_count} chunks",
                )
        except Exception as exc:
            # The reporter has sent the failure with its type and traceback.
            logger.warning(
                "plugin_failed", job_id=job_id, attempt=attempt, error=repr(exc)
            )
        finally:
            self.runs[job_id] = RunRecord(attempt, reporter.final_status)
        logger.info("plugin_finished", job_id=job_id, status=reporter.final_status)

    async def aclose(self) -> None:
        """Give running plugins a grace period, then cancel their tasks."""
        tasks = set(self._tasks)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_SECONDS)
        for task in pending:
            task.cancel()
        if pending:
            logger.warning("plugins_cancelled_at_shutdown", count=len(pending))
            await asyncio.wait(pending)
