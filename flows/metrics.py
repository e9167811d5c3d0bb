"""Flow statistics from the ledgers: per flow (all versions summed), per version and per step.

Three set-based aggregates per request, each grouped in PostgreSQL to a handful of rows (plus
one small query for the versions and their step ids, read from the definitions in SQL):

- `journeys` (one row per trip) → started, active, completed, exited and removed (with the
  reason the journey ended), grouped by version, the step the journey is at (or ended at),
  status and reason;
- `journey_steps` (the step outcome log) → entered, completed, skipped (by reason), failed per
  version and step;
- `messages` (the message ledger) → sent, skipped (by reason), failed, delivered, opened,
  clicked, bounced, unsubscribed per version and step (the same figures as a campaign's:
  `channels.ledger_metrics`).

Python only adds up those groups (tens of rows), never the journeys or messages themselves.

Attribution: a journey counts under the version it is on now (or ended on) — a publish moves
running journeys to the new version, so they count there; steps and messages count under the
version they ran on. Every version's figures therefore add up to the flow's.

The optional window `[since, until)` counts what happened in it: journeys started / ended,
step outcomes occurred, messages sent / skipped / failed / delivered / opened / clicked /
bounced / unsubscribed in it (each by its own timestamp). `active` is a snapshot: journeys
active at `until` (without `until`: now).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import and_, case, column, func, or_, select, true
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from channels.ledger_metrics import MessageCounts, Reasons, Window, ledger_counts
from models import FlowVersion, Message
from models.journeys import Journey, JourneyStatus, JourneyStep, StepOutcome


class JourneyCounts(BaseModel):
    started: int = Field(0, description="journeys that entered the flow")
    active: int = Field(0, description="journeys in the flow now (or at `until`)")
    completed: int = Field(0, description="journeys that reached the end of a path")
    exited: Reasons = Field(default_factory=Reasons, description="left on an exit condition")
    removed: Reasons = Field(
        default_factory=Reasons,
        description="taken out: flow filter, step deleted by an edit, restart, flow deleted…",
    )


class StepMetrics(BaseModel):
    step_id: str
    type: str | None = Field(description="from the definition; null for a step no version has")
    entered: int = 0
    completed: int = 0
    skipped: Reasons = Field(default_factory=Reasons)
    failed: int = 0
    active: int = Field(
        0, description="journeys active now (or at `until`) whose latest step is this one"
    )
    exited: Reasons = Field(default_factory=Reasons, description="journeys that left here")
    removed: Reasons = Field(default_factory=Reasons, description="journeys removed here")
    messages: MessageCounts = Field(default_factory=MessageCounts)


class VersionMetrics(BaseModel):
    version: int
    journeys: JourneyCounts = Field(default_factory=JourneyCounts)
    messages: MessageCounts = Field(default_factory=MessageCounts)


class FlowMetrics(BaseModel):
    flow_id: uuid.UUID
    version: int | None = Field(description="the version these figures are of; null: all")
    since: datetime | None
    until: datetime | None
    journeys: JourneyCounts
    messages: MessageCounts
    versions: list[VersionMetrics] = Field(description="the same figures per version")
    steps: list[StepMetrics] = Field(description="per step id, in the definition's order")


# --- the three aggregates -------------------------------------------------------------------


def _journeys_query(ws: uuid.UUID, flow_id: uuid.UUID, version: int | None, window: Window):
    j = Journey.__table__.c
    if window.until is None:
        active = j.status == JourneyStatus.active.value
    else:
        active = and_(
            j.started_at < window.until, or_(j.ended_at.is_(None), j.ended_at >= window.until)
        )
    query = (
        select(
            j.flow_version,
            j.current_step,
            j.status,
            j.end_reason,
            func.count().filter(window.holds(j.started_at)).label("started"),
            func.count().filter(window.holds(j.ended_at)).label("ended"),
            func.count().filter(active).label("active"),
        )
        .where(j.workspace_id == ws, j.flow_id == flow_id)
        .group_by(j.flow_version, j.current_step, j.status, j.end_reason)
    )
    return query.where(j.flow_version == version) if version is not None else query


def _steps_query(ws: uuid.UUID, flow_id: uuid.UUID, version: int | None, window: Window):
    s = JourneyStep.__table__.c
    reason = case((s.outcome == StepOutcome.skipped.value, s.reason)).label("reason")
    query = (
        select(s.flow_version, s.step_id, s.outcome, reason, func.count().label("n"))
        .where(s.flow_id == flow_id, s.workspace_id == ws, window.holds(s.occurred_at))
        .group_by(s.flow_version, s.step_id, s.outcome, reason)
    )
    return query.where(s.flow_version == version) if version is not None else query


def _messages_query(ws: uuid.UUID, flow_id: uuid.UUID, version: int | None, window: Window):
    m = Message.__table__.c
    ledger = ledger_counts(window)
    query = (
        select(m.flow_version, m.step_id, ledger.reason, *ledger.counts)
        # `flow_id = :id` implies `flow_id IS NOT NULL`: the partial index ix_messages_flow_step.
        .where(m.workspace_id == ws, m.flow_id == str(flow_id))
        .group_by(m.flow_version, m.step_id, ledger.reason)
    )
    return query.where(m.flow_version == version) if version is not None else query


# --- adding up the groups --------------------------------------------------------------------


class _Tally:
    """The figures being built: totals, per version, per step."""

    def __init__(self) -> None:
        self.journeys = JourneyCounts()
        self.messages = MessageCounts()
        self.versions: dict[int, VersionMetrics] = {}
        self.steps: dict[str, StepMetrics] = {}

    def version(self, version: int | None) -> VersionMetrics:
        v = version or 0
        if v not in self.versions:
            self.versions[v] = VersionMetrics(version=v)
        return self.versions[v]

    def step(self, step_id: str) -> StepMetrics:
        if step_id not in self.steps:
            self.steps[step_id] = StepMetrics(step_id=step_id, type=None)
        return self.steps[step_id]

    def add_journeys(self, rows: Iterable[Any]) -> None:
        for row in rows:
            targets = [self.journeys, self.version(row.flow_version).journeys]
            for counts in targets:
                counts.started += row.started
                counts.active += row.active
            step = self.step(row.current_step) if row.current_step else None
            if step is not None:
                step.active += row.active
            if row.status == JourneyStatus.completed.value:
                for counts in targets:
                    counts.completed += row.ended
            elif row.status in (JourneyStatus.exited.value, JourneyStatus.removed.value):
                for counts in [*targets, *([step] if step else [])]:
                    getattr(counts, row.status).add(row.end_reason, row.ended)

    def add_steps(self, rows: Iterable[Any]) -> None:
        for row in rows:
            self.version(row.flow_version)
            step = self.step(row.step_id)
            if row.outcome == StepOutcome.skipped.value:
                step.skipped.add(row.reason, row.n)
            elif row.outcome in (StepOutcome.entered.value, StepOutcome.completed.value):
                setattr(step, row.outcome, getattr(step, row.outcome) + row.n)
            elif row.outcome == StepOutcome.failed.value:
                step.failed += row.n

    def add_messages(self, rows: Iterable[Any]) -> None:
        for row in rows:
            targets = [self.messages, self.version(row.flow_version).messages]
            if row.step_id:
                targets.append(self.step(row.step_id).messages)
            for counts in targets:
                counts.add_row(row)


def _steps_of_versions(flow_id: uuid.UUID, version: int | None):
    """(version, step id, type) of every published version's steps, newest version first, in
    each definition's order — read in SQL, so no definition document is loaded."""
    v = FlowVersion.__table__.c
    steps = v.definition["steps"]
    array = case((func.jsonb_typeof(steps) == "array", steps), else_=func.jsonb_build_array())
    elements = func.jsonb_array_elements(array)
    step = elements.table_valued(column("value", JSONB), with_ordinality="n").render_derived("s")
    query = (
        select(
            v.version,
            step.c.value["id"].astext.label("id"),
            step.c.value["type"].astext.label("type"),
        )
        .select_from(FlowVersion.__table__.outerjoin(step, true()))
        .where(v.flow_id == flow_id)
        .order_by(v.version.desc(), step.c.n)
    )
    return query.where(v.version == version) if version is not None else query


