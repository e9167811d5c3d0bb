"""Checking a flow definition: errors block publishing, warnings do not.

Each issue names its step (`step_id`, None for the trigger, settings or entry) and a `path`
inside it (`next`, `branches[2].condition.all[0].count`, `trigger.list_id`). What is checked:

- graph: the entry and every `next`-like edge name a step; no cycles (a flow is a DAG); split
  branch counts (at most 10 + everyone else); unreachable steps (warning); a delay with no step
  after it (warning);
- trigger split without an event trigger;
- conditions (flow filter, condition and multi splits) with `segments.validate_condition` in
  flow mode, so "since starting this flow" timeframes are allowed;
- references: lists, segments, templates (and their channel), date properties;
- message templates, webhook bodies and alert messages rendered against the sample profile and
  the event the router really gives the flow's journeys: the sample event for an event trigger,
  the synthetic `Joined List` / `Entered Segment` event for list and segment triggers
  (`flows.validate_render`); a failure is an error at the step, with its line and missing name;
- a send step on a channel with no provider configured: its messages would go to the local
  outbox — a warning in development, an error in production.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from channels import credentials
from core.settings import Settings, get_settings
from flows.definition import (
    MAX_BRANCHES,
    ConditionSplit,
    DelayStep,
    EventTrigger,
    FlowDefinition,
    ListJoinedTrigger,
    ListStep,
    MultiSplit,
    RandomSplit,
    SegmentEnteredTrigger,
    SendStep,
    TriggerSplit,
    UpdateProfile,
    WaitForEvent,
    step_map,
)
from flows.validate_render import (
    action_problems,
    sample_event,
    template_problem,
    trigger_source_name,
)
from models import Channel, PropertyType, Template
from segments import validate_condition
from segments.validate import RESERVED_TYPES

DATE_TYPES = {PropertyType.date, PropertyType.datetime}


@dataclass
class Issue:
    step_id: str | None
    path: str
    message: str


@dataclass
class ValidationReport:
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def edges(step: Any) -> list[tuple[str, str | None]]:
    """Every outgoing edge with the path of the field that holds it."""
    match step:
        case ConditionSplit() | TriggerSplit():
            return [("yes", step.yes), ("no", step.no)]
        case MultiSplit():
            out = [(f"branches[{i}].next", b.next) for i, b in enumerate(step.branches)]
            return out + [("otherwise", step.otherwise)]
        case RandomSplit():
            return [(f"branches[{i}].next", b.next) for i, b in enumerate(step.branches)]
        case WaitForEvent():
            return [("on_event", step.on_event), ("on_timeout", step.on_timeout)]
        case _:
            return [("next", step.next)]


def pydantic_issues(exc: ValidationError) -> list[Issue]:
    """Shape errors as issues; a path under `steps[i]` is given that step's id when readable."""
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        out.append(Issue(None, ".".join(loc), err.get("msg", "")))
    return out


def graph_issues(defn: FlowDefinition) -> ValidationReport:
    report = ValidationReport()
    steps = step_map(defn)
    if defn.entry not in steps:
        report.errors.append(Issue(None, "entry", f"no step '{defn.entry}' to start with"))
    for step in defn.steps:
        for path, target in edges(step):
            if target is not None and target not in steps:
                report.errors.append(Issue(step.id, path, f"no step '{target}'"))
            if target == step.id:
                report.errors.append(Issue(step.id, path, "a step cannot lead to itself"))
        if isinstance(step, MultiSplit | RandomSplit) and len(step.branches) > MAX_BRANCHES:
            report.errors.append(
                Issue(
                    step.id,
                    "branches",
                    f"{len(step.branches)} branches: at most {MAX_BRANCHES} "
                    + ("(plus everyone else)" if isinstance(step, MultiSplit) else ""),
                )
            )
        if isinstance(step, DelayStep) and step.next is None:
            report.warnings.append(
                Issue(step.id, "next", "nothing follows this delay: the journey just ends later")
            )
    report.errors += _cycles(defn)
    reachable = _reachable(defn)
    for step in defn.steps:
        if step.id not in reachable:
            report.warnings.append(
                Issue(step.id, "", "no path from the entry reaches this step: it never runs")
            )
    return report


