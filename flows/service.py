"""Flows as a service: drafts, immutable published versions, and status transitions.

A flow has one editable draft. Publishing validates it and, when it differs from the live
version, stores it as version N+1 (never changed afterwards) and points the flow at it; the
trigger columns the event router reads are copied from it. Status transitions follow
`TRANSITIONS` and are logged in `flow_status_changes`. Callers commit, then tell running
journeys through `flows.hooks`.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.settings import Settings
from flows.definition import (
    EventTrigger,
    FlowDefinition,
    ListJoinedTrigger,
    SegmentEnteredTrigger,
    dump_definition,
)
from flows.validate import ValidationReport, validate_flow
from models import Flow, FlowStatus, FlowStatusChange, FlowVersion
from models.base import utcnow

S = FlowStatus
TRANSITIONS: dict[FlowStatus, set[FlowStatus]] = {
    S.draft: {S.live, S.deleted},
    S.live: {S.paused, S.manual, S.draft, S.deleted},
    S.manual: {S.live, S.deleted},
    S.paused: {S.live, S.draft, S.deleted},
    S.deleted: {S.paused},  # restore
}


class FlowError(Exception):
    """A refused operation: `code` and a message that says what to do."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class FlowInvalid(FlowError):
    def __init__(self, report: ValidationReport) -> None:
        summary = "; ".join(
            f"{i.step_id or 'flow'}{'.' + i.path if i.path else ''}: {i.message}"
            for i in report.errors[:5]
        )
        super().__init__(422, "invalid_flow", f"the flow has errors — {summary}")
        self.report = report


def trigger_columns(definition: FlowDefinition | None) -> dict[str, Any]:
    """The `flows.trigger_*` columns for a live definition (all None when there is none)."""
    cols: dict[str, Any] = dict.fromkeys(
        ("trigger_type", "trigger_metric", "trigger_list_id", "trigger_segment_id")
    )
    if definition is None:
        return cols
    trigger = definition.trigger
    cols["trigger_type"] = trigger.type
    if isinstance(trigger, EventTrigger):
        cols["trigger_metric"] = trigger.metric
    elif isinstance(trigger, ListJoinedTrigger):
        cols["trigger_list_id"] = trigger.list_id
    elif isinstance(trigger, SegmentEnteredTrigger):
        cols["trigger_segment_id"] = trigger.segment_id
    return cols


def _name_taken(name: str) -> FlowError:
    return FlowError(409, "conflict", f"a flow named {name!r} already exists in this workspace")


async def create_flow(
    session: AsyncSession, workspace_id: uuid.UUID, definition: FlowDefinition, author: str
) -> Flow:
    """A new flow in draft (nothing published yet)."""
    flow = Flow(
        workspace_id=workspace_id,
        name=definition.name,
        description=definition.description,
        draft=dump_definition(definition),
    )
    session.add(flow)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise _name_taken(definition.name) from None
    session.add(
        FlowStatusChange(
            flow_id=flow.id, workspace_id=workspace_id, to_status=S.draft, author=author
        )
    )
    await session.flush()
    return flow


async def update_draft(session: AsyncSession, flow: Flow, definition: FlowDefinition) -> Flow:
    """Replace the draft; the live version is untouched until the next publish."""
    if flow.status == S.deleted:
        raise FlowError(409, "flow_deleted", "restore the flow (status paused) before editing it")
    flow.draft = dump_definition(definition)
    flow.name, flow.description = definition.name, definition.description
    flow.updated_at = utcnow()
    session.add(flow)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise _name_taken(definition.name) from None
    return flow


async def live_definition(session: AsyncSession, flow: Flow) -> dict[str, Any] | None:
    if flow.live_version is None:
        return None
    row = await session.get(FlowVersion, (flow.id, flow.live_version))
    return row.definition if row else None


async def latest_version(session: AsyncSession, flow_id: uuid.UUID) -> int:
    return (
        await session.scalar(
            select(func.coalesce(func.max(FlowVersion.version), 0)).where(
                FlowVersion.flow_id == flow_id
            )
        )
    ) or 0


async def publish(
    session: AsyncSession,
    flow: Flow,
    *,
    author: str,
    message: str | None = None,
    settings: Settings | None = None,
) -> tuple[FlowVersion | None, ValidationReport]:
    """Publish the draft as version N+1 (None when it equals the live version already).
    Validation errors raise FlowInvalid; a draft flow goes live."""
    # One publisher at a time per flow: the version numbers stay dense and unique.
    await _lock(session, flow)
    if flow.status == S.deleted:
        raise FlowError(409, "flow_deleted", "restore the flow (status paused) before publishing")
    definition = FlowDefinition.model_validate(flow.draft)
    report = await validate_flow(session, flow.workspace_id, definition, settings=settings)
    if report.errors:
        raise FlowInvalid(report)
    stored = dump_definition(definition)
    if stored == await live_definition(session, flow):
        return None, report
    version = FlowVersion(
        flow_id=flow.id,
        version=await latest_version(session, flow.id) + 1,
        workspace_id=flow.workspace_id,
        definition=stored,
        author=author,
        message=message,
    )
    session.add(version)
    flow.live_version = version.version
    for key, value in trigger_columns(definition).items():
        setattr(flow, key, value)
    flow.updated_at = utcnow()
    if flow.status == S.draft:
        _log(session, flow, S.live, author)
    session.add(flow)
    await session.flush()
    return version, report


async def _lock(session: AsyncSession, flow: Flow) -> None:
    """Lock the flow's row for this transaction and reload it: changes to one flow (publish,
    status) run one at a time, each on the committed state."""
    query = select(Flow).where(Flow.id == flow.id).with_for_update()
    await session.execute(query.execution_options(populate_existing=True))


def _log(session: AsyncSession, flow: Flow, to: FlowStatus, author: str) -> None:
    session.add(
        FlowStatusChange(
            flow_id=flow.id,
            workspace_id=flow.workspace_id,
            from_status=flow.status,
            to_status=to,
            author=author,
        )
    )
    flow.status = to


async def change_status(
    session: AsyncSession, flow: Flow, to: FlowStatus, *, author: str
) -> FlowStatus | None:
    """Move the flow to `to`; returns the previous status, or None when it was already there.
    The caller commits, then tells running journeys (`flows.hooks.on_status_changed`)."""
    to = FlowStatus(to)
    await _lock(session, flow)
    current = FlowStatus(flow.status)
    if to == current:
        return None
    if to not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current]))
        raise FlowError(
            409,
            "invalid_transition",
            f"a {current} flow cannot become {to}; from {current}: {allowed}",
        )
    if to in (S.live, S.manual) and flow.live_version is None:
        raise FlowError(409, "not_published", "publish the flow before it can go live")
    _log(session, flow, to, author)
    flow.updated_at = utcnow()
    session.add(flow)
    await session.flush()
    return current


async def status_changes(session: AsyncSession, flow_id: uuid.UUID) -> list[FlowStatusChange]:
    query = select(FlowStatusChange).where(FlowStatusChange.flow_id == flow_id)
    return list((await session.execute(query.order_by(FlowStatusChange.id))).scalars())
