"""High-volume rows reach their workspace through their parent: no workspace foreign key

`messages`, `message_events` and `events` go with their workspace through the profile (or the
message) whose foreign key cascades; their own `workspace_id` foreign key only cost an index
probe and a row lock on the workspace for every row written (the send path writes five such
rows per message). `event_outbox` never had one.

Revision ID: 0017_workspace_of_parent
Revises: 0016_message_contents
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017_workspace_of_parent"
down_revision: str | Sequence[str] | None = "0016_message_contents"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("messages", "message_events", "events")


def upgrade() -> None:
    for table in TABLES:
        op.drop_constraint(f"{table}_workspace_id_fkey", table, type_="foreignkey")


def downgrade() -> None:
    for table in TABLES:
        op.create_foreign_key(
            f"{table}_workspace_id_fkey",
            table,
            "workspaces",
            ["workspace_id"],
            ["id"],
            ondelete="CASCADE",
        )
