"""Membership outbox: list joins and segment entries owed to list- and segment-triggered flows

Statement-level triggers on `list_membership_changes` and `segment_membership_changes` write one
`membership_outbox` row per join / entry and per live (or manual) flow with that trigger, in the
transaction that logged the change, and wake the outbox dispatcher. A segment refresh that is the
first computation of a definition (a new or edited segment) sets the transaction-local setting
`waymark.segment_baseline` to `on` around its statement (`segments.membership`): its entries are
logged but trigger no flow.

Revision ID: 0014_membership_triggers
Revises: 0013_journey_reviews
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_membership_triggers"
down_revision: str | Sequence[str] | None = "0013_journey_reviews"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FUNCTIONS = """
CREATE FUNCTION waymark_list_joined_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    queued bigint;
BEGIN
    INSERT INTO membership_outbox
        (workspace_id, flow_id, profile_id, trigger_type, list_id, change_id, source, occurred_at)
    SELECT c.workspace_id, f.id, c.profile_id, 'list_joined', c.list_id, c.id, c.source,
           c.occurred_at
    FROM waymark_new_changes c
    JOIN flows f ON f.trigger_list_id = c.list_id AND f.workspace_id = c.workspace_id
    WHERE c.action = 'joined' AND f.trigger_type = 'list_joined'
      AND f.status IN ('live', 'manual')
    ORDER BY c.id, f.id;
    GET DIAGNOSTICS queued = ROW_COUNT;
    IF queued > 0 THEN
        PERFORM pg_notify('waymark_event_outbox', '');
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION waymark_segment_entered_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    queued bigint;
BEGIN
    IF current_setting('waymark.segment_baseline', true) = 'on' THEN
        RETURN NULL;  -- the first computation of a definition: logged, triggers nothing
    END IF;
    INSERT INTO membership_outbox
        (workspace_id, flow_id, profile_id, trigger_type, segment_id, change_id, occurred_at)
    SELECT c.workspace_id, f.id, c.profile_id, 'segment_entered', c.segment_id, c.id,
           c.occurred_at
    FROM waymark_new_changes c
    JOIN flows f ON f.trigger_segment_id = c.segment_id AND f.workspace_id = c.workspace_id
    WHERE c.action = 'entered' AND f.trigger_type = 'segment_entered'
      AND f.status IN ('live', 'manual')
    ORDER BY c.id, f.id;
    GET DIAGNOSTICS queued = ROW_COUNT;
    IF queued > 0 THEN
        PERFORM pg_notify('waymark_event_outbox', '');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER list_membership_changes_outbox AFTER INSERT ON list_membership_changes
    REFERENCING NEW TABLE AS waymark_new_changes
    FOR EACH STATEMENT EXECUTE FUNCTION waymark_list_joined_outbox();

CREATE TRIGGER segment_membership_changes_outbox AFTER INSERT ON segment_membership_changes
    REFERENCING NEW TABLE AS waymark_new_changes
    FOR EACH STATEMENT EXECUTE FUNCTION waymark_segment_entered_outbox();
"""


def upgrade() -> None:
    op.create_table(
        "membership_outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("flow_id", sa.Uuid(), nullable=False),
        sa.Column("profile_id", sa.Uuid(), nullable=False),
        sa.Column("trigger_type", sa.String(length=32), nullable=False),
        sa.Column("list_id", sa.Uuid(), nullable=True),
        sa.Column("segment_id", sa.Uuid(), nullable=True),
        sa.Column("change_id", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["flow_id"], ["flows.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["profile_id"], ["profiles.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute(_FUNCTIONS)


def downgrade() -> None:
    op.execute(
        "DROP TRIGGER IF EXISTS segment_membership_changes_outbox ON segment_membership_changes"
    )
    op.execute("DROP TRIGGER IF EXISTS list_membership_changes_outbox ON list_membership_changes")
    op.execute("DROP FUNCTION IF EXISTS waymark_segment_entered_outbox()")
    op.execute("DROP FUNCTION IF EXISTS waymark_list_joined_outbox()")
    op.drop_table("membership_outbox")
