"""SQL for retries: the job update and its outbox row, and the dispatcher's claims."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy import RowMapping
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine

from service.errors import StateConflict
from service.history.recorder import TRACKER_ACTOR, Change, record
from service.jobs.records import job_from_row
from service.jobs.schemas import Job
from service.jobs.store import check_plugin_params, check_urls, lock_job
from service.limits import ERROR_MESSAGE_MAX_CHARS, truncate
from service.store.engine import driver_of
from service.store.tables import jobs, retry_outbox

logger = structlog.get_logger(__name__)

RETRY_MESSAGE = "Queued for retry"


@dataclass(frozen=True, slots=True)
class Delivery:
    """A claimed outbox row with the job it forwards."""

    outbox_id: int
    attempt: int
    tries: int
    job: RowMapping


def not_retryable(job_id: int, status: str) -> StateConflict:
    """Build the 409 for a retry of a job that is not failed."""
    return StateConflict(
        f"Ingestion job {job_id} is {status}; only failed jobs can be retried"
    )


def _still_claimed(delivery: Delivery) -> sa.ColumnElement[bool]:
    """Match the outbox row only while this claim owns it.

    Each claim raises ``tries``, so a replica whose lease ran out and whose row another
    replica claimed since cannot overwrite that replica's outcome.
    """
    return sa.and_(
        retry_outbox.c.id == delivery.outbox_id,
        retry_outbox.c.tries == delivery.tries,
        retry_outbox.c.delivered_at.is_(None),
        retry_outbox.c.gave_up_at.is_(None),
    )


class RetryStore:
    """Retry requests and outbox rows over one engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def request_retry(
        self,
        collection_id: int,
        job_id: int,
        override_params: dict[str, Any] | None,
        actor: str,
    ) -> Job:
        """Move a failed job back to pending as a new attempt and queue its forwarding.

        The job update and the outbox row commit together, so a retry is either both
        recorded and forwarded, or neither.
        """
        params: sa.ColumnElement[Any] = jobs.c.plugin_params
        if override_params:
            override = check_plugin_params(override_params, "override_params")
            # A shallow merge: each top-level key of override_params replaces the job's.
            merge = jobs.c.plugin_params.op("||", return_type=JSONB)
            params = merge(sa.bindparam("override_params", override, type_=JSONB))
        statement = (
            sa.update(jobs)
            .where(
                jobs.c.id == job_id,
                jobs.c.collection_id == collection_id,
                jobs.c.status == "failed",
            )
            .values(
                status="pending",
                attempt=jobs.c.attempt + 1,
                plugin_params=params,
                progress_current=0,
                progress_total=0,
                progress_message=RETRY_MESSAGE,
                error_message=None,
                error_details=None,
                processing_stats=None,
                document_count=0,
                processing_started_at=None,
                processing_completed_at=None,
                cancel_requested_at=None,
                last_seq=None,
                updated_at=sa.func.now(),
            )
            .returning(*jobs.c)
        )

        async with self._engine.begin() as connection:
            old = await lock_job(connection, job_id, collection_id)
            row = (await connection.execute(statement)).mappings().first()
            if row is None:
                raise not_retryable(job_id, old["status"])
            # Raising here rolls the retry back, so the job stays failed.
            check_plugin_params(
                row["plugin_params"], "override_params (merged over plugin_params)"
            )
            if row["source"] == "url":
                check_urls(row["plugin_params"], "override_params.urls")
            await connection.execute(
                sa.insert(retry_outbox).values(job_id=job_id, attempt=row["attempt"])
            )
            change = Change(type="retry", actor=actor)
            await record(await driver_of(connection), change, row, old)

        logger.info("retry_requested", job_id=job_id, attempt=row["attempt"])
        return job_from_row(row)

    async def claim_due(self, limit: int, lease: timedelta) -> list[Delivery]:
        """Lease up to ``limit`` due outbox rows that no other replica holds."""
        due = (
            sa.select(retry_outbox.c.id)
            .where(
                retry_outbox.c.delivered_at.is_(None),
                retry_outbox.c.gave_up_at.is_(None),
                retry_outbox.c.next_attempt_at <= sa.func.now(),
            )
            .order_by(retry_outbox.c.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte("due")
        )
        claim = (
            sa.update(retry_outbox)
            .where(retry_outbox.c.id == due.c.id)
            .values(
                next_attempt_at=sa.func.now() + lease, tries=retry_outbox.c.tries + 1
            )
            .returning(
                retry_outbox.c.id,
                retry_outbox.c.job_id,
                retry_outbox.c.attempt,
                retry_outbox.c.tries,
            )
        )
        async with self._engine.begin() as connection:
            claimed = (await connection.execute(claim)).mappings().all()
            if not claimed:
                return []
            job_ids = [row["job_id"] for row in claimed]
            job_rows = (
                (
                    await connection.execute(
                        sa.select(jobs).where(jobs.c.id.in_(job_ids))
                    )
                )
                .mappings()
                .all()
            )

        by_id = {row["id"]: row for row in job_rows}
        return [
            Delivery(
                outbox_id=row["id"],
                attempt=row["attempt"],
                tries=row["tries"],
                job=by_id[row["job_id"]],
            )
            for row in claimed
        ]

    async def mark_delivered(self, delivery: Delivery) -> None:
        """Record that the backend accepted the forwarded retry."""
        async with self._engine.begin() as connection:
            await connection.execute(
                sa.update(retry_outbox)
                .where(_still_claimed(delivery))
                .values(delivered_at=sa.func.now(), last_error=None)
            )

    async def reschedule(
        self, delivery: Delivery, delay: timedelta, error: str
    ) -> None:
        """Make the row due again after ``delay``, keeping the error for operators."""
        async with self._engine.begin() as connection:
            await connection.execute(
                sa.update(retry_outbox)
                .where(_still_claimed(delivery))
                .values(next_attempt_at=sa.func.now() + delay, last_error=error)
            )

    async def abandon(self, delivery: Delivery, reason: str) -> None:
        """Close a row whose job moved on (cancelled, or reported by a worker)."""
        async with self._engine.begin() as connection:
            await connection.execute(
                sa.update(retry_outbox)
                .where(_still_claimed(delivery))
                .values(gave_up_at=sa.func.now(), last_error=reason)
            )

    async def give_up(self, delivery: Delivery, error_message: str, stage: str) -> bool:
        """Close the row and fail the job; False if the job or the claim moved on."""
        message = truncate(error_message, ERROR_MESSAGE_MAX_CHARS)
        fail_job = (
            sa.update(jobs)
            .where(
                jobs.c.id == delivery.job["id"],
                jobs.c.attempt == delivery.attempt,
                jobs.c.status == "pending",
            )
            .values(
                status="failed",
                error_message=message,
                error_details={
                    "stage": stage,
                    "exception_type": "RetryForwardingError",
                },
                progress_message=None,
                processing_completed_at=sa.func.now(),
                updated_at=sa.func.now(),
            )
            .returning(*jobs.c)
        )
        close_row = (
            sa.update(retry_outbox)
            .where(_still_claimed(delivery))
            .values(gave_up_at=sa.func.now(), last_error=message)
            .returning(retry_outbox.c.id)
        )
        async with self._engine.begin() as connection:
            if (await connection.execute(close_row)).first() is None:
                logger.warning(
                    "retry_claim_lost",
                    job_id=delivery.job["id"],
                    attempt=delivery.attempt,
                )
                return False
            old = await lock_job(
                connection, delivery.job["id"], delivery.job["collection_id"]
            )
            row = (await connection.execute(fail_job)).mappings().first()
            if row is None:
                return False
            change = Change(type="forward_failed", actor=TRACKER_ACTOR)
            await record(await driver_of(connection), change, row, old)
            return True
