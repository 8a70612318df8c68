"""Create the jobs table and the retry outbox.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = ("pending", "processing", "completed", "failed", "cancelled", "deleted")
SOURCES = ("file", "url", "base")


def upgrade() -> None:
    job_status = pg.ENUM(*STATUSES, name="job_status")
    job_source = pg.ENUM(*SOURCES, name="job_source")
    job_status.create(op.get_bind())
    job_source.create(op.get_bind())
    now = sa.text("now()")

    op.create_table(
        "ingestion_jobs",
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
            "plugin_params",
            pg.JSONB,
            nullable=False,
            server_default=sa.text("'{}'::jsonb"),
        ),
        sa.Column(
            "source", pg.ENUM(name="job_source", create_type=False), nullable=False
        ),
        sa.Column("external_id", sa.Text),
        sa.Column(
            "status",
            pg.ENUM(name="job_status", create_type=False),
            nullable=False,
            server_default="pending",
        ),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
        sa.Column("last_seq", sa.BigInteger),
        sa.Column("document_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column(
            "progress_current", sa.BigInteger, nullable=False, server_default="0"
        ),
        sa.Column("progress_total", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("progress_message", sa.Text),
        sa.Column("error_message", sa.Text),
        sa.Column("error_details", pg.JSONB),
        sa.Column("processing_stats", pg.JSONB),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=now
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=now
        ),
        sa.Column("processing_started_at", sa.DateTime(timezone=True)),
        sa.Column("processing_completed_at", sa.DateTime(timezone=True)),
        sa.Column("cancel_requested_at", sa.DateTime(timezone=True)),
        sa.Column("last_event_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_ingestion_jobs"),
        sa.UniqueConstraint(
            "collection_id",
            "external_id",
            name="uq_ingestion_jobs_collection_id_external_id",
        ),
        sa.CheckConstraint("attempt >= 1", name="ck_ingestion_jobs_attempt_positive"),
        sa.CheckConstraint(
            "progress_current >= 0 AND progress_total >= 0",
            name="ck_ingestion_jobs_progress_not_negative",
        ),
        sa.CheckConstraint(
            "document_count >= 0", name="ck_ingestion_jobs_document_count_not_negative"
        ),
    )
    for columns in (
        ("collection_id", "created_at", "id"),
        ("collection_id", "updated_at", "id"),
        ("collection_id", "status", "created_at", "id"),
        ("collection_id", "original_filename", "id"),
        ("collection_id", "file_size", "id"),
        ("collection_id", "processing_started_at", "id"),
    ):
        op.create_index(
            "ix_ingestion_jobs_" + "_".join(columns), "ingestion_jobs", list(columns)
        )
    op.create_index(
        "ix_ingestion_jobs_recent_failures",
        "ingestion_jobs",
        ["collection_id", "updated_at"],
        postgresql_where=sa.text("status = 'failed'"),
    )
    op.create_index(
        "ix_ingestion_jobs_processing_started",
        "ingestion_jobs",
        ["collection_id", "processing_started_at"],
        postgresql_where=sa.text("status = 'processing'"),
    )

    op.create_table(
        "retry_outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column("job_id", sa.BigInteger, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=now
        ),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=now,
        ),
        sa.Column("tries", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        sa.Column("gave_up_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_retry_outbox"),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["ingestion_jobs.id"],
            name="fk_retry_outbox_job_id_ingestion_jobs",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("job_id", "attempt", name="uq_retry_outbox_job_id_attempt"),
    )
    op.create_index(
        "ix_retry_outbox_due",
        "retry_outbox",
        ["next_attempt_at"],
        postgresql_where=sa.text("delivered_at IS NULL AND gave_up_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("retry_outbox")
    op.drop_table("ingestion_jobs")
    pg.ENUM(name="job_source").drop(op.get_bind())
    pg.ENUM(name="job_status").drop(op.get_bind())
