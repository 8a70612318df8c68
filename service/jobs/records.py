"""Conversion of stored rows into the Job response shape."""

from __future__ import annotations

from typing import Any, Protocol

from service.jobs.schemas import Job, Progress


def percentage(current: int, total: int, status: str) -> float:
    """Compute progress as min(current, total) / total * 100, rounded to 2 places."""
    if status == "completed":
        return 100.0
    if total <= 0:
        return 0.0
    return round(min(current, total) / total * 100, 2)


class Row(Protocol):
    """A stored row read by column name: a RowMapping or an asyncpg Record."""

    def __getitem__(self, key: str, /) -> Any: ...


def job_from_row(row: Row) -> Job:
    """Build the response shape from one ``ingestion_jobs`` row."""
    started = row["processing_started_at"]
    finished = row["processing_completed_at"]
    duration = None
    if started is not None and finished is not None:
        duration = round(max((finished - started).total_seconds(), 0.0), 3)

    return Job(
        id=row["id"],
        job_id=row["id"],
        collection_id=row["collection_id"],
        collection_name=row["collection_name"],
        owner=row["owner"],
        original_filename=row["original_filename"],
        file_path=row["file_path"],
        file_url=row["file_url"],
        file_size=row["file_size"],
        content_type=row["content_type"],
        plugin_name=row["plugin_name"],
        plugin_params=row["plugin_params"],
        source=row["source"],
        external_id=row["external_id"],
        status=row["status"],
        attempt=row["attempt"],
        document_count=row["document_count"],
        progress=Progress(
            current=row["progress_current"],
            total=row["progress_total"],
            percentage=percentage(
                row["progress_current"], row["progress_total"], row["status"]
            ),
            message=row["progress_message"],
        ),
        error_message=row["error_message"],
        error_details=row["error_details"],
        processing_stats=row["processing_stats"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        processing_started_at=started,
        processing_completed_at=finished,
        processing_duration_seconds=duration,
        cancel_requested_at=row["cancel_requested_at"],
        cancel_acknowledged_at=row["cancel_acknowledged_at"],
        last_event_at=row["last_event_at"],
        stalled=row["stalled_at"] is not None,
        stall_timeout_seconds=row["stall_timeout_seconds"],
        heartbeat_timeout_seconds=row["heartbeat_timeout_seconds"],
    )
