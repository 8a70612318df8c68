"""Table definitions; the Alembic revisions must produce exactly this schema."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

JOB_STATUSES = ("pending", "processing", "completed", "failed", "cancelled", "deleted")
JOB_SOURCES = ("file", "url", "base")

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# PostgreSQL sorts an enum in declaration order, so sort_by=status is lifecycle order.
job_status = pg.ENUM(*JOB_STATUSES, name="job_status", create_type=False)
job_source = pg.ENUM(*JOB_SOURCES, name="job_source", create_type=False)

UTC_NOW = sa.text("now()")

jobs = sa.Table(
    "ingestion_jobs",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
    sa.Column("collection_id", sa.BigInteger, nullable=False),
    sa.Column("collection_name", sa.Text),
    sa.Column("owner", sa.Text),
    sa.Column("original_filename", sa.Text),
    sa.Column("file_path", sa.Text),
    sa.Column("file_url", sa.Text),
    sa.Column("file_size", sa.BigInteger),
    sa.Column("content_type", sa.Text),
    sa.Column("plugin_name", sa.Text, nullable=False),
    sa.Column(
        "plugin_params", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")
    ),
    sa.Column("source", job_source, nullable=False),
    sa.Column("external_id", sa.Text),
    sa.Column("status", job_status, nullable=False, server_default="pending"),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
    # Highest seq applied in the current attempt; NULL until an event carries one.
    sa.Column("last_seq", sa.BigInteger),
    sa.Column("document_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("progress_current", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("progress_total", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("progress_message", sa.Text),
    sa.Column("error_message", sa.Text),
    sa.Column("error_details", pg.JSONB),
    sa.Column("processing_stats", pg.JSONB),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=UTC_NOW
    ),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=UTC_NOW
    ),
    sa.Column("processing_started_at", sa.DateTime(timezone=True)),
    sa.Column("processing_completed_at", sa.DateTime(timezone=True)),
    sa.Column("cancel_requested_at", sa.DateTime(timezone=True)),
    sa.Column("last_event_at", sa.DateTime(timezone=True)),
    sa.Column("cancel_acknowledged_at", sa.DateTime(timezone=True)),
    # Set by the liveness sweeper when no event arrived for stall_timeout_seconds;
    # cleared by the next applied event.
    sa.Column("stalled_at", sa.DateTime(timezone=True)),
    sa.Column("stall_timeout_seconds", sa.Integer, nullable=False, server_default="60"),
    sa.Column(
        "heartbeat_timeout_seconds", sa.Integer, nullable=False, server_default="600"
    ),
    sa.UniqueConstraint("collection_id", "external_id"),
    sa.CheckConstraint("attempt >= 1", name="attempt_positive"),
    sa.CheckConstraint(
        "progress_current >= 0 AND progress_total >= 0", name="progress_not_negative"
    ),
    sa.CheckConstraint("document_count >= 0", name="document_count_not_negative"),
    sa.CheckConstraint(
        "stall_timeout_seconds >= 1 "
        "AND heartbeat_timeout_seconds >= stall_timeout_seconds",
        name="timeouts_ordered",
    ),
)

# One index per allowed sort column, each ending in id so that ties keep a stable order.
sa.Index(None, jobs.c.collection_id, jobs.c.created_at, jobs.c.id)
sa.Index(None, jobs.c.collection_id, jobs.c.updated_at, jobs.c.id)
sa.Index(None, jobs.c.collection_id, jobs.c.status, jobs.c.created_at, jobs.c.id)
sa.Index(None, jobs.c.collection_id, jobs.c.original_filename, jobs.c.id)
sa.Index(None, jobs.c.collection_id, jobs.c.file_size, jobs.c.id)
sa.Index(None, jobs.c.collection_id, jobs.c.processing_started_at, jobs.c.id)
# The summary reads recent failures and the oldest processing job from partial indexes.
sa.Index(
    "ix_ingestion_jobs_recent_failures",
    jobs.c.collection_id,
    jobs.c.updated_at,
    postgresql_where=jobs.c.status == "failed",
)
sa.Index(
    "ix_ingestion_jobs_processing_started",
    jobs.c.collection_id,
    jobs.c.processing_started_at,
    postgresql_where=jobs.c.status == "processing",
)

# The summary's processing durations of the last 24 hours.
sa.Index(
    "ix_ingestion_jobs_recent_completions",
    jobs.c.collection_id,
    jobs.c.processing_completed_at,
    postgresql_where=jobs.c.status == "completed",
)

# Prepared SQL of the hot paths (events, reading one job) selects these columns.
JOB_COLUMNS = ", ".join(column.name for column in jobs.c)
SELECT_JOB = f"SELECT {JOB_COLUMNS} FROM ingestion_jobs WHERE id = $1"  # noqa: S608

retry_outbox = sa.Table(
    "retry_outbox",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
    sa.Column(
        "job_id",
        sa.BigInteger,
        sa.ForeignKey(jobs.c.id, ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=UTC_NOW
    ),
    # When the row is next due. A claim moves it forward by the lease, so the row of a
    # replica that dies mid-send goes to another replica once the lease runs out.
    sa.Column(
        "next_attempt_at",
        sa.DateTime(timezone=True),
        nullable=False,
        server_default=UTC_NOW,
    ),
    sa.Column("tries", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text),
    sa.Column("delivered_at", sa.DateTime(timezone=True)),
    sa.Column("gave_up_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("job_id", "attempt"),
)

sa.Index(
    "ix_retry_outbox_due",
    retry_outbox.c.next_attempt_at,
    postgresql_where=sa.and_(
        retry_outbox.c.delivered_at.is_(None), retry_outbox.c.gave_up_at.is_(None)
    ),
)

# One row per recorded change of a job: worker events, operator actions and the
# tracker's own (stall flag, heartbeat timeout, failed forwarding). Streams read it in
# (tx, id) order. tx is the writing transaction's id, raised where needed so that a
# job's rows follow each other. A reader takes only rows whose tx is below the oldest
# running transaction, so its cursor never passes a row that commits later.
# Progress and heartbeat rows of a job within one second replace each other.
history = sa.Table(
    "ingestion_job_history",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
    sa.Column(
        "tx",
        sa.BigInteger,
        nullable=False,
        server_default=sa.text("(pg_current_xact_id())::text::bigint"),
    ),
    sa.Column(
        "job_id",
        sa.BigInteger,
        sa.ForeignKey(jobs.c.id, ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("collection_id", sa.BigInteger, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("seq", sa.BigInteger),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    # The job's status after the change.
    sa.Column("status", job_status, nullable=False),
    sa.Column(
        "changes", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")
    ),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column(
        "received_at",
        sa.DateTime(timezone=True),
        nullable=False,
        server_default=UTC_NOW,
    ),
    # When the first of the progress or heartbeat rows this row replaced arrived.
    sa.Column(
        "window_started_at",
        sa.DateTime(timezone=True),
        nullable=False,
        server_default=UTC_NOW,
    ),
    # Set on rows that failed the job: exception type and normalised message.
    sa.Column("error_type", sa.Text),
    sa.Column("error_cause", sa.Text),
    # The job in its response shape right after the change, as streams send it.
    sa.Column("job", sa.JSON, nullable=False),
)

sa.Index(None, history.c.job_id, history.c.id)
sa.Index(None, history.c.tx, history.c.id)
sa.Index(None, history.c.collection_id, history.c.tx, history.c.id)
sa.Index(
    "ix_ingestion_job_history_failures",
    history.c.collection_id,
    history.c.received_at,
    postgresql_where=history.c.error_cause.is_not(None),
)
