"""Checking a condition: its shape (pydantic), its size, and what it refers to in the workspace.

Errors carry the path of the bad node or field: `all[1].any[0].count` means the `count` field of
the first child of the `any` group that is the second child of the root `all` group; `not` steps
into a `not` group; the root node itself is "". `parse_condition` turns JSON into a `Condition`
or raises `ConditionInvalid`; `validate_condition` checks a condition against the workspace
(lists, segments and segment cycles, property types) and never touches the database for rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from ingest.traits import RESERVED
from models import PropertyType
from segments.conditions import (
    DATE_OPS,
    MAX_DEPTH,
    MAX_NODES,
    Behaviour,
    Condition,
    ListMembership,
    PropertyCondition,
    SegmentMembership,
    children,
    condition_adapter,
    node_tag,
    walk,
)

SegmentDefinitions = Callable[[set[uuid.UUID]], Awaitable[dict[uuid.UUID, Condition]]]

# Reserved profile columns usable in property conditions, with their types.
RESERVED_TYPES: dict[str, PropertyType] = {
    **{name: PropertyType.string for name in ("external_id", *RESERVED)},
    "latitude": PropertyType.number,
    "longitude": PropertyType.number,
    "created_at": PropertyType.datetime,
    "updated_at": PropertyType.datetime,
}
_ANY = {"is_set", "is_not_set"}
OPS_BY_TYPE: dict[PropertyType, set[str]] = {
    PropertyType.string: _ANY | {"eq", "in", "contains", "starts_with"},
    PropertyType.number: _ANY | {"eq", "in", "gt", "gte", "lt", "lte"},
    PropertyType.boolean: _ANY | {"eq"},
    PropertyType.date: _ANY | DATE_OPS,
    PropertyType.datetime: _ANY | DATE_OPS,
    PropertyType.list: _ANY | {"list_contains"},
    PropertyType.object: _ANY,
}


@dataclass
class ConditionError:
    path: str  # e.g. `all[1].any[0].count`; "" is the root node
    message: str


class ConditionInvalid(ValueError):
    def __init__(self, errors: list[ConditionError]) -> None:
        super().__init__("; ".join(f"{e.path or '(root)'}: {e.message}" for e in errors))
        self.errors = errors


def _join(path: str, step: str) -> str:
    return f"{path}[{step}]" if step.isdigit() else f"{path}.{step}" if path else step


def _raw_children(node: Any) -> list[tuple[str, Any]]:
    if not isinstance(node, dict):
        return []
    out: list[tuple[str, Any]] = []
    for key in ("all", "any"):
        if isinstance(node.get(key), list):
            out += [(f"{key}[{i}]", c) for i, c in enumerate(node[key])]
    if "not" in node:
        out.append(("not", node["not"]))
    return out


def limit_errors(root: Any) -> list[ConditionError]:
    """Depth over MAX_DEPTH or more than MAX_NODES nodes, at the first node past the limit.
    Works on JSON and on parsed conditions alike (checked before pydantic recurses)."""
    nodes = 0
    stack: list[tuple[str, Any, int]] = [("", root, 1)]
    while stack:
        path, node, depth = stack.pop()
        nodes += 1
        if depth > MAX_DEPTH:
            return [ConditionError(path, f"nested deeper than {MAX_DEPTH} levels")]
        if nodes > MAX_NODES:
            return [ConditionError(path, f"more than {MAX_NODES} conditions")]
        if isinstance(node, BaseModel):
            kids = children(node)
        else:
            kids = _raw_children(node)
        for step, child in reversed(kids):
            stack.append((f"{path}.{step}" if path else step, child, depth + 1))
    return []


def _error_path(data: Any, loc: tuple[Any, ...]) -> str:
    """A pydantic error location as a path over the JSON: union tags are dropped."""
    path, here, tagged = "", data, False
    for step in loc:
        if isinstance(here, dict) and not tagged and step in (node_tag(here), here.get("kind")):
            tagged = True  # the union member pydantic tried: not a step in the JSON
            continue
        tagged = False
        if isinstance(here, dict) and step in here:
            path, here = _join(path, str(step)), here[step]
        elif isinstance(here, list) and isinstance(step, int) and step < len(here):
            path, here = f"{path}[{step}]", here[step]
        else:
            path, here = _join(path, str(step)), None
    return path


def parse_condition(data: Any) -> Condition:
    """JSON (or YAML) data as a Condition; raises ConditionInvalid with paths."""
    if errors := limit_errors(data):
        raise ConditionInvalid(errors)
    try:
        return condition_adapter.validate_python(data)
    except ValidationError as exc:
        errors = []
        for e in exc.errors(include_url=False):
            message = e["msg"].removeprefix("Value error, ")
            errors.append(ConditionError(_error_path(data, e["loc"]), message))
        raise ConditionInvalid(errors) from None


def property_errors(
    path: str, node: PropertyCondition, kind: PropertyType | None
) -> list[ConditionError]:
    """The operator and operand must suit the property's type (None: unknown property)."""
    if kind is None:
        return [
            ConditionError(
                f"{path}.property" if path else "property", f"unknown property '{node.property}'"
            )
        ]
    op = str(node.op)

    def at(field: str) -> str:
        return f"{path}.{field}" if path else field

    if op not in OPS_BY_TYPE[kind]:
        allowed = ", ".join(sorted(OPS_BY_TYPE[kind]))
        return [ConditionError(at("op"), f"'{node.property}' is a {kind}: use one of {allowed}")]
    if op in ("eq", "in"):
        values = node.value if isinstance(node.value, list) else [node.value]
        want = {
            PropertyType.string: (str,),
            PropertyType.number: (int, float),
            PropertyType.boolean: (bool,),
        }[kind]
        if any(not isinstance(v, want) or (bool in want) != isinstance(v, bool) for v in values):
            return [
                ConditionError(
                    at("value"), f"'{node.property}' is a {kind}: compare it with a {kind}"
                )
            ]
    return []


