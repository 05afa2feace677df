"""Flow versions: a counter per tenant and flow that moves with every link or shadow write.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "flow_versions",
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("flow", sa.String(length=32), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "flow IN ('departments', 'customers', 'projects')", name=op.f("ck_flow_versions_flow")
        ),
        sa.PrimaryKeyConstraint("tenant", "flow", name=op.f("pk_flow_versions")),
    )


def downgrade() -> None:
    op.drop_table("flow_versions")
