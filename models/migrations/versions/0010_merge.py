"""Join the branches of segments, channels, templates, messages, flows and journeys.

They were written side by side off 0003 and touch separate tables; from here on the history is
one line again, so `alembic revision` has a single head to build on.

Revision ID: 0010_merge
Revises: 0004_segments, 0005_channels, 0006_templates, 0007_messages, 0008_flows, 0009_journeys
Create Date: 2026-11-24
"""

from collections.abc import Sequence

revision: str = "0010_merge"
down_revision: str | Sequence[str] | None = (
    "0004_segments",
    "0005_channels",
    "0006_templates",
    "0007_messages",
    "0008_flows",
    "0009_journeys",
)
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