def static_errors(condition: Condition, *, in_flow: bool) -> list[ConditionError]:
    """Checks that need no database: limits, reserved column types, flow-only timeframes."""
    if errors := limit_errors(condition):
        return errors
    errors = []
    for path, node in walk(condition):
        if isinstance(node, PropertyCondition) and node.property in RESERVED_TYPES:
            errors += property_errors(path, node, RESERVED_TYPES[node.property])
        if (
            isinstance(node, Behaviour)
            and node.timeframe.kind == "since_flow_start"
            and not in_flow
        ):
            errors.append(
                ConditionError(_join(path, "timeframe"), "'since_flow_start' is for flows only")
            )
    return errors


async def validate_condition(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    condition: Condition | dict[str, Any],
    *,
    segment_id: uuid.UUID | None = None,
    segment_definitions: SegmentDefinitions | None = None,
    in_flow: bool = False,
) -> list[ConditionError]:
    """Every problem with `condition` in this workspace ([] when it is good).

    `segment_id`: the segment being saved, so references back to it are cycles.
    `segment_definitions`: loads stored segment definitions by id (default: the segments table).
    `in_flow`: allow `since_starting this flow` timeframes (flows pass True, segments do not).
    """
    if not isinstance(condition, BaseModel):
        try:
            condition = parse_condition(condition)
        except ConditionInvalid as exc:
            return exc.errors
    errors = static_errors(condition, in_flow=in_flow)
    if errors and errors[0].message.startswith(("nested deeper", "more than")):
        return errors
    nodes = walk(condition)
    errors += await _list_errors(session, workspace_id, nodes)
    errors += await _property_errors(session, workspace_id, nodes)
    loader = segment_definitions or _segments_table(session, workspace_id)
    errors += await _segment_errors(loader, nodes, segment_id)
    return sorted(errors, key=lambda e: e.path)


