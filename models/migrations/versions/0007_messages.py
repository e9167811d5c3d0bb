"""The message ledger: messages (one row per idempotency key) and their status history

Revision ID: 0007_messages
Revises: 0003_imports
Create Date: 2026-12-02 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_messages"
down_revision: str | Sequence[str] | None = "0003_imports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("profile_id", sa.UUID(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("source_type", sa.String(length=16), nullable=False),
        sa.Column("flow_id", sa.String(length=255), nullable=True),
        sa.Column("flow_version", sa.Integer(), nullable=True),
        sa.Column("step_id", sa.String(length=255), nullable=True),
        sa.Column("journey_id", sa.String(length=255), nullable=True),
        sa.Column("campaign_id", sa.UUID(), nullable=True),
        sa.Column("campaign_message_id", sa.UUID(), nullable=True),
        sa.Column("template_id", sa.UUID(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=512), nullable=False),
        sa.Column("transactional", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("skip_reason", sa.String(length=64), nullable=True),
        sa.Column("hold_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("to_address", sa.String(length=2048), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.Column("content_sha256", sa.String(length=64), nullable=True),
        sa.Column("provider", sa.String(length=32), nullable=True),
        sa.Column("provider_message_id", sa.String(length=255), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("sending_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("clicked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("bounced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["profile_id"], ["profiles.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "uq_messages_idempotency_key",
        "messages",
        ["workspace_id", "idempotency_key"],
        unique=True,
    )
    op.create_index(
        "ix_messages_provider_message_id",
        "messages",
        ["workspace_id", "provider_message_id"],
        postgresql_where=sa.text("provider_message_id IS NOT NULL"),
    )
    op.create_index(
        "ix_messages_smart_sending",
        "messages",
        ["workspace_id", "profile_id", "channel", "sent_at"],
        postgresql_where=sa.text("NOT transactional AND sent_at IS NOT NULL"),
    )
    op.create_index("ix_messages_profile_created", "messages", ["profile_id", "created_at"])
    op.create_index(
        "ix_messages_flow_step",
        "messages",
        ["workspace_id", "flow_id", "step_id"],
        postgresql_where=sa.text("flow_id IS NOT NULL"),
    )
    op.create_index(
        "ix_messages_campaign_message",
        "messages",
        ["workspace_id", "campaign_message_id"],
        postgresql_where=sa.text("campaign_message_id IS NOT NULL"),
    )
    op.create_table(
        "message_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("message_id", sa.UUID(), nullable=False),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column(
            "occurred_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "detail",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
        ),
        sa.Column("provider_event_id", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_message_events_message", "message_events", ["message_id", "occurred_at"])
    op.create_index(
        "uq_message_events_provider_event",
        "message_events",
        ["workspace_id", "provider_event_id"],
        unique=True,
        postgresql_where=sa.text("provider_event_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_message_events_provider_event", table_name="message_events")
    op.drop_index("ix_message_events_message", table_name="message_events")
    op.drop_table("message_events")
    op.drop_index("ix_messages_campaign_message", table_name="messages")
    op.drop_index("ix_messages_flow_step", table_name="messages")
    op.drop_index("ix_messages_profile_created", table_name="messages")
    op.drop_index("ix_messages_provider_message_id", table_name="messages")
    op.drop_index("ix_messages_smart_sending", table_name="messages")
    op.drop_index("uq_messages_idempotency_key", table_name="messages")
    op.drop_table("messages")
