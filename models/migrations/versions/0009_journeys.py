"""Journeys (the per-profile index of active journeys) and their step outcomes

Revision ID: 0009_journeys
Revises: 0003_imports
Create Date: 2026-12-05 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_journeys"
down_revision: str | Sequence[str] | None = "0003_imports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _now(name: str) -> sa.Column:
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "journeys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("flow_id", sa.Uuid(), nullable=False),
        sa.Column("flow_version", sa.Integer(), nullable=False),
        sa.Column("profile_id", sa.Uuid(), nullable=False),
        sa.Column("workflow_id", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("current_step", sa.String(length=64), nullable=True),
        _now("started_at"),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["profile_id"], ["profiles.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_journeys_active_profile",
        "journeys",
        ["workspace_id", "profile_id"],
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_index("ix_journeys_flow_profile", "journeys", ["flow_id", "profile_id", "started_at"])
    op.create_table(
        "journey_steps",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("journey_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("flow_id", sa.Uuid(), nullable=False),
        sa.Column("flow_version", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.Column("key", sa.String(length=255), nullable=False),
        _now("occurred_at"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_journey_steps_stats", "journey_steps", ["flow_id", "flow_version", "step_id", "outcome"]
    )
    op.create_index("ix_journey_steps_journey", "journey_steps", ["journey_id", "id"])
    op.create_index("uq_journey_steps_key", "journey_steps", ["journey_id", "key"], unique=True)


def downgrade() -> None:
    op.drop_table("journey_steps")
    op.drop_table("journeys")
