"""Campaigns: campaigns, their paths (audiences) and their messages

Revision ID: 0011_campaigns
Revises: 0010_merge
Create Date: 2026-11-24 16:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011_campaigns"
down_revision: str | Sequence[str] | None = "0010_merge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _now(name: str) -> sa.Column:
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def _uuids(name: str) -> sa.Column:
    return sa.Column(name, postgresql.ARRAY(sa.UUID()), server_default="{}", nullable=False)


def _jsonb(name: str) -> sa.Column:
    return sa.Column(
        name, postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("tag", sa.String(length=100), nullable=True),
        sa.Column("description", sa.String(length=2000), nullable=True),
        sa.Column("color", sa.String(length=16), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("use_recipient_local_time", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("passed_local_time", sa.String(16), server_default="next_day", nullable=False),
        sa.Column("settings_locked_forever", sa.Boolean(), server_default="false", nullable=False),
        _now("created_at"),
        _now("updated_at"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_campaigns_workspace_created", "campaigns", ["workspace_id", "created_at"])
    op.create_table(
        "campaign_paths",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("campaign_id", sa.UUID(), nullable=False),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        _uuids("include_lists"),
        _uuids("include_segments"),
        _uuids("exclude_lists"),
        _uuids("exclude_segments"),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_campaign_paths_campaign", "campaign_paths", ["campaign_id", "position"])
    op.create_table(
        "campaign_messages",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("campaign_id", sa.UUID(), nullable=False),
        sa.Column("path_id", sa.UUID(), nullable=False),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("tag", sa.String(length=100), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("template_id", sa.UUID(), nullable=True),
        _jsonb("sender"),
        sa.Column("send_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("smart_sending", sa.Boolean(), server_default="true", nullable=False),
        _jsonb("utm"),
        sa.Column("strategy", sa.String(16), server_default="fixed", nullable=False),
        sa.Column("throttle_percent", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(32), server_default="draft", nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        _now("created_at"),
        _now("updated_at"),
        sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["path_id"], ["campaign_paths.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["template_id"], ["templates.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_campaign_messages_path", "campaign_messages", ["path_id", "send_at"])
    op.create_index("ix_campaign_messages_campaign", "campaign_messages", ["campaign_id"])


def downgrade() -> None:
    op.drop_table("campaign_messages")
    op.drop_table("campaign_paths")
    op.drop_table("campaigns")