async def _list_errors(session, workspace_id, nodes) -> list[ConditionError]:
    refs = [(p, n) for p, n in nodes if isinstance(n, ListMembership)]
    if not refs:
        return []
    found = set(
        (
            await session.execute(
                text("SELECT id FROM lists WHERE workspace_id = :ws AND id = ANY(:ids)"),
                {"ws": workspace_id, "ids": list({n.list_id for _, n in refs})},
            )
        ).scalars()
    )
    return [
        ConditionError(f"{p}.list_id" if p else "list_id", f"no list {n.list_id} in this workspace")
        for p, n in refs
        if n.list_id not in found
    ]


async def _property_errors(session, workspace_id, nodes) -> list[ConditionError]:
    refs = [
        (p, n)
        for p, n in nodes
        if isinstance(n, PropertyCondition) and n.property not in RESERVED_TYPES
    ]
    if not refs:
        return []
    rows = await session.execute(
        text(
            "SELECT name, type FROM property_definitions "
            "WHERE workspace_id = :ws AND name = ANY(:names)"
        ),
        {"ws": workspace_id, "names": list({n.property for _, n in refs})},
    )
    types = {name: PropertyType(kind) for name, kind in rows}
    return [e for p, n in refs for e in property_errors(p, n, types.get(n.property))]


def _segments_table(session: AsyncSession, workspace_id: uuid.UUID) -> SegmentDefinitions:
    async def load(ids: set[uuid.UUID]) -> dict[uuid.UUID, Condition]:
        rows = await session.execute(
            text("SELECT id, definition FROM segments WHERE workspace_id = :ws AND id = ANY(:ids)"),
            {"ws": workspace_id, "ids": list(ids)},
        )
        out: dict[uuid.UUID, Any] = {}
        for sid, definition in rows:
            try:
                out[sid] = condition_adapter.validate_python(definition)
            except ValidationError:
                out[sid] = None  # exists; its own definition is not ours to judge here
        return out

    return load


async def _segment_errors(
    load: SegmentDefinitions, nodes, segment_id: uuid.UUID | None
) -> list[ConditionError]:
    refs = [(p, n) for p, n in nodes if isinstance(n, SegmentMembership)]
    if not refs:
        return []
    graph: dict[uuid.UUID, set[uuid.UUID]] = {}
    frontier = {n.segment_id for _, n in refs} - {segment_id}
    while frontier and len(graph) < 1000:
        found = await load(frontier)
        for sid in frontier:
            definition = found.get(sid, ...)
            if definition is ...:
                continue
            graph[sid] = (
                {n.segment_id for _, n in walk(definition) if isinstance(n, SegmentMembership)}
                if definition is not None
                else set()
            )
        frontier = set().union(*graph.values()) - graph.keys() - {segment_id} - frontier
    errors = []
    for path, node in refs:
        at = f"{path}.segment_id" if path else "segment_id"
        sid = node.segment_id
        if sid == segment_id:
            errors.append(ConditionError(at, "a segment cannot contain itself"))
        elif sid not in graph:
            errors.append(ConditionError(at, f"no segment {sid} in this workspace"))
        elif (cycle := _cycle_from(graph, sid, segment_id)) is not None:
            chain = " → ".join(str(s) for s in cycle)
            errors.append(ConditionError(at, f"segments refer to each other in a cycle: {chain}"))
    return errors


def _cycle_from(
    graph: dict[uuid.UUID, set[uuid.UUID]], start: uuid.UUID, target: uuid.UUID | None
) -> list[uuid.UUID] | None:
    """A path from `start` back to `target` (the segment being saved) or to any segment already
    on the path: a cycle through segment memberships. None when there is none."""
    stack: list[tuple[uuid.UUID, list[uuid.UUID]]] = [(start, [start])]
    done: set[uuid.UUID] = set()
    while stack:
        sid, trail = stack.pop()
        for nxt in graph.get(sid, ()):
            if nxt == target or nxt in trail:
                return [*trail, nxt]
            if nxt not in done:
                stack.append((nxt, [*trail, nxt]))
        done.add(sid)
    return None
