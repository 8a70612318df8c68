"""Add job history, liveness timeouts and the cancel acknowledgement.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    now = sa.text("now()")
    op.add_column(
        "ingestion_jobs",
        sa.Column("cancel_acknowledged_at", sa.DateTime(timezone=True)),
    )
    op.add_column("ingestion_jobs", sa.Column("stalled_at", sa.DateTime(timezone=True)))
    op.add_column(
        "ingestion_jobs",
        sa.Column(
            "stall_timeout_seconds", sa.Integer, nullable=False, server_default="60"
        ),
    )
    op.add_column(
        "ingestion_jobs",
        sa.Column(
            "heartbeat_timeout_seconds",
            sa.Integer,
            nullable=False,
            server_default="600",
        ),
    )
    op.create_check_constraint(
        op.f("ck_ingestion_jobs_timeouts_ordered"),
        "ingestion_jobs",
        "stall_timeout_seconds >= 1 "
        "AND heartbeat_timeout_seconds >= stall_timeout_seconds",
    )
    op.create_index(
        "ix_ingestion_jobs_recent_completions",
        "ingestion_jobs",
        ["collection_id", "processing_completed_at"],
        postgresql_where=sa.text("status = 'completed'"),
    )

    op.create_table(
        "ingestion_job_history",
        sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
        sa.Column(
            "tx",
            sa.BigInteger,
            nullable=False,
            server_default=sa.text("(pg_current_xact_id())::text::bigint"),
        ),
        sa.Column("job_id", sa.BigInteger, nullable=False),
        sa.Column("collection_id", sa.BigInteger, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("seq", sa.BigInteger),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column(
            "status", pg.ENUM(name="job_status", create_type=False), nullable=False
        ),
        sa.Column(
            "changes", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")
        ),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=now,
        ),
        sa.Column(
            "window_started_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=now,
        ),
        sa.Column("error_type", sa.Text),
        sa.Column("error_cause", sa.Text),
        sa.Column("job", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ingestion_job_history"),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["ingestion_jobs.id"],
            name="fk_ingestion_job_history_job_id_ingestion_jobs",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_ingestion_job_history_job_id_id", "ingestion_job_history", ["job_id", "id"]
    )
    op.create_index(
        "ix_ingestion_job_history_tx_id", "ingestion_job_history", ["tx", "id"]
    )
    op.create_index(
        "ix_ingestion_job_history_collection_id_tx_id",
        "ingestion_job_history",
        ["collection_id", "tx", "id"],
    )
    op.create_index(
        "ix_ingestion_job_history_failures",
        "ingestion_job_history",
        ["collection_id", "received_at"],
        postgresql_where=sa.text("error_cause IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_table("ingestion_job_history")
    op.drop_index("ix_ingestion_jobs_recent_completions", "ingestion_jobs")
    op.drop_constraint(
        op.f("ck_ingestion_jobs_timeouts_ordered"), "ingestion_jobs", type_="check"
    )
    for column in (
        "heartbeat_timeout_seconds",
        "stall_timeout_seconds",
        "stalled_at",
        "cancel_acknowledged_at",
    ):
        op.drop_column("ingestion_jobs", column)
