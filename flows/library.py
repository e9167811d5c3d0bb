"""Flows as YAML files, and the ready flows of `examples/flows/`.

A flow file is a `FlowDefinition` where templates, lists and segments may be named instead of
given by id: `template: "Abandoned cart 1"` (for `template_id`), `list: "Newsletter"` (for
`list_id`), `segment: "VIP"` (for `segment_id`) — in steps, the trigger and conditions alike.
`resolve_names` turns the names into the workspace's ids, or reports each unknown one with its
step id.
"""

from __future__ import annotations

import copy
import re
import uuid
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from flows.validate import Issue

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FLOW_EXAMPLES = EXAMPLES / "flows"
TEMPLATE_EXAMPLES = EXAMPLES / "templates"
# name key -> (table, id key)
REFERENCES = {
    "template": ("templates", "template_id"),
    "list": ("lists", "list_id"),
    "segment": ("segments", "segment_id"),
}


class FlowFileError(ValueError):
    pass


class FlowLoader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. (YAML 1.1 reads the split keys `yes:` and `no:`,
    and `on`/`off`, as booleans.)"""


FlowLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
FlowLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=FlowLoader)  # noqa: S506 - a SafeLoader subclass


def flow_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.y*ml")) if path.is_dir() else [path]


def read_yaml(file: Path) -> dict[str, Any]:
    try:
        data = load_yaml(file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise FlowFileError(f"{file}: {exc}") from None
    if not isinstance(data, dict):
        raise FlowFileError(f"{file}: expected a mapping with name, trigger, entry and steps")
    return data


def _walk(node: Any, path: str, step_id: str | None):
    """(node, path, step id) for every mapping in the tree."""
    if isinstance(node, dict):
        yield node, path, step_id
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}" if path else key, step_id)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]", step_id)


def _nodes(data: dict[str, Any]):
    for key, value in data.items():
        if key != "steps":
            yield from _walk(value, key, None)
    for step in data.get("steps") or []:
        sid = step.get("id") if isinstance(step, dict) else None
        yield from _walk(step, "", sid if isinstance(sid, str) else None)


def referenced_names(data: dict[str, Any]) -> dict[str, set[str]]:
    """Names used per kind (template, list, segment)."""
    out: dict[str, set[str]] = {kind: set() for kind in REFERENCES}
    for node, _, _ in _nodes(data):
        for kind in REFERENCES:
            if isinstance(node.get(kind), str):
                out[kind].add(node[kind])
    return out


async def name_ids(
    session: AsyncSession, workspace_id: uuid.UUID, kind: str, names: set[str]
) -> dict[str, uuid.UUID]:
    if not names:
        return {}
    table = REFERENCES[kind][0]
    rows = await session.execute(
        text(f"SELECT name, id FROM {table} WHERE workspace_id = :ws AND name = ANY(:names)"),
        {"ws": workspace_id, "names": sorted(names)},
    )
    return dict(rows.all())


async def resolve_names(
    session: AsyncSession, workspace_id: uuid.UUID, data: dict[str, Any]
) -> tuple[dict[str, Any], list[Issue]]:
    """A copy of `data` with every named reference replaced by its id, and the unknown names."""
    ids = {
        kind: await name_ids(session, workspace_id, kind, names)
        for kind, names in referenced_names(data).items()
    }
    out = copy.deepcopy(data)
    issues: list[Issue] = []
    for node, path, step_id in _nodes(out):
        for kind, (_, id_key) in REFERENCES.items():
            name = node.get(kind)
            if not isinstance(name, str):
                continue
            if name in ids[kind]:
                del node[kind]
                node[id_key] = str(ids[kind][name])
            else:
                where = f"{path}.{kind}" if path else kind
                issues.append(Issue(step_id, where, f"no {kind} named {name!r} in this workspace"))
    return out, issues


def library() -> list[dict[str, Any]]:
    """The ready flows, as written (with names, not ids)."""
    return [read_yaml(f) for f in flow_files(FLOW_EXAMPLES)]


def example_templates() -> list[dict[str, Any]]:
    return [read_yaml(f) for f in flow_files(TEMPLATE_EXAMPLES)]
