"""Frontend endpoint that reads the history of one job."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency, Provide
from litestar.params import QueryParameter
from sqlalchemy.ext.asyncio import AsyncEngine

from service.auth import require_scope
from service.history.schemas import JobHistory
from service.history.store import HistoryStore
from service.http.openapi import API_SECURITY, errors
from service.jobs.controller import CollectionId, JobId
from service.limits import BIGINT_MAX, INT_MAX

HISTORY_PAGE_MAX = 1000
HISTORY_PAGE_DEFAULT = 500

History = NamedDependency[HistoryStore]


def provide_history(engine: NamedDependency[AsyncEngine]) -> HistoryStore:
    """Build the history store over the app's engine."""
    return HistoryStore(engine)


class JobHistoryController(Controller):
    """The recorded changes of a collection's jobs."""

    path = "/collections/{collection_id:int}"
    guards = [require_scope("api")]  # noqa: RUF012 - Litestar reads this class attribute
    tags = ["jobs"]  # noqa: RUF012 - Litestar reads this class attribute
    security = API_SECURITY
    dependencies = {  # noqa: RUF012 - Litestar reads this class attribute
        "history": Provide(provide_history, sync_to_thread=False)
    }

    @get(
        "/ingestion-jobs/{job_id:int}/history",
        summary="Read the history of an ingestion job",
        description="Returns every recorded change of the job, oldest first: worker "
        "events, retries and cancels with who made them, plus a summary of each "
        "attempt. Consecutive progress events of one attempt that arrive within a "
        "second of the first are kept as one entry with the latest values, and so "
        "are consecutive heartbeats. Status changes are always kept. Page with after "
        "and limit, passing next_after as after while has_more is true.",
        responses=errors(400, 401, 403, 404, 503),
    )
    async def get_history(
        self,
        history: History,
        collection_id: CollectionId,
        job_id: JobId,
        attempt: Annotated[
            int | None,
            QueryParameter(
                ge=1, le=INT_MAX, description="Only the entries of this attempt."
            ),
        ] = None,
        limit: Annotated[
            int,
            QueryParameter(
                ge=1, le=HISTORY_PAGE_MAX, description="Maximum entries per page."
            ),
        ] = HISTORY_PAGE_DEFAULT,
        after: Annotated[
            int | None,
            QueryParameter(
                ge=0,
                le=BIGINT_MAX,
                description="Return only entries with an id above this one: the "
                "next_after of the previous page.",
            ),
        ] = None,
    ) -> JobHistory:
        return await history.read(
            collection_id, job_id, attempt=attempt, after=after, limit=limit
        )
