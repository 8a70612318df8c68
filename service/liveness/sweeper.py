"""Background loop that flags silent processing jobs stalled and fails dead ones."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from service.liveness.store import (
    SilentJob,
    fail_timed_out,
    flag_stalled,
    sweep_time,
    try_sweep_lock,
)
from service.store.engine import driver_connection

logger = structlog.get_logger(__name__)

# Jobs of each kind changed per transaction, so one locks at most 1000 rows.
BATCH_SIZE = 500
# Sweeps further apart than this (or three intervals) mean the tracker or its database
# was down, so silence is counted again from the next sweep.
RESUME_GAP_SECONDS = 30.0
# Maximum wait after consecutive failed sweeps, unless the interval is longer.
BACKOFF_MAX_SECONDS = 60.0


@dataclass(slots=True)
class SweepResult:
    """Outcome of one sweep: the ids of the jobs it flagged stalled and failed."""

    # False when another replica held the sweep lock, so no job was read.
    swept: bool = False
    stalled: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Batch:
    stalled: list[SilentJob]
    failed: list[SilentJob]


class LivenessSweeper:
    """Flags stalled jobs and fails timed-out ones, one replica at a time.

    ``clock`` returns the sweep's "now" as an aware datetime, for tests. Without it
    the database clock is used, because it also writes ``last_event_at``.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        interval_seconds: float,
        clock: Callable[[], datetime] | None = None,
        batch_size: int = BATCH_SIZE,
        watching_since: datetime | None = None,
    ) -> None:
        if interval_seconds <= 0:
            raise ValueError(
                f"interval_seconds must be positive, not {interval_seconds}"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self._engine = engine
        self._interval = interval_seconds
        self._clock = clock
        self._batch_size = batch_size
        # Silence is counted from this time at the earliest: the first sweep that
        # reached the database, again after a gap in sweeps. Workers could not report
        # while the tracker or its database was down, so they are not failed for it.
        self._watching_since = watching_since
        self._last_contact: datetime | None = None
        self._gap = timedelta(seconds=max(3 * interval_seconds, RESUME_GAP_SECONDS))

    async def run(self) -> None:
        """Sweep every interval until cancelled, logging and retrying a failed sweep."""
        logger.info("liveness_sweeper_started", interval_seconds=self._interval)
        failures = 0
        try:
            while True:
                # The first sweep waits an interval too, so workers that could not
                # reach a restarted tracker get that long to report again.
                await asyncio.sleep(self._wait_seconds(failures))
                try:
                    await self.run_once()
                    failures = 0
                except Exception:
                    failures += 1
                    logger.exception(
                        "liveness_sweep_failed",
                        consecutive_failures=failures,
                        retry_in_seconds=self._wait_seconds(failures),
                    )
        finally:
            logger.info("liveness_sweeper_stopped")

    def _wait_seconds(self, failures: int) -> float:
        """Wait an interval, doubled with each failed sweep in a row up to a ceiling."""
        ceiling = max(self._interval, BACKOFF_MAX_SECONDS)
        return min(self._interval * 2.0 ** min(failures, 16), ceiling)

    async def run_once(self) -> SweepResult:
        """Sweep every silent processing job, one batch per transaction."""
        result = SweepResult()
        while True:
            batch = await self._sweep_batch()
            if batch is None:
                return result

            result.swept = True
            result.failed.extend(job.job_id for job in batch.failed)
            result.stalled.extend(job.job_id for job in batch.stalled)
            _log_changes(batch)

            full = self._batch_size in (len(batch.failed), len(batch.stalled))
            if not full:
                return result

    async def _sweep_batch(self) -> _Batch | None:
        """Change one batch of jobs, or return None if another replica has the lock."""
        clock_time = self._now()
        async with (
            driver_connection(self._engine) as connection,
            connection.transaction(),
        ):
            now = await sweep_time(connection, clock_time)
            since = self._watching(await sweep_time(connection, None))
            if not await try_sweep_lock(connection):
                return None
            failed = await fail_timed_out(connection, now, self._batch_size, since)
            stalled = await flag_stalled(connection, now, self._batch_size, since)
        return _Batch(stalled=stalled, failed=failed)

    def _watching(self, database_now: datetime) -> datetime:
        """Return the time silence is counted from, restarting it after a gap."""
        if self._last_contact is None:
            restart = self._watching_since is None
        else:
            restart = database_now - self._last_contact > self._gap
        if restart or self._watching_since is None:
            self._watching_since = database_now
            logger.info("liveness_watching", since=database_now.isoformat())
        self._last_contact = database_now
        return self._watching_since

    def _now(self) -> datetime | None:
        if self._clock is None:
            return None
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError(
                f"The liveness clock returned {now.isoformat()} without a time zone. "
                "Return an aware datetime such as datetime.now(UTC)"
            )
        return now


def _log_changes(batch: _Batch) -> None:
    """Log each committed change of a batch."""
    for job in batch.failed:
        logger.warning(
            "job_timed_out",
            job_id=job.job_id,
            attempt=job.attempt,
            silent_seconds=job.silent_seconds,
            heartbeat_timeout_seconds=job.timeout_seconds,
        )
    for job in batch.stalled:
        logger.warning(
            "job_stalled",
            job_id=job.job_id,
            attempt=job.attempt,
            silent_seconds=job.silent_seconds,
            stall_timeout_seconds=job.timeout_seconds,
        )
