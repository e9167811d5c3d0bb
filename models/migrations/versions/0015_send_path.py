"""Send path: held campaign recipients found by index

`send_batch` asks for the earliest held recipient of the message after every batch; without
this partial index that read every recipient row of the message (100 batches of a 100,000
audience: 10 million rows).

Revision ID: 0015_send_path
Revises: 0014_membership_triggers
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_send_path"
down_revision: str | Sequence[str] | None = "0014_membership_triggers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_campaign_recipients_held",
        "campaign_recipients",
        ["message_id", "local_send_at"],
        postgresql_where=sa.text("status = 'held'"),
    )


def downgrade() -> None:
    op.drop_index("ix_campaign_recipients_held", table_name="campaign_recipients")
