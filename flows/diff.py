"""A readable diff of two flow definitions, by step id (what the API and the CLI show).

Steps are matched by id, not position: added, removed, and changed steps with each changed
field as a dotted path (`duration.amount: 4 -> 6`). The trigger, settings, entry, name and
description are compared the same way. Definitions are compared in their JSON form
(`flows.definition.dump_definition`), so defaults and the order of keys do not show as changes.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from flows.definition import FlowDefinition, dump_definition, parse_definition

_MISSING = object()


class FieldChange(BaseModel):
    path: str
    before: Any = None
    after: Any = None


class StepChange(BaseModel):
    step_id: str
    type: str
    changes: list[FieldChange]


class StepRef(BaseModel):
    step_id: str
    type: str


class FlowDiff(BaseModel):
    flow: list[FieldChange] = Field(
        default_factory=list, description="name, description, entry, trigger and settings"
    )
    added: list[StepRef] = Field(default_factory=list)
    removed: list[StepRef] = Field(default_factory=list)
    changed: list[StepChange] = Field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.flow or self.added or self.removed or self.changed)


def _fields(before: Any, after: Any, path: str = "") -> list[FieldChange]:
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for key in list(before) + [k for k in after if k not in before]:
            sub = f"{path}.{key}" if path else str(key)
            b, a = before.get(key, _MISSING), after.get(key, _MISSING)
            if b != a:
                out += _fields(None if b is _MISSING else b, None if a is _MISSING else a, sub)
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        out = []
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            if b != a:
                out += _fields(b, a, f"{path}[{i}]")
        return out
    return [] if before == after else [FieldChange(path=path, before=before, after=after)]


def _json(defn: FlowDefinition | dict[str, Any] | None) -> dict[str, Any]:
    if defn is None:
        return {"steps": []}
    if isinstance(defn, FlowDefinition):
        return dump_definition(defn)
    return dump_definition(parse_definition(defn))  # stored: later rules do not refuse it


def diff_definitions(
    before: FlowDefinition | dict[str, Any] | None, after: FlowDefinition | dict[str, Any]
) -> FlowDiff:
    """What changed from `before` (None: nothing yet) to `after`."""
    old, new = _json(before), _json(after)
    out = FlowDiff()
    for key in ("name", "description", "entry", "trigger", "settings"):
        if old.get(key) != new.get(key):
            out.flow += _fields(old.get(key), new.get(key), key)
    old_steps = {s["id"]: s for s in old["steps"]}
    new_steps = {s["id"]: s for s in new["steps"]}
    for sid, step in new_steps.items():
        if sid not in old_steps:
            out.added.append(StepRef(step_id=sid, type=step["type"]))
        elif old_steps[sid] != step:
            changes = _fields(old_steps[sid], step)
            out.changed.append(StepChange(step_id=sid, type=step["type"], changes=changes))
    out.removed = [
        StepRef(step_id=sid, type=s["type"]) for sid, s in old_steps.items() if sid not in new_steps
    ]
    return out


def _short(value: Any) -> str:
    text = "—" if value is None else repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def format_diff(diff: FlowDiff) -> list[str]:
    """The diff as lines: `+ step`, `- step`, `~ step` with `field: before -> after` below."""
    if diff.empty:
        return ["no changes"]
    lines = [f"~ {c.path}: {_short(c.before)} -> {_short(c.after)}" for c in diff.flow]
    lines += [f"+ step {s.step_id} ({s.type})" for s in diff.added]
    lines += [f"- step {s.step_id} ({s.type})" for s in diff.removed]
    for step in diff.changed:
        lines.append(f"~ step {step.step_id} ({step.type})")
        lines += [f"    {c.path}: {_short(c.before)} -> {_short(c.after)}" for c in step.changes]
    return lines
