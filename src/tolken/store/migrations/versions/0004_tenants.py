"""Tenants: the fleet's registry with encrypted credentials, and the store's meta facts.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_POLICIES = "'newest-wins', 'poweroffice-wins', 'pms-wins', 'manual'"


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("poweroffice_client_key_token", sa.Text(), nullable=False),
        sa.Column("pms_api_key_token", sa.Text(), nullable=False),
        sa.Column("webhook_secret_token", sa.Text(), nullable=True),
        sa.Column("pms_base_url", sa.Text(), nullable=True),
        sa.Column("interval_seconds", sa.Float(), nullable=True),
        sa.Column("conflict_policy", sa.String(length=32), nullable=True),
        sa.Column("paused", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("state", sa.String(length=32), server_default=sa.text("'idle'"), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("failures_in_a_row", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('idle', 'queued', 'syncing', 'error')", name=op.f("ck_tenants_state")
        ),
        sa.CheckConstraint(
            f"conflict_policy IS NULL OR conflict_policy IN ({_POLICIES})",
            name=op.f("ck_tenants_conflict_policy"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
    )
    op.create_index("ix_tenants_paused_next_run_at", "tenants", ["paused", "next_run_at"])
    op.create_table(
        "store_meta",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_store_meta")),
    )


def downgrade() -> None:
    op.drop_table("store_meta")
    op.drop_index("ix_tenants_paused_next_run_at", table_name="tenants")
    op.drop_table("tenants")
