"""Erasure (GDPR "right to be forgotten"): a profile's personal data, and its running journeys.

Two steps, in this order, used by the REST API and the CLI:

1. `erase_profile` deletes the profile and everything stored about it in the caller's
   transaction. Foreign keys cascade to consents and their history, aliases, list memberships
   and their change log, and push subscriptions. Its events (with their outbox rows) and its
   messages (with their history) have no foreign key to it (`models.profile.profile_of_row`):
   they go in the statement after the profile's, so that a writer that locked the profile has
   committed by then (its rows go too), and none can write for it any more. Its messages are
   locked before the profile is deleted, in the order the send path and webhooks lock them
   (`ingest.profiles.lock_messages`). Suppressions are
   keyed by address, not profile, so the ones for its email and phone go explicitly.
   Segment memberships go first, explicitly (`segments.membership.remove_profiles`), so each
   segment's `member_count` drops with them; no exit is logged: the profile's change log
   (`segment_membership_changes`, like `list_membership_changes`) references it and is erased
   with it, so the history reads as if the person had never been a member — its entries and
   exits are gone together and the history chart's daily counts stay consistent.
2. `terminate_journeys` then terminates the profile's running journeys in Temporal.

The database goes first and is committed before Temporal is called: the personal data is gone
even while Temporal is briefly unreachable, and a journey that survives (Temporal down, or one
started a moment ago and not yet visible to the list query) finds no profile when it wakes and
ends there. The reverse order could leave personal data behind a successful termination.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from ingest.profiles import lock_messages
from workflows.search_attributes import PROFILE_ID, WORKSPACE_ID

log = structlog.get_logger(__name__)

ERASED_REASON = "profile erased"
_RPC_TIMEOUT = timedelta(seconds=10)

_DELETE_PROFILE = text(
    "DELETE FROM profiles WHERE id = :id AND workspace_id = :ws RETURNING email, phone"
)
# After `_DELETE_PROFILE`, in a statement of its own (see the module's docstring).
_DELETE_ROWS = text(
    """
    WITH events_gone AS (
        DELETE FROM events WHERE workspace_id = :ws AND profile_id = :id RETURNING id
    ), outbox_gone AS (
        DELETE FROM event_outbox WHERE event_id IN (SELECT id FROM events_gone)
    )
    DELETE FROM messages WHERE workspace_id = :ws AND profile_id = :id
    """
)
_DELETE_SUPPRESSIONS = text(
    """
    DELETE FROM suppressions
    WHERE workspace_id = :ws
      AND ((channel = 'email' AND address = lower(:email))
           OR (channel IN ('sms', 'whatsapp') AND address = :phone))
    """
)


async def erase_profile(
    session: AsyncSession, workspace_id: uuid.UUID, profile_id: uuid.UUID
) -> bool:
    """Delete a profile of this workspace and all its personal data; False if there is none.

    Does not commit: the caller commits, then calls `terminate_journeys`.
    """
    from segments.membership import remove_profiles  # segments build on ingest

    await remove_profiles(session, workspace_id, [profile_id], log_exits=False)
    await lock_messages(session, workspace_id, profile_id)
    row = (
        await session.execute(_DELETE_PROFILE, {"id": profile_id, "ws": workspace_id})
    ).one_or_none()
    if row is None:
        return False
    await session.execute(_DELETE_ROWS, {"id": profile_id, "ws": workspace_id})
    if row.email or row.phone:
        await session.execute(
            _DELETE_SUPPRESSIONS, {"ws": workspace_id, "email": row.email, "phone": row.phone}
        )
    return True


def journeys_query(workspace_id: uuid.UUID, profile_id: uuid.UUID) -> str:
    """The visibility query for a profile's running journeys (ids are UUIDs: nothing to escape)."""
    return (
        f'{WORKSPACE_ID.name} = "{workspace_id}" AND {PROFILE_ID.name} = "{profile_id}" '
        'AND ExecutionStatus = "Running"'
    )


async def terminate_journeys(client: Client, workspace_id: uuid.UUID, profile_id: uuid.UUID) -> int:
    """Terminate every running workflow of this profile; returns how many were terminated.

    A workflow that ends by itself between listing and terminating is not an error.
    """
    executions = [
        execution
        async for execution in client.list_workflows(
            journeys_query(workspace_id, profile_id), rpc_timeout=_RPC_TIMEOUT
        )
    ]

    async def terminate(workflow_id: str, run_id: str | None) -> bool:
        handle = client.get_workflow_handle(workflow_id, run_id=run_id)
        try:
            await handle.terminate(reason=ERASED_REASON, rpc_timeout=_RPC_TIMEOUT)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return True

    done = await asyncio.gather(*(terminate(e.id, e.run_id) for e in executions))
    terminated = sum(done)
    if terminated:
        log.info("journeys terminated", profile_id=str(profile_id), count=terminated)
    return terminated
