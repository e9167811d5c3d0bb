"""Flow metrics: what a flow did, from the journey and message ledgers.

`GET /v1/flows/{flow_id}/metrics` answers the flow's totals (all versions summed), the same
figures per version and per step id; `?version=N` (or `GET /v1/flows/{flow_id}/versions/{N}/
metrics`) narrows everything to one version. `since` / `until` (ISO 8601; UTC when no offset is
given) count only what happened in that window; `active` is then the journeys active at `until`.
How each figure is counted: `flows.metrics`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import Reader, SessionDep
from api.errors import ApiError, not_found
from flows.metrics import FlowMetrics, Window, flow_metrics
from models import Flow, FlowVersion

router = APIRouter(prefix="/v1/flows", tags=["flows"])

SINCE = Query(None, description="Count only what happened at or after this time (ISO 8601)")
UNTIL = Query(None, description="Count only what happened before this time (ISO 8601)")
INT_MAX = 2**31 - 1


def _window(since: datetime | None, until: datetime | None) -> Window:
    since, until = (t if t is None or t.tzinfo else t.replace(tzinfo=UTC) for t in (since, until))
    if since is not None and until is not None and since >= until:
        raise ApiError(
            422,
            "invalid_window",
            "`since` must be before `until`",
            [{"loc": "query.until", "message": "must be after `since`", "type": "value_error"}],
        )
    return Window(since=since, until=until)


async def _metrics(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    flow_id: uuid.UUID,
    version: int | None,
    window: Window,
) -> FlowMetrics:
    flow = await session.get(Flow, flow_id)
    if flow is None or flow.workspace_id != workspace_id:
        raise not_found("flow")
    if version is not None and await session.get(FlowVersion, (flow_id, version)) is None:
        raise not_found(f"version {version}")
    return await flow_metrics(session, workspace_id, flow_id, version=version, window=window)


@router.get("/{flow_id}/metrics", response_model=FlowMetrics)
async def get_flow_metrics(
    flow_id: uuid.UUID,
    principal: Reader,
    session: SessionDep,
    version: int | None = Query(None, ge=1, le=INT_MAX, description="Only this version"),
    since: datetime | None = SINCE,
    until: datetime | None = UNTIL,
) -> FlowMetrics:
    """Started, active, completed, exited and removed journeys (with reasons); sent, skipped
    (by reason), failed, delivered, opened, clicked, bounced and unsubscribed messages — for the
    flow, per version and per step."""
    window = _window(since, until)
    return await _metrics(session, principal.workspace_id, flow_id, version, window)


@router.get("/{flow_id}/versions/{version}/metrics", response_model=FlowMetrics)
async def get_version_metrics(
    flow_id: uuid.UUID,
    version: Annotated[int, Path(ge=1, le=INT_MAX)],
    principal: Reader,
    session: SessionDep,
    since: datetime | None = SINCE,
    until: datetime | None = UNTIL,
) -> FlowMetrics:
    """The figures of one version: its journeys, the steps they ran and the messages sent."""
    window = _window(since, until)
    return await _metrics(session, principal.workspace_id, flow_id, version, window)
