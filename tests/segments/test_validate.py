"""Bad definitions are reported with the path of the bad node, never reach SQL as a 500."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from core.db import session_scope
from segments import (
    MAX_DEPTH,
    MAX_NODES,
    ConditionError,
    ConditionInvalid,
    condition_json_schema,
    dump_condition,
    parse_condition,
    validate_condition,
)
from segments.reference import World
from tests.segments.data import insert_world

BEHAVIOUR = {"type": "behaviour", "metric": "Placed Order"}


def errors_of(data) -> list[ConditionError]:
    with pytest.raises(ConditionInvalid) as err:
        parse_condition(data)
    return err.value.errors


@pytest.mark.parametrize(
    ("data", "path", "words"),
    [
        ({"all": [BEHAVIOUR, {"any": [{"type": "nope"}]}]}, "all[1].any[0]", "not a condition"),
        (
            {"all": [BEHAVIOUR, {"any": [{**BEHAVIOUR, "count": {"op": "at_least"}}]}]},
            "all[1].any[0].count.value",
            "needs N",
        ),
        (
            {"all": [{**BEHAVIOUR, "count": {"op": "sometimes", "value": 1}}]},
            "all[0].count.op",
            "Input should be",
        ),
        (
            {"not": {**BEHAVIOUR, "timeframe": {"kind": "in_last", "amount": -1}}},
            "not.timeframe.amount",
            "greater than or equal to 0",
        ),
        (
            {"any": [{"type": "property", "property": "age", "op": "gt", "value": "ten"}]},
            "any[0].value",
            "compares numbers",
        ),
        (
            {"type": "property", "property": "plan", "op": "eq", "value": ["a", "b"]},
            "value",
            "use 'in'",
        ),
        ({"type": "property", "property": "plan", "op": "in_last_days"}, "days", "needs days"),
        (
            {"type": "property", "property": "d", "op": "before", "value": "yesterday"},
            "value",
            "ISO date",
        ),
        (
            {"all": [{**BEHAVIOUR, "where": [{"property": "$value", "op": "eq", "value": "x"}]}]},
            "all[0].where[0].value",
            "$value is a number",
        ),
        ({"type": "engagement", "action": "opened", "channel": "sms"}, "", "no 'opened' events"),
        (
            {"type": "location", "op": "phone_country_in", "countries": ["PL", "XX"]},
            "countries",
            "unknown country code 'XX'",
        ),
        ({"type": "list_membership", "list_id": "not-a-uuid"}, "list_id", "UUID"),
        ({"all": []}, "all", "at least 1"),
        ({**BEHAVIOUR, "colour": "red"}, "colour", "Extra inputs"),
        (
            {**BEHAVIOUR, "sum": {"op": "gt", "value": 1}, "count": {"op": "zero"}},
            "",
            "one of count, sum or last",
        ),
    ],
)
def test_bad_shapes_name_the_path(data, path, words):
    errors = errors_of(data)
    assert [e.path for e in errors] == [path], errors
    assert words in errors[0].message


def test_depth_over_the_limit_names_the_first_node_too_deep():
    def nested(levels):  # `levels` nodes deep: nots around one leaf
        data = BEHAVIOUR
        for _ in range(levels - 1):
            data = {"not": data}
        return data

    parse_condition(nested(MAX_DEPTH))
    [error] = errors_of({"all": [BEHAVIOUR, nested(MAX_DEPTH)]})
    assert error.path == "all[1]" + ".not" * (MAX_DEPTH - 1)  # the leaf, at depth MAX_DEPTH + 1
    assert "deeper than" in error.message


def test_too_many_nodes():
    [error] = errors_of({"any": [BEHAVIOUR] * MAX_NODES})
    assert error.path == f"any[{MAX_NODES - 1}]"
    assert "more than" in error.message


def test_json_round_trip_and_schema():
    data = {
        "all": [
            {
                "not": {
                    **BEHAVIOUR,
                    "count": {"op": "zero"},
                    "timeframe": {
                        "kind": "between",
                        "start": "2026-01-01",
                        "end": "2026-02-01T00:00:00Z",
                    },
                }
            },
            {"type": "random_sample", "percent": 10},
        ]
    }
    condition = parse_condition(data)
    assert parse_condition(dump_condition(condition)) == condition
    assert "not" in dump_condition(condition)["all"][0]
    schema = condition_json_schema()
    assert "oneOf" in schema or "anyOf" in schema
    assert "Behaviour" in schema["$defs"]


@pytest.fixture
async def workspace(engine):
    world = World(profiles={})
    world.lists = {uuid.UUID(int=11)}  # type: ignore[attr-defined]
    ws = await insert_world(engine, world)
    async with session_scope(engine) as s:
        await s.execute(
            text(
                "INSERT INTO property_definitions (workspace_id, name, type) VALUES "
                "(:ws, 'age', 'number'), (:ws, 'plan', 'string'), (:ws, 'birthday', 'date'),"
                "(:ws, 'tags', 'list')"
            ),
            {"ws": ws},
        )
    return ws


async def _segment(engine, ws, definition) -> uuid.UUID:
    sid = uuid.uuid4()
    async with session_scope(engine) as s:
        await s.execute(
            text(
                "INSERT INTO segments (id, workspace_id, name, definition) "
                "VALUES (:id, :ws, :name, CAST(:d AS jsonb))"
            ),
            {"id": sid, "ws": ws, "name": str(sid), "d": __import__("json").dumps(definition)},
        )
    return sid


async def _validate(engine, ws, data, **kw) -> list[tuple[str, str]]:
    async with session_scope(engine) as s:
        return [(e.path, e.message) for e in await validate_condition(s, ws, data, **kw)]


async def test_references_and_property_types_are_checked_against_the_workspace(engine, workspace):
    ws, unknown_list = workspace, uuid.uuid4()
    data = {
        "all": [
            {"type": "list_membership", "list_id": str(uuid.UUID(int=11))},
            {"any": [{"type": "list_membership", "list_id": str(unknown_list)}]},
            {"type": "property", "property": "age", "op": "contains", "value": "1"},
            {"type": "property", "property": "plan", "op": "eq", "value": 3},
            {"type": "property", "property": "colour", "op": "eq", "value": "red"},
            {"type": "property", "property": "birthday", "op": "anniversary"},
            {"type": "property", "property": "tags", "op": "list_contains", "value": "vip"},
            {"type": "property", "property": "email", "op": "gt", "value": 1},
            {"type": "segment_membership", "segment_id": str(uuid.uuid4())},
            {**BEHAVIOUR, "timeframe": {"kind": "since_flow_start"}},
        ]
    }
    errors = await _validate(engine, ws, data)
    assert [path for path, _ in errors] == [
        "all[1].any[0].list_id",
        "all[2].op",
        "all[3].value",
        "all[4].property",
        "all[7].op",
        "all[8].segment_id",
        "all[9].timeframe",
    ]
    assert "no list" in errors[0][1] and "'age' is a number" in errors[1][1]
    assert "unknown property 'colour'" in errors[3][1]
    flow = await _validate(engine, ws, data["all"][9], in_flow=True)
    assert flow == []


async def test_segment_cycles_are_rejected_with_the_path(engine, workspace):
    ws = workspace
    a = await _segment(engine, ws, {"type": "random_sample", "percent": 5})
    b = await _segment(engine, ws, {"type": "segment_membership", "segment_id": str(a)})
    # Saving `a` as "in b" closes the loop a -> b -> a.
    errors = await _validate(
        engine,
        ws,
        {"any": [{"not": {"type": "segment_membership", "segment_id": str(b)}}]},
        segment_id=a,
    )
    assert [p for p, _ in errors] == ["any[0].not.segment_id"]
    assert "cycle" in errors[0][1]
    itself = await _validate(
        engine, ws, {"type": "segment_membership", "segment_id": str(a)}, segment_id=a
    )
    assert itself == [("segment_id", "a segment cannot contain itself")]
    assert await _validate(engine, ws, {"type": "segment_membership", "segment_id": str(b)}) == []


async def test_a_custom_loader_of_segment_definitions(engine, workspace):
    a, b = uuid.uuid4(), uuid.uuid4()
    stored = {
        a: parse_condition({"type": "segment_membership", "segment_id": str(b)}),
        b: parse_condition({"type": "segment_membership", "segment_id": str(a)}),
    }

    async def load(ids):
        return {i: stored[i] for i in ids if i in stored}

    errors = await _validate(
        engine,
        workspace,
        {"type": "segment_membership", "segment_id": str(a)},
        segment_definitions=load,
    )
    assert [p for p, _ in errors] == ["segment_id"] and "cycle" in errors[0][1]


async def test_raw_json_errors_come_back_as_errors_not_exceptions(engine, workspace):
    errors = await _validate(engine, workspace, {"any": [{"type": "behaviour"}]})
    assert errors == [("any[0].metric", "Field required")]
