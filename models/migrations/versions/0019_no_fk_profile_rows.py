"""No foreign key from `messages.profile_id` nor from `events.profile_id`

Each was checked for every row written (the claim of every message sent, the "Received" event
of every message accepted, every tracked event): the RI trigger's query, a probe and a row lock
on the profile, about a tenth of the database's work per email sent in `bench.send`. The
statement that writes these rows now takes the same lock itself (`FOR KEY SHARE`) and skips the
rows of a profile that is gone; erasure and merge delete or move them after deleting the profile
(see `models.profile.profile_of_row`).

Revision ID: 0019_no_fk_profile_rows
Revises: 0018_no_fk_content_outbox
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019_no_fk_profile_rows"
down_revision: str | Sequence[str] | None = "0018_no_fk_content_outbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("messages", "events")


def upgrade() -> None:
    for table in TABLES:
        op.drop_constraint(f"{table}_profile_id_fkey", table, type_="foreignkey")


def downgrade() -> None:
    for table in TABLES:
        op.execute(
            f"DELETE FROM {table} t"
            " WHERE NOT EXISTS (SELECT FROM profiles p WHERE p.id = t.profile_id)"
        )
        op.create_foreign_key(
            f"{table}_profile_id_fkey",
            table,
            "profiles",
            ["profile_id"],
            ["id"],
            ondelete="CASCADE",
        )
