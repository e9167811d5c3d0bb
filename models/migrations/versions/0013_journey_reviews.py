"""The review queue of manual flows: send steps held until released through the API

Revision ID: 0013_journey_reviews
Revises: 0012_campaign_recipients
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_journey_reviews"
down_revision: str | Sequence[str] | None = "0012_campaign_recipients"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "journey_reviews",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("flow_id", sa.Uuid(), nullable=False),
        sa.Column("flow_version", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.String(length=64), nullable=False),
        sa.Column("journey_id", sa.Uuid(), nullable=False),
        sa.Column("profile_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("template_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.Column("decided_by", sa.String(length=255), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["flow_id"], ["flows.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["journey_id"], ["journeys.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["profile_id"], ["profiles.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_journey_reviews_queue",
        "journey_reviews",
        ["flow_id", "status", "created_at", "id"],
    )
    op.create_index(
        "uq_journey_reviews_step", "journey_reviews", ["journey_id", "step_id"], unique=True
    )
    # A profile's rows: the FK cascade when an identity merge or an erasure deletes a profile.
    op.create_index("ix_journey_reviews_profile", "journey_reviews", ["profile_id"])


def downgrade() -> None:
    op.drop_index("ix_journey_reviews_profile", table_name="journey_reviews")
    op.drop_index("uq_journey_reviews_step", table_name="journey_reviews")
    op.drop_index("ix_journey_reviews_queue", table_name="journey_reviews")
    op.drop_table("journey_reviews")
