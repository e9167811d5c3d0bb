"""Telling running journeys that their flow changed: a new version, or a new status.

Called by the API after the change is committed (not yet by `waymark flows apply`). Journeys
of a flow are found
with the visibility query `WaymarkFlowId = "<id>" AND ExecutionStatus = "Running"` and each gets
a signal (fire-and-forget). The signal handlers belong to the runtime
(`workflows.journey.JourneyWorkflow`); while it is not installed there are no journeys, and
these do nothing. A failure to signal is logged, never raised: the change is already saved.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import structlog
from temporalio.client import Client, WorkflowHandle

log = structlog.get_logger(__name__)


def journeys_query(flow_id: uuid.UUID) -> str:
    return f'WaymarkFlowId = "{flow_id}" AND ExecutionStatus = "Running"'


async def running_journeys(temporal: Client, flow_id: uuid.UUID) -> AsyncIterator[WorkflowHandle]:
    async for execution in temporal.list_workflows(journeys_query(flow_id)):
        yield temporal.get_workflow_handle(execution.id, run_id=execution.run_id)


def _journey() -> Any | None:
    try:
        from workflows import journey
    except ImportError:
        return None
    return journey


async def _signal_all(
    temporal: Client | None, flow_id: uuid.UUID, signal: str, arg: Any, **bind: Any
) -> int:
    """Send `signal` (a JourneyWorkflow method name) to every running journey; how many."""
    journey = _journey()
    method = getattr(getattr(journey, "JourneyWorkflow", None), signal, None)
    if temporal is None or method is None:
        return 0
    sent = 0
    try:
        async for handle in running_journeys(temporal, flow_id):
            try:
                await handle.signal(method, arg)
                sent += 1
            except Exception as exc:  # finished between the query and the signal
                log.info("journey not signalled", workflow_id=handle.id, error=str(exc))
    except Exception as exc:
        log.warning(
            "could not signal journeys", flow_id=str(flow_id), signal=signal, error=str(exc)
        )
    log.info("journeys signalled", flow_id=str(flow_id), signal=signal, count=sent, **bind)
    return sent


async def on_published(
    temporal: Client | None, workspace_id: uuid.UUID, flow_id: uuid.UUID, version: int
) -> int:
    """Version `version` is live: journeys move to it at the step with the same id."""
    journey = _journey()
    make = getattr(journey, "DefinitionUpdatedInput", None)
    if make is None:
        return 0
    return await _signal_all(
        temporal, flow_id, "definition_updated", make(version=version), version=version
    )


async def on_status_changed(
    temporal: Client | None,
    workspace_id: uuid.UUID,
    flow_id: uuid.UUID,
    status: str,
    previous: str | None = None,
) -> int:
    """paused: journeys hold before their next step; live/manual: they go on (manual: sends wait
    for release); deleted: journeys are cancelled and counted as removed."""
    journey = _journey()
    make = getattr(journey, "FlowStatusChangedInput", None)
    if make is None:
        return 0
    return await _signal_all(temporal, flow_id, "flow_status_changed", make(status=status))