def _reachable(defn: FlowDefinition) -> set[str]:
    steps = step_map(defn)
    seen: set[str] = set()
    stack = [defn.entry] if defn.entry in steps else []
    while stack:
        sid = stack.pop()
        if sid in seen:
            continue
        seen.add(sid)
        stack += [t for _, t in edges(steps[sid]) if t in steps and t not in seen]
    return seen


def _cycles(defn: FlowDefinition) -> list[Issue]:
    """One error per back edge (self-loops are reported with the edges)."""
    steps = step_map(defn)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    out: list[Issue] = []
    for root in [s.id for s in defn.steps]:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(edges(steps[root])))]
        while stack:
            sid, it = stack[-1]
            for path, target in it:
                if target is None or target not in steps or target == sid:
                    continue
                if state.get(target) == 1:
                    message = f"leads back to '{target}': a flow cannot loop"
                    out.append(Issue(sid, path, message))
                elif target not in state:
                    state[target] = 1
                    stack.append((target, iter(edges(steps[target]))))
                    break
            else:
                state[sid] = 2
                stack.pop()
    return out


async def validate_flow(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    definition: FlowDefinition | dict[str, Any],
    *,
    settings: Settings | None = None,
) -> ValidationReport:
    """Every problem with `definition` in this workspace. A definition that does not parse
    returns its shape errors only."""
    if not isinstance(definition, BaseModel):
        try:
            definition = FlowDefinition.model_validate(definition)
        except ValidationError as exc:
            return ValidationReport(errors=pydantic_issues(exc))
    defn = definition
    report = graph_issues(defn)
    event_trigger = isinstance(defn.trigger, EventTrigger)
    for step in defn.steps:
        if isinstance(step, TriggerSplit) and not event_trigger:
            report.errors.append(Issue(step.id, "where", "a trigger split needs an event trigger"))
    # Conditions.
    conditions: list[tuple[str | None, str, Any]] = []
    if defn.settings.filter is not None:
        conditions.append((None, "settings.filter", defn.settings.filter))
    for step in defn.steps:
        if isinstance(step, ConditionSplit):
            conditions.append((step.id, "condition", step.condition))
        if isinstance(step, MultiSplit):
            for i, branch in enumerate(step.branches):
                conditions.append((step.id, f"branches[{i}].condition", branch.condition))
    for step_id, prefix, condition in conditions:
        for err in await validate_condition(session, workspace_id, condition, in_flow=True):
            report.errors.append(Issue(step_id, _join(prefix, err.path), err.message))
    await _references(session, workspace_id, defn, report)
    event = sample_event(defn, workspace_id, await trigger_source_name(session, workspace_id, defn))
    await _sends(session, workspace_id, defn, event, report, settings or get_settings())
    report.errors += [Issue(*problem) for problem in action_problems(defn, event)]
    return report


async def _ids(session: AsyncSession, table: str, ws: uuid.UUID, ids: set[uuid.UUID]) -> set:
    if not ids:
        return set()
    sql = text(f"SELECT id FROM {table} WHERE workspace_id = :ws AND id = ANY(:ids)")
    return set((await session.execute(sql, {"ws": ws, "ids": list(ids)})).scalars())


