"""Pure helpers shared by the journey workflow and the event router: workflow ids, event filters
evaluated in Python on one event, and exit matching. No I/O.

Workflow ids (deterministic, so a re-delivered event never starts a second journey):
- `new_instance`: `journey-{flow}-{profile}-{event}`: one journey per triggering event;
- `ignore` / `restart`: `journey-{flow}-{profile}`: one running journey per profile and flow
  (ignore: the conflicting start is refused; restart: the running one is terminated).
The journey id is `uuid5(flow, event)` under every policy: the router skips an event whose
journey row already exists, which also covers a journey that already finished.
"""

from __future__ import annotations

import re
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

PAGE_METRIC = "Viewed Page"  # ingest.segment.PAGE_METRIC
_NAMESPACE = uuid.UUID("6f1c1a52-59a4-4f0e-9a43-3f7a9e0b2d11")


def journey_id(flow_id: uuid.UUID, event_id: int | str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{flow_id}:{event_id}")


def journey_workflow_id(
    duplicate: str, flow_id: uuid.UUID, profile_id: uuid.UUID, event_id: int | str
) -> str:
    if duplicate == "new_instance":
        return f"journey-{flow_id}-{profile_id}-{event_id}"
    return f"journey-{flow_id}-{profile_id}"


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _lookup(properties: dict[str, Any], path: str) -> Any:
    """A property by name, or by dotted path into nested objects."""
    if path in properties:
        return properties[path]
    current: Any = properties
    for part in path.split("."):
        if not isinstance(current, dict) or part not in current:
            return None
        current = current[part]
    return current


def _equal(actual: Any, expected: Any) -> bool:
    a, b = _number(actual), _number(expected)
    if a is not None and b is not None and not isinstance(expected, str):
        return a == b
    if isinstance(actual, str) and isinstance(expected, str):
        return actual.casefold() == expected.casefold()
    return actual == expected


def filter_passes(f: Any, properties: dict[str, Any], value: Any) -> bool:
    """One `EventFilter` (property, op, value) on one event; `$value` is the event's value."""
    op = str(getattr(f, "op", None) or f["op"])
    name = getattr(f, "property", None) or f["property"]
    operand = f.value if hasattr(f, "value") else f.get("value")
    actual = value if name == "$value" else _lookup(properties or {}, name)
    if op == "is_set":
        return actual is not None
    if op == "is_not_set":
        return actual is None
    if actual is None:
        return False
    if op in ("eq", "in"):
        options = operand if isinstance(operand, list) else [operand]
        if isinstance(actual, list):
            return any(_equal(a, o) for a in actual for o in options)
        return any(_equal(actual, o) for o in options)
    if op == "contains":
        if isinstance(actual, list):
            return any(isinstance(a, str) and operand.casefold() in a.casefold() for a in actual)
        return isinstance(actual, str) and operand.casefold() in actual.casefold()
    if op == "starts_with":
        return isinstance(actual, str) and actual.casefold().startswith(operand.casefold())
    a, b = _number(actual), _number(operand)
    if a is None or b is None:
        return False
    return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[op]


def event_passes(filters: list[Any], properties: dict[str, Any], value: Any) -> bool:
    return all(filter_passes(f, properties, value) for f in filters)


def exit_matches(exit: Any, metric: str, properties: dict[str, Any], value: Any) -> str | None:
    """The exit reason when this event matches exit condition `exit` (a definition's Exit)."""
    kind = exit.type
    if kind == "order_placed":
        return "order_placed" if metric == exit.metric else None
    if kind == "page_visited":
        url = (properties or {}).get("url")
        if metric != PAGE_METRIC or not isinstance(url, str):
            return None
        hit = {
            "equals": lambda: url == exit.value,
            "contains": lambda: exit.value in url,
            "matches": lambda: re.search(exit.value, url) is not None,
        }[exit.op]()
        return "page_visited" if hit else None
    if kind == "event" and metric == exit.metric and event_passes(exit.where, properties, value):
        return f"event:{metric}"[:255]
    return None
