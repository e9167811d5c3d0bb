"""Tests of flow definitions, validation, versions and flows as code.

`flow_body(...)` builds a small valid definition (JSON form) for API and tenancy tests."""

from __future__ import annotations

from typing import Any


def flow_body(name: str, template_id: str, **changes: Any) -> dict[str, Any]:
    """Started checkout → wait 4 h → SMS (the template must be an SMS template)."""
    return {
        "name": name,
        "trigger": {"type": "event", "metric": "Started Checkout"},
        "settings": {"exits": [{"type": "order_placed"}]},
        "entry": "wait",
        "steps": [
            {
                "id": "wait",
                "type": "delay",
                "duration": {"amount": 4, "unit": "hours"},
                "next": "remind",
            },
            {"id": "remind", "type": "send", "channel": "sms", "template_id": template_id},
        ],
        **changes,
    }
