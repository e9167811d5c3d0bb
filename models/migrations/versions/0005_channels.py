"""Channels: provider credentials (encrypted), VAPID keys, the local outbox

Revision ID: 0005_channels
Revises: 0003_imports
Create Date: 2026-11-26 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005_channels"
down_revision: str | Sequence[str] | None = "0003_imports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _workspace_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE")


def _created_at(name: str = "created_at") -> sa.Column:
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "channel_credentials",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=True),
        sa.Column(
            "config", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False
        ),
        _created_at("updated_at"),
        _workspace_fk(),
        sa.PrimaryKeyConstraint("workspace_id", "channel"),
    )
    op.create_table(
        "vapid_keys",
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("public_key", sa.String(length=128), nullable=False),
        sa.Column("private_key", sa.LargeBinary(), nullable=False),
        _created_at(),
        sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True),
        _workspace_fk(),
        sa.PrimaryKeyConstraint("workspace_id"),
    )
    op.create_table(
        "local_outbox",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.UUID(), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("to", sa.Text(), nullable=False),
        sa.Column("profile_id", sa.Uuid(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("html", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column(
            "payload", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False
        ),
        _created_at(),
        _workspace_fk(),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id"),
    )
    op.create_index(
        "ix_local_outbox_workspace_created", "local_outbox", ["workspace_id", "created_at"]
    )
    op.create_index("ix_local_outbox_workspace_to", "local_outbox", ["workspace_id", "to"])


def downgrade() -> None:
    op.drop_index("ix_local_outbox_workspace_to", table_name="local_outbox")
    op.drop_index("ix_local_outbox_workspace_created", table_name="local_outbox")
    op.drop_table("local_outbox")
    op.drop_table("vapid_keys")
    op.drop_table("channel_credentials")
