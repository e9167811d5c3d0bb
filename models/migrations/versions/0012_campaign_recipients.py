"""Campaign recipients: the audience of a campaign message, snapshotted at send time

Revision ID: 0012_campaign_recipients
Revises: 0011_campaigns
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_campaign_recipients"
down_revision: str | Sequence[str] | None = "0011_campaigns"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "campaign_recipients",
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("profile_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("path_id", sa.Uuid(), nullable=False),
        sa.Column("local_send_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("batch_no", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(["message_id"], ["campaign_messages.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["profile_id"], ["profiles.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("message_id", "profile_id"),
    )
    op.create_index(
        "ix_campaign_recipients_batch", "campaign_recipients", ["message_id", "batch_no"]
    )
    op.create_index("ix_campaign_recipients_profile", "campaign_recipients", ["profile_id"])


def downgrade() -> None:
    op.drop_index("ix_campaign_recipients_profile", table_name="campaign_recipients")
    op.drop_index("ix_campaign_recipients_batch", table_name="campaign_recipients")
    op.drop_table("campaign_recipients")
