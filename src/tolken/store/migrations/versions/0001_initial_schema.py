"""Initial schema: links, shadows, cursors, pending creates, failures, conflicts, runs, history.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cursors",
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("system", sa.String(length=32), nullable=False),
        sa.Column("resource", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "system", "resource", name=op.f("pk_cursors")),
    )
    op.create_table(
        "failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("flow", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=32), nullable=False),
        sa.Column("record_id", sa.String(length=200), nullable=False),
        sa.Column("error_class", sa.String(length=100), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved", sa.Boolean(), server_default=sa.text("(false)"), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "flow IN ('departments', 'customers', 'projects')", name=op.f("ck_failures_flow")
        ),
        sa.CheckConstraint("side IN ('poweroffice', 'pms')", name=op.f("ck_failures_side")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_failures")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_failures_tenant_resolved_next_attempt_at",
        "failures",
        ["tenant", "resolved", "next_attempt_at"],
        unique=False,
    )
    op.create_index(
        "uq_failures_open_record",
        "failures",
        ["tenant", "flow", "side", "record_id"],
        unique=True,
        sqlite_where=sa.text("resolved = 0"),
        postgresql_where=sa.text("NOT resolved"),
    )

    op.create_table(
        "links",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("flow", sa.String(length=32), nullable=False),
        sa.Column("pms_resource", sa.String(length=32), nullable=False),
        sa.Column("poweroffice_id", sa.String(length=200), nullable=False),
        sa.Column("pms_id", sa.String(length=200), nullable=False),
        sa.Column(
            "state", sa.String(length=32), server_default=sa.text("'active'"), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(flow = 'projects' AND pms_resource = 'projects') OR "
            "(flow IN ('departments', 'customers') AND pms_resource = 'customers')",
            name=op.f("ck_links_pms_resource"),
        ),
        sa.CheckConstraint(
            "flow IN ('departments', 'customers', 'projects')", name=op.f("ck_links_flow")
        ),
        sa.CheckConstraint(
            "state IN ('active', 'source-deleted', 'pms-deleted')", name=op.f("ck_links_state")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_links")),
        sa.UniqueConstraint(
            "tenant", "flow", "poweroffice_id", name=op.f("uq_links_tenant_flow_poweroffice_id")
        ),
        sa.UniqueConstraint(
            "tenant", "pms_resource", "pms_id", name=op.f("uq_links_tenant_pms_resource_pms_id")
        ),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "pending_creates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("flow", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=200), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column(
            "state", sa.String(length=32), server_default=sa.text("'pending'"), nullable=False
        ),
        sa.Column("created_id", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "flow IN ('departments', 'customers', 'projects')", name=op.f("ck_pending_creates_flow")
        ),
        sa.CheckConstraint(
            "state IN ('pending', 'done', 'abandoned')", name=op.f("ck_pending_creates_state")
        ),
        sa.CheckConstraint(
            "target IN ('poweroffice', 'pms')", name=op.f("ck_pending_creates_target")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_creates")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_pending_creates_idempotency_key")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_pending_creates_tenant_state", "pending_creates", ["tenant", "state"], unique=False
    )
    op.create_index(
        "uq_pending_creates_open_source",
        "pending_creates",
        ["tenant", "flow", "target", "source_id"],
        unique=True,
        sqlite_where=sa.text("state = 'pending'"),
        postgresql_where=sa.text("state = 'pending'"),
    )

    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "status", sa.String(length=32), server_default=sa.text("'running'"), nullable=False
        ),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("requests", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'ok', 'failed', 'stopped')", name=op.f("ck_runs_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_runs_tenant_started_at", "runs", ["tenant", "started_at"], unique=False)

    op.create_table(
        "conflicts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("flow", sa.String(length=32), nullable=False),
        sa.Column("link_id", sa.Integer(), nullable=False),
        sa.Column("field", sa.String(length=200), nullable=False),
        sa.Column("poweroffice_value", sa.JSON(), nullable=False),
        sa.Column("pms_value", sa.JSON(), nullable=False),
        sa.Column("shadow_value", sa.JSON(), nullable=False),
        sa.Column("policy", sa.String(length=32), nullable=False),
        sa.Column("winner", sa.String(length=32), nullable=False),
        sa.Column("resolved", sa.Boolean(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "flow IN ('departments', 'customers', 'projects')", name=op.f("ck_conflicts_flow")
        ),
        sa.CheckConstraint(
            "winner IN ('poweroffice', 'pms', 'parked')", name=op.f("ck_conflicts_winner")
        ),
        sa.ForeignKeyConstraint(
            ["link_id"], ["links.id"], name=op.f("fk_conflicts_link_id_links"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_conflicts_run_id_runs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conflicts")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_conflicts_link_id", "conflicts", ["link_id"], unique=False)
    op.create_index(
        "ix_conflicts_tenant_resolved", "conflicts", ["tenant", "resolved"], unique=False
    )

    op.create_table(
        "history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("link_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("direction", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "direction IN ('to_pms', 'to_poweroffice')", name=op.f("ck_history_direction")
        ),
        sa.ForeignKeyConstraint(
            ["link_id"], ["links.id"], name=op.f("fk_history_link_id_links"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_history_run_id_runs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_history")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_history_link_id_at", "history", ["link_id", "at"], unique=False)

    op.create_table(
        "shadows",
        sa.Column("link_id", sa.Integer(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("poweroffice_version", sa.BigInteger(), nullable=True),
        sa.Column("poweroffice_hash", sa.String(length=128), nullable=True),
        sa.Column("poweroffice_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pms_version", sa.BigInteger(), nullable=True),
        sa.Column("pms_hash", sa.String(length=128), nullable=True),
        sa.Column("pms_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["link_id"], ["links.id"], name=op.f("fk_shadows_link_id_links"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("link_id", name=op.f("pk_shadows")),
    )


def downgrade() -> None:
    op.drop_table("shadows")
    op.drop_index("ix_history_link_id_at", table_name="history")

    op.drop_table("history")
    op.drop_index("ix_conflicts_tenant_resolved", table_name="conflicts")
    op.drop_index("ix_conflicts_link_id", table_name="conflicts")

    op.drop_table("conflicts")
    op.drop_index("ix_runs_tenant_started_at", table_name="runs")

    op.drop_table("runs")
    op.drop_index(
        "uq_pending_creates_open_source",
        table_name="pending_creates",
        sqlite_where=sa.text("state = 'pending'"),
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.drop_index("ix_pending_creates_tenant_state", table_name="pending_creates")

    op.drop_table("pending_creates")
    op.drop_table("links")
    op.drop_index(
        "uq_failures_open_record",
        table_name="failures",
        sqlite_where=sa.text("resolved = 0"),
        postgresql_where=sa.text("NOT resolved"),
    )
    op.drop_index("ix_failures_tenant_resolved_next_attempt_at", table_name="failures")

    op.drop_table("failures")
    op.drop_table("cursors")
