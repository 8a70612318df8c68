"""Background loop that sends outbox rows to the backend, safe with many replicas."""

from __future__ import annotations

import asyncio
import contextlib
import random
from datetime import timedelta

import structlog

from service.retries.forwarding import BackendForwarder, ForwardResult
from service.retries.store import Delivery, RetryStore

logger = structlog.get_logger(__name__)

# One row per claim: the job is read right before its send, and no claimed row waits
# behind others while its lease runs out.
CLAIM_BATCH = 1


class RetryDispatcher:
    """Claims due outbox rows with SKIP LOCKED and forwards each to the backend."""

    def __init__(
        self,
        store: RetryStore,
        forwarder: BackendForwarder,
        *,
        backoff_seconds: float,
        backoff_max_seconds: float,
        max_tries: int,
        poll_seconds: float,
        request_timeout_seconds: float,
    ) -> None:
        self._store = store
        self._forwarder = forwarder
        self._backoff = backoff_seconds
        self._backoff_max = backoff_max_seconds
        self._max_tries = max_tries
        self._poll = poll_seconds
        # One try (a download and an upload) must end within its deadline, and a claimed
        # row stays invisible to other replicas for a lease that outlasts that deadline.
        self._try_deadline = 2 * request_timeout_seconds + 5
        self._lease = timedelta(seconds=self._try_deadline + 30)
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look for due rows now instead of at the next poll."""
        self._wake.set()

    def backoff(self, tries: int) -> timedelta:
        """Return the wait after ``tries`` failures: doubling, capped, ±20% jitter."""
        base = min(self._backoff * 2 ** (tries - 1), self._backoff_max)
        return timedelta(seconds=base * random.uniform(0.8, 1.2))

    async def run(self) -> None:
        """Deliver due rows until cancelled; database errors are logged and retried."""
        logger.info("retry_dispatcher_started")
        failures = 0
        try:
            while True:
                try:
                    delivered = await self.run_once()
                    failures = 0
                except Exception:
                    failures += 1
                    logger.exception(
                        "retry_dispatch_failed", consecutive_failures=failures
                    )
                    await self._wait(min(self._poll * 2**failures, 10.0))
                    continue
                if delivered == 0:
                    await self._wait(self._poll)
        finally:
            logger.info("retry_dispatcher_stopped")

    async def _wait(self, seconds: float) -> None:
        """Sleep for ``seconds`` or until a retry request wakes the dispatcher."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        self._wake.clear()

    async def run_once(self) -> int:
        """Claim and handle one batch of due rows; return how many were claimed."""
        deliveries = await self._store.claim_due(CLAIM_BATCH, self._lease)
        for delivery in deliveries:
            await self._handle(delivery)
        return len(deliveries)

    async def _handle(self, delivery: Delivery) -> None:
        job = delivery.job
        log = logger.bind(
            job_id=job["id"], attempt=delivery.attempt, tries=delivery.tries
        )
        if job["status"] != "pending" or job["attempt"] != delivery.attempt:
            reason = f"job is {job['status']} at attempt {job['attempt']}"
            await self._store.abandon(delivery, reason)
            log.info("retry_forward_skipped", reason=reason)
            return

        try:
            # httpx's timeout bounds each read, so a backend that trickles bytes could
            # hold a try open for ever without this deadline.
            async with asyncio.timeout(self._try_deadline):
                result = await self._forwarder.forward(job, delivery.attempt)
        except TimeoutError:
            error = (
                f"the backend did not complete the request in {self._try_deadline} s"
            )
            result = ForwardResult(accepted=False, retryable=True, error=error)
        except Exception as exc:
            # A bug or an unforeseen input must not leave the row retried forever.
            log.exception("retry_forward_error")
            error = f"unexpected {type(exc).__name__}: {exc}"
            result = ForwardResult(accepted=False, retryable=True, error=error)
        if result.accepted:
            await self._store.mark_delivered(delivery)
            log.info("retry_forwarded", source=job["source"])
            return
        await self._handle_failure(delivery, result, log)

    async def _handle_failure(
        self,
        delivery: Delivery,
        result: ForwardResult,
        log: structlog.typing.FilteringBoundLogger,
    ) -> None:
        error = result.error or "unknown error"
        if result.retryable and delivery.tries < self._max_tries:
            delay = self.backoff(delivery.tries)
            await self._store.reschedule(delivery, delay, error)
            log.warning(
                "retry_forward_failed", error=error, next_try_in=delay.total_seconds()
            )
            return

        if result.retryable:
            message = f"Retry was not forwarded after {delivery.tries} tries: {error}"
        else:
            message = f"Retry was not forwarded: {error}"
        failed = await self._store.give_up(delivery, message, stage="retry_forwarding")
        log.warning("retry_forward_gave_up", error=error, job_failed=failed)
