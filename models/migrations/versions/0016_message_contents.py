"""Message contents: an email of the same copy for every recipient keeps its content once

`message_contents` holds the content shared by the messages of one send, with each recipient's
signed URLs as tags; `messages.content_id` references it (see `models.messages`).

Revision ID: 0016_message_contents
Revises: 0015_send_path
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0016_message_contents"
down_revision: str | Sequence[str] | None = "0015_send_path"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "message_contents",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column(
            "workspace_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey("workspaces.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_message_contents_workspace_id", "message_contents", ["workspace_id"], unique=False
    )
    op.add_column(
        "messages",
        sa.Column(
            "content_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey("message_contents.id"),
            nullable=True,
        ),
    )


def downgrade() -> None:
    op.drop_column("messages", "content_id")
    op.drop_index("ix_message_contents_workspace_id", table_name="message_contents")
    op.drop_table("message_contents")