async def _references(
    session: AsyncSession, ws: uuid.UUID, defn: FlowDefinition, report: ValidationReport
) -> None:
    trigger = defn.trigger
    list_refs: list[tuple[str | None, str, uuid.UUID]] = []
    if isinstance(trigger, ListJoinedTrigger):
        list_refs.append((None, "trigger.list_id", trigger.list_id))
    list_refs += [(s.id, "list_id", s.list_id) for s in defn.steps if isinstance(s, ListStep)]
    found = await _ids(session, "lists", ws, {r[2] for r in list_refs})
    for step_id, path, list_id in list_refs:
        if list_id not in found:
            report.errors.append(Issue(step_id, path, f"no list {list_id} in this workspace"))
    if isinstance(trigger, SegmentEnteredTrigger):
        if not await _ids(session, "segments", ws, {trigger.segment_id}):
            message = f"no segment {trigger.segment_id} in this workspace"
            report.errors.append(Issue(None, "trigger.segment_id", message))

    date_steps = [s for s in defn.steps if isinstance(s, DelayStep) and s.until_date]
    updates = [s for s in defn.steps if isinstance(s, UpdateProfile)]
    names = {s.until_date.property for s in date_steps}
    names |= {p.property for s in updates for p in s.properties}
    types = dict(RESERVED_TYPES)
    if names - set(types):
        rows = await session.execute(
            text(
                "SELECT name, type FROM property_definitions "
                "WHERE workspace_id = :ws AND name = ANY(:names)"
            ),
            {"ws": ws, "names": sorted(names - set(types))},
        )
        types |= {name: PropertyType(kind) for name, kind in rows}
    for s in date_steps:
        prop = s.until_date.property
        if prop not in types:
            message = f"no profile property '{prop}' in this workspace"
            report.errors.append(Issue(s.id, "until_date.property", message))
        elif types[prop] not in DATE_TYPES:
            message = f"'{prop}' is a {types[prop].value}, not a date"
            report.errors.append(Issue(s.id, "until_date.property", message))
    for s in updates:
        for i, update in enumerate(s.properties):
            kind = types.get(update.property)
            path = f"properties[{i}].property"
            if update.op in ("increment", "decrement") and kind not in (None, PropertyType.number):
                message = f"'{update.property}' is a {kind.value}: only numbers {update.op}"
                report.errors.append(Issue(s.id, path, message))
            if update.op == "set_now" and kind not in (None, *DATE_TYPES):
                message = f"'{update.property}' is a {kind.value}, not a date"
                report.errors.append(Issue(s.id, path, message))
            if update.property in ("created_at", "updated_at"):
                report.errors.append(Issue(s.id, path, f"'{update.property}' is read-only"))


async def _sends(
    session: AsyncSession,
    ws: uuid.UUID,
    defn: FlowDefinition,
    event: dict[str, Any],
    report: ValidationReport,
    settings: Settings,
) -> None:
    """Send steps: the template exists, is for the step's channel and renders with `event`
    (the trigger event as the journey holds it); the channel is configured."""
    sends = [s for s in defn.steps if isinstance(s, SendStep)]
    if not sends:
        return
    templates = {
        t.id: t
        for t in (
            await session.execute(
                select(Template).where(
                    Template.workspace_id == ws,
                    Template.id.in_({s.template_id for s in sends}),
                )
            )
        ).scalars()
    }
    # A channel without a credentials row is in local mode (providers_for's `modes`); reading
    # the rows alone tells that without decrypting any secret.
    configured = set((await credentials.rows(session, ws)).keys())
    rendered: dict[uuid.UUID, str | None] = {}
    for s in sends:
        template = templates.get(s.template_id)
        if template is None:
            message = f"no template {s.template_id} in this workspace"
            report.errors.append(Issue(s.id, "template_id", message))
        elif Channel(template.channel) != Channel(s.channel):
            message = f"template '{template.name}' is for {template.channel}, not {s.channel}"
            report.errors.append(Issue(s.id, "template_id", message))
        else:
            if template.id not in rendered:
                rendered[template.id] = template_problem(template, event)
            if problem := rendered[template.id]:
                message = f"template '{template.name}' fails to render: {problem}"
                report.errors.append(Issue(s.id, "template_id", message))
        if Channel(s.channel) not in configured:
            message = (
                f"{s.channel} is not configured for this workspace: messages go to the local "
                "outbox (set it up under /v1/channels)"
            )
            issues = report.errors if settings.env == "production" else report.warnings
            issues.append(Issue(s.id, "channel", message))
