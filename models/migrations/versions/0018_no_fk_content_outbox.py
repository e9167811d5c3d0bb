"""No foreign key from `messages.content_id` nor from `event_outbox.event_id`

Each was checked for every row the send path writes (a message of a shared copy, the outbox row
of its "Received" event): a probe and a row lock on the parent, about 8 % of the database's
work per email sent in `bench.send`. A shared content is written in the claim's transaction,
before its messages, and goes only with its workspace, as they do. An outbox row is written
with its event; erasure deletes a profile's outbox rows itself, and the dispatcher deletes a
row whose event is gone without routing it.

Revision ID: 0018_no_fk_content_outbox
Revises: 0017_workspace_of_parent
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018_no_fk_content_outbox"
down_revision: str | Sequence[str] | None = "0017_workspace_of_parent"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint("messages_content_id_fkey", "messages", type_="foreignkey")
    op.drop_constraint("event_outbox_event_id_fkey", "event_outbox", type_="foreignkey")


def downgrade() -> None:
    op.execute(
        "DELETE FROM event_outbox o WHERE NOT EXISTS (SELECT FROM events e WHERE e.id = o.event_id)"
    )
    op.create_foreign_key(
        "event_outbox_event_id_fkey",
        "event_outbox",
        "events",
        ["event_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_foreign_key(
        "messages_content_id_fkey", "messages", "message_contents", ["content_id"], ["id"]
    )
