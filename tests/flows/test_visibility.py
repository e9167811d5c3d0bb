"""What an operator sees in the Temporal Web UI: journeys found by the query they type
(`WaymarkFlowId="…" AND WaymarkStep="wait_4h"`: only journeys still at that step, since an ended
one unsets `WaymarkStep` and keeps `WaymarkStatus`), with their search attributes, and a readable
current-details line naming the flow, the profile, the step and the next wake-up.

On the dev server (real visibility store, wall clock): the journeys sleep in their delays for the
whole test. Visibility is eventually consistent, so every list is polled until a deadline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowExecution

from tests.flows.test_journey import at_step, customer, definition, start, store_flow, until
from worker import build_worker
from workflows import search_attributes as sa
from workflows.journey import ExitInput, JourneyWorkflow

# Late carts wait 4 hours, the others a day; then a tag.
STEPS = [
    {"type": "condition_split", "id": "route", "yes": "wait_4h", "no": "wait_1d",
     "condition": {"type": "property", "property": "stage", "op": "eq", "value": "late"}},
    {"type": "delay", "id": "wait_4h", "duration": {"amount": 4, "unit": "hours"}, "next": "done"},
    {"type": "delay", "id": "wait_1d", "duration": {"amount": 1, "unit": "days"}, "next": "done"},
    {"type": "tag", "id": "done", "tag": "waited", "next": None},
]  # fmt: skip


@pytest.fixture
async def dev_worker(temporal_env, settings, engine, task_queue):
    async with build_worker(temporal_env.client, settings, engine, task_queue=task_queue) as w:
        yield w


async def listed(client: Client, query: str) -> dict[str, WorkflowExecution]:
    return {e.id: e async for e in client.list_workflows(query)}


async def eventually_listed(
    client: Client, query: str, expected: set[str], *, deadline: float = 30.0
) -> dict[str, WorkflowExecution]:
    """The executions `query` lists, once they are exactly `expected` (visibility lags)."""
    found: dict[str, WorkflowExecution] = {}

    async def exact() -> bool:
        nonlocal found
        found = await listed(client, query)
        return set(found) == expected

    try:
        await until(exact, deadline=deadline)
    except AssertionError:
        message = f"{query!r} listed {sorted(found)}, expected {sorted(expected)}"
        raise AssertionError(message) from None
    return found


async def details(handle) -> str:
    """The current details the UI shows (the SDK's built-in metadata query the UI calls)."""
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return metadata.current_details


def waiting_in(handles: dict[Any, Any], step: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return all([await at_step(h, step)() for h in handles.values()])

    return check


async def test_the_ui_query_by_flow_and_step_lists_the_journeys_waiting_there(
    engine, workspaces, temporal_env, dev_worker, task_queue
):
    client = temporal_env.client
    ws = await workspaces.create()
    flow = definition(STEPS)
    flow_id = await store_flow(engine, ws.id, flow)
    other_flow_id = await store_flow(engine, ws.id, definition(STEPS))

    late = {await customer(engine, ws, stage="late") for _ in range(3)}
    early = {await customer(engine, ws, stage="browsing") for _ in range(2)}
    in_4h = {p: await start(client, task_queue, ws, flow_id, p) for p in late}
    in_1d = {p: await start(client, task_queue, ws, flow_id, p) for p in early}
    elsewhere = await start(client, task_queue, ws, other_flow_id, next(iter(late)))
    await until(waiting_in(in_4h | {"x": elsewhere}, "wait_4h"))
    await until(waiting_in(in_1d, "wait_1d"))

    query = f'WaymarkFlowId="{flow_id}" AND WaymarkStep="wait_4h"'
    found = await eventually_listed(client, query, {h.id for h in in_4h.values()})
    for profile_id, handle in in_4h.items():
        attributes = found[handle.id].typed_search_attributes
        assert attributes.get(sa.STATUS) == "active"
        assert attributes.get(sa.PROFILE_ID) == str(profile_id)
        assert attributes.get(sa.FLOW_VERSION) == 1
        assert attributes.get(sa.WORKSPACE_ID) == str(ws.id)
        assert found[handle.id].status is not None and found[handle.id].status.name == "RUNNING"
    await eventually_listed(
        client,
        f'WaymarkFlowId="{flow_id}" AND WaymarkStep="wait_1d"',
        {h.id for h in in_1d.values()},
    )
    await eventually_listed(
        client, f'WaymarkFlowId="{other_flow_id}" AND WaymarkStep="wait_4h"', {elsewhere.id}
    )

    # The details line: flow name and version, profile, step (and its type), next wake-up.
    for profile_id, handle in in_4h.items():
        state = await handle.query(JourneyWorkflow.get_state)
        assert state.wake_at is not None
        text = await details(handle)
        assert flow["name"] in text and "v1" in text
        assert str(profile_id) in text
        assert "wait_4h (delay)" in text and "active" in text
        assert f"next wake-up: {state.wake_at.isoformat(timespec='minutes')}" in text
        started = (await handle.describe()).start_time
        assert started is not None
        assert abs((state.wake_at - started).total_seconds() - 4 * 3600) < 60

    # One of them places an order: it leaves at once, and the UI says so.
    leaving_profile, leaving = next(iter(in_4h.items()))
    await leaving.signal(JourneyWorkflow.exit, ExitInput(reason="order_placed"))
    assert (await leaving.result()).status == "exited"
    exited = await eventually_listed(
        client,
        f'WaymarkFlowId="{flow_id}" AND WaymarkStatus="exited"',
        {leaving.id},
    )
    attributes = exited[leaving.id].typed_search_attributes
    assert attributes.get(sa.PROFILE_ID) == str(leaving_profile)
    assert attributes.get(sa.STEP) is None  # an ended journey is at no step
    assert "exited" in await details(leaving)
    # The operator's query, as typed, lists only the journeys still waiting there.
    still = {h.id for p, h in in_4h.items() if p != leaving_profile}
    await eventually_listed(client, query, still)
    await eventually_listed(client, f'{query} AND WaymarkStatus="active"', still)

    for handle in [*in_4h.values(), *in_1d.values(), elsewhere]:
        if handle is not leaving:
            await handle.terminate("test over")
