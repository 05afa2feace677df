"""Job runs: one row per fleet job (reason, kind, duration, requests, 429s, outcome).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("worker", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "outcome", sa.String(length=16), server_default=sa.text("'running'"), nullable=False
        ),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column(
            "poweroffice_requests", sa.Integer(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column("pms_requests", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("throttled", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("changes", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "reason IN ('webhook', 'scheduled', 'resync', 'backfill')",
            name=op.f("ck_job_runs_reason"),
        ),
        sa.CheckConstraint("kind IN ('cycle', 'reconcile')", name=op.f("ck_job_runs_kind")),
        sa.CheckConstraint(
            "outcome IN ('running', 'ok', 'error', 'stopped')", name=op.f("ck_job_runs_outcome")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_runs")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_job_runs_tenant_started_at", "job_runs", ["tenant", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_job_runs_tenant_started_at", table_name="job_runs")
    op.drop_table("job_runs")
