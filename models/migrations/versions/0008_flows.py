"""Flows, their immutable versions and status log

Revision ID: 0008_flows
Revises: 0003_imports
Create Date: 2026-12-05 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008_flows"
down_revision: str | Sequence[str] | None = "0003_imports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _now(name: str) -> sa.Column:
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def _workspace() -> list:
    return [
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
    ]


def upgrade() -> None:
    op.create_table(
        "flows",
        sa.Column("id", sa.Uuid(), nullable=False),
        *_workspace(),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("draft", postgresql.JSONB(), nullable=False),
        sa.Column("live_version", sa.Integer(), nullable=True),
        sa.Column("trigger_type", sa.String(length=32), nullable=True),
        sa.Column("trigger_metric", sa.String(length=255), nullable=True),
        sa.Column("trigger_list_id", sa.Uuid(), nullable=True),
        sa.Column("trigger_segment_id", sa.Uuid(), nullable=True),
        _now("created_at"),
        _now("updated_at"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("uq_flows_name", "flows", ["workspace_id", "name"], unique=True)
    op.create_index(
        "ix_flows_router", "flows", ["workspace_id", "status", "trigger_type", "trigger_metric"]
    )
    op.create_index("ix_flows_trigger_list_id", "flows", ["trigger_list_id"])
    op.create_index("ix_flows_trigger_segment_id", "flows", ["trigger_segment_id"])
    op.create_table(
        "flow_versions",
        sa.Column("flow_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        *_workspace(),
        sa.Column("definition", postgresql.JSONB(), nullable=False),
        sa.Column("author", sa.String(length=255), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        _now("created_at"),
        sa.ForeignKeyConstraint(["flow_id"], ["flows.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("flow_id", "version"),
    )
    op.create_table(
        "flow_status_changes",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("flow_id", sa.Uuid(), nullable=False),
        *_workspace(),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("author", sa.String(length=255), nullable=False),
        _now("occurred_at"),
        sa.ForeignKeyConstraint(["flow_id"], ["flows.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_flow_status_changes_flow", "flow_status_changes", ["flow_id", "id"])


def downgrade() -> None:
    op.drop_table("flow_status_changes")
    op.drop_table("flow_versions")
    op.drop_index("ix_flows_trigger_segment_id", table_name="flows")
    op.drop_index("ix_flows_trigger_list_id", table_name="flows")
    op.drop_index("ix_flows_router", table_name="flows")
    op.drop_index("uq_flows_name", table_name="flows")
    op.drop_table("flows")
