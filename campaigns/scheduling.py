"""Register and remove a campaign message's scheduled send (a delayed Temporal workflow).

Scheduling starts `CampaignMessageWorkflow` now with a `start_delay`: Temporal keeps it durably
(it survives worker, API and Temporal restarts) and runs it at the start time, on the code
deployed then. The workflow id is deterministic, `campaign-message-{message_id}`, so scheduling
again (a new send time) replaces the earlier registration, and unscheduling finds it.

The start is `LOCAL_TIME_LEAD` before `send_at`: with recipient local time the first zone
(UTC+14) is due up to 26 hours before the campaign zone's `send_at`, so the workflow must run by
then; it reads the campaign's send settings and sleeps (a durable timer) until the first
recipient is actually due. With a fixed time zone it sleeps until `send_at` itself.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.service import RPCError, RPCStatusCode

from workflows.campaign_message import (
    CampaignMessageWorkflow,
    RunCampaignMessageInput,
    workflow_id,
)
from workflows.search_attributes import CAMPAIGN_ID, WORKSPACE_ID

# UTC+14 (the earliest zone) versus UTC-12 (the latest campaign zone), plus slack.
LOCAL_TIME_LEAD = timedelta(hours=27)


def start_delay(send_at: datetime, now: datetime | None = None) -> timedelta:
    now = now or datetime.now(UTC)
    return max(send_at - LOCAL_TIME_LEAD - now, timedelta(0))


async def schedule_message(
    temporal: Client,
    settings: Any,
    workspace_id: uuid.UUID,
    campaign_id: uuid.UUID,
    message_id: uuid.UUID,
    send_at: datetime,
) -> str:
    """Register the message's send (replacing an earlier registration); returns the workflow
    id. The message row must already be `scheduled` with this `send_at`: the workflow reads it."""
    wid = workflow_id(message_id)
    await temporal.start_workflow(
        CampaignMessageWorkflow.run,
        RunCampaignMessageInput(
            workspace_id=workspace_id, campaign_id=campaign_id, message_id=message_id
        ),
        id=wid,
        task_queue=settings.task_queue,
        start_delay=start_delay(send_at),
        id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(CAMPAIGN_ID, str(campaign_id)),
                SearchAttributePair(WORKSPACE_ID, str(workspace_id)),
            ]
        ),
    )
    return wid


async def unschedule_message(
    temporal: Client, settings: Any, workspace_id: uuid.UUID, message_id: uuid.UUID
) -> bool:
    """Remove the message's scheduled send (revert to draft, cancel, delete). True when a
    running or delayed workflow was terminated. Terminating mid-send is safe: recipients already
    sent keep their ledger rows, nobody gets a message twice if it is scheduled again."""
    handle = temporal.get_workflow_handle(workflow_id(message_id))
    try:
        description = await handle.describe()
        if description.status != WorkflowExecutionStatus.RUNNING:
            return False
        await handle.terminate(reason=f"campaign message {message_id} unscheduled")
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True
