"""The definition models: one shape for JSON, YAML and the JSON Schema editors use."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from flows.definition import (
    DelayStep,
    FlowDefinition,
    dump_definition,
    flow_json_schema,
    parse_definition,
    step_map,
    successors,
)
from flows.library import FLOW_EXAMPLES, read_yaml
from tests.flows import flow_body


def test_round_trip_and_helpers():
    defn = FlowDefinition.model_validate(flow_body("Cart", str(uuid.uuid4())))
    assert FlowDefinition.model_validate(dump_definition(defn)) == defn
    steps = step_map(defn)
    assert isinstance(steps["wait"], DelayStep)
    assert successors(steps["wait"]) == ["remind"] and successors(steps["remind"]) == [None]


def test_split_successors_in_order():
    body = flow_body("Split", str(uuid.uuid4()))
    body["steps"].append(
        {
            "id": "ab",
            "type": "random_split",
            "branches": [{"weight": 50, "next": "wait"}, {"weight": 50, "next": None}],
        }
    )
    defn = FlowDefinition.model_validate(body)
    assert successors(step_map(defn)["ab"]) == ["wait", None]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"id": "Bad Id"}, "string_pattern_mismatch"),
        ({"duration": None}, "exactly one of duration"),
        ({"until_time": {"time": "09:00"}}, "exactly one of duration"),
        ({"type": "teleport"}, "union_tag_invalid"),
    ],
)
def test_bad_steps_are_refused(change, message):
    body = flow_body("Bad", str(uuid.uuid4()))
    body["steps"][0] = {**body["steps"][0], **change}
    with pytest.raises(ValidationError) as exc:
        FlowDefinition.model_validate(body)
    assert message in str(exc.value) or message in {e["type"] for e in exc.value.errors()}


def test_duplicate_step_ids_and_webhook_urls():
    body = flow_body("Dup", str(uuid.uuid4()))
    body["steps"][1]["id"] = "wait"
    with pytest.raises(ValidationError, match="used twice"):
        FlowDefinition.model_validate(body)
    body = flow_body("Hook", str(uuid.uuid4()))
    body["steps"][1] = {"id": "remind", "type": "webhook", "url": "http://shop.example.com/x"}
    with pytest.raises(ValidationError, match="https"):
        FlowDefinition.model_validate(body)
    body["steps"][1]["url"] = "http://localhost:8080/hook"
    FlowDefinition.model_validate(body)


def test_schema_names_every_step_type():
    schema = flow_json_schema()
    text = str(schema)
    for kind in (
        "delay",
        "condition_split",
        "trigger_split",
        "multi_split",
        "random_split",
        "wait_for_event",
        "send",
        "update_profile",
        "list",
        "tag",
        "webhook",
        "alert",
    ):
        assert f"'{kind}'" in text
    assert schema["title"] == "FlowDefinition"


def test_examples_parse_once_names_are_ids():
    for file in sorted(FLOW_EXAMPLES.glob("*.yaml")):
        data = read_yaml(file)
        text = str(data).replace("'template'", "'template_id'").replace("'list'", "'list_id'")
        for step in data["steps"]:
            if "template" in step:
                step["template_id"] = str(uuid.uuid4())
                del step["template"]
        if "list" in data["trigger"]:
            data["trigger"]["list_id"] = str(uuid.uuid4())
            del data["trigger"]["list"]
        assert FlowDefinition.model_validate(data).name == data["name"], text


def test_alert_destinations_follow_the_webhook_and_email_rules():
    body = flow_body("Alert", str(uuid.uuid4()))
    alert = {"id": "remind", "type": "alert", "message": "VIP {{ profile.first_name }}"}
    body["steps"][1] = {**alert, "channel": "webhook", "to": "http://10.1.2.3/alert"}
    with pytest.raises(ValidationError, match=r"step 'remind': to: give an https://"):
        FlowDefinition.model_validate(body)
    # A version published before the rule still loads (its alert refuses to POST at run time).
    assert parse_definition(body).steps[1].to == "http://10.1.2.3/alert"
    body["steps"][1]["to"] = "https://ops.example.com/alert"
    FlowDefinition.model_validate(body)
    body["steps"][1] = {**alert, "channel": "email", "to": "ops at shop"}
    with pytest.raises(ValidationError, match=r"step 'remind': to: give the email address"):
        FlowDefinition.model_validate(body)
    body["steps"][1]["to"] = "ops@shop.example.com"
    assert FlowDefinition.model_validate(body).steps[1].to == "ops@shop.example.com"
