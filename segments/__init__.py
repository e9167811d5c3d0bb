"""The condition language shared by segments, flow filters and splits, and campaign audiences.

- `Condition` / `condition_adapter` / `condition_json_schema()`: the models and their JSON form
  (`segments.conditions`); `parse_condition(json)` raises `ConditionInvalid` with paths.
- `validate_condition(...)`: checks against the workspace (`segments.validate`).
- `members_query(...)` / `evaluate_profile(...)`: one SQL query for a set or one profile
  (`segments.compile`).
- `dependencies(condition)`: what can change a condition's result.
- `segments.reference`: the plain-Python meaning of every condition, for tests.
"""

from segments.compile import evaluate_profile, members_query
from segments.compile_dependencies import Dependencies, dependencies
from segments.conditions import (
    MAX_DEPTH,
    MAX_NODES,
    Condition,
    condition_adapter,
    condition_json_schema,
    dump_condition,
)
from segments.validate import (
    ConditionError,
    ConditionInvalid,
    parse_condition,
    validate_condition,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "Condition",
    "ConditionError",
    "ConditionInvalid",
    "Dependencies",
    "condition_adapter",
    "condition_json_schema",
    "dependencies",
    "dump_condition",
    "evaluate_profile",
    "members_query",
    "parse_condition",
    "validate_condition",
]