async def flow_metrics(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    flow_id: uuid.UUID,
    *,
    version: int | None = None,
    window: Window = Window(),
) -> FlowMetrics:
    """The figures of a flow (or of one of its versions). The caller has checked that the flow
    (and version) belong to the workspace."""
    tally = _Tally()
    defined: dict[str, str | None] = {}
    for row in await session.execute(_steps_of_versions(flow_id, version)):
        tally.version(row.version)
        if row.id is not None:
            defined.setdefault(row.id, row.type)
    for step_id, step_type in defined.items():
        tally.step(step_id).type = step_type
    tally.add_journeys(
        await session.execute(_journeys_query(workspace_id, flow_id, version, window))
    )
    tally.add_steps(await session.execute(_steps_query(workspace_id, flow_id, version, window)))
    tally.add_messages(
        await session.execute(_messages_query(workspace_id, flow_id, version, window))
    )
    return FlowMetrics(
        flow_id=flow_id,
        version=version,
        since=window.since,
        until=window.until,
        journeys=tally.journeys,
        messages=tally.messages,
        versions=[tally.versions[v] for v in sorted(tally.versions)],
        # The definition's steps in order, then steps only the ledgers know (by id).
        steps=[tally.steps[i] for i in defined]
        + sorted((s for i, s in tally.steps.items() if i not in defined), key=_by_id),
    )


def _by_id(step: StepMetrics) -> str:
    return step.step_id


__all__ = [
    "FlowMetrics",
    "JourneyCounts",
    "MessageCounts",
    "Reasons",
    "StepMetrics",
    "VersionMetrics",
    "Window",
    "flow_metrics",
]
