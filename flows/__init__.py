"""Flows: definitions (steps, trigger, settings), validation, versions and status.

- `flows.definition`: the pydantic models (`FlowDefinition`, steps, triggers) and JSON Schema.
- `flows.validate.validate_flow(...)`: errors (block publishing) and warnings, by step id.
- `flows.service`: drafts, published versions, status transitions (with their log).
- `flows.diff.diff_definitions(...)`: a readable diff of two definitions, by step id.
- `flows.hooks`: tell running journeys about a new version or a status change.
- `flows.library`: the ready flows of `examples/flows/`.
"""
