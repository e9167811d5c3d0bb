"""The whole product on the time-skipping server, for end-to-end flow tests (`shop`).

`shop` runs what production runs — the API (httpx on the ASGI app), the outbox dispatcher with
every router, and workers (`shop.worker()`) — against the time-skipping test server and the
test database. A test installs flows and templates through the REST API, creates customers and
posts their events through `/v1/profiles`, `/v1/track` and `/v1/batch`, and reads what was
sent from the message ledger and `GET /v1/outbox`.

Two clocks. The test server skips time only inside `shop.skip(...)` (`env.sleep`) or while a
client waits on a workflow result; otherwise its clock follows the wall clock. Journeys run on
the server's clock (`workflow.now()`: step times in `journey_steps`, delay wake-ups), while the
API, the outbox and the router read the wall clock; the send path (ledger times, the gate's
Smart Sending and quiet hours) reads the later of the wall clock and the journey's clock
(`SendMessageInput.now`). So: times are asserted on `journey_steps` against the event's
`occurred_at` (both start from the same instant, the server having started with the wall
clock), and the workspace turns off the gate's wall-clock rules (`shop.configure`), which
`tests/channels/test_gate.py` covers on their own.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from api import create_app
from api.deps import get_temporal
from core.settings import Settings
from flows.library import FLOW_EXAMPLES, TEMPLATE_EXAMPLES, read_yaml, referenced_names
from tests.factories import TestWorkspace, WorkspaceFactory
from tests.helpers import until
from worker import build_dispatcher, build_worker
from workflows import search_attributes

SECRET = "test-secret-key-that-is-long-enough-0123456789"


class Shop:
    """One workspace of the running product, driven as its users drive it."""

    def __init__(
        self,
        env: WorkflowEnvironment,
        http: AsyncClient,
        engine: AsyncEngine,
        settings: Settings,
        ws: TestWorkspace,
    ) -> None:
        self.env, self.http, self.engine, self.settings, self.ws = env, http, engine, settings, ws
        self.client: Client = env.client
        self.phones: dict[uuid.UUID, str] = {}

    # --- the back office (REST API, admin key) --------------------------------------------

    async def api(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        response = await self.http.request(method, path, headers=self.ws.admin, **kwargs)
        assert response.status_code == expect, f"{method} {path}: {response.text}"
        return response.json() if response.content else None

    async def configure(self) -> None:
        """A sender, and the gate's wall-clock rules off (see the module's docstring)."""
        await self.api("PATCH", "/v1/workspace/channel-settings", json={
            "from_email": "shop@example.com", "from_name": "Linen & Co",
            "smart_sending_hours": {"email": 0, "sms": 0},
            "quiet_hours": {"enabled": False},
        })  # fmt: skip

    async def install(self, name: str, **settings: Any) -> uuid.UUID:
        """Install `examples/flows/{name}.yaml` as a user with the REST API would: create the
        example templates it names, put their ids in, create the flow and publish it.
        `settings` override the file's flow settings (e.g. `duplicate="ignore"`)."""
        definition = read_yaml(FLOW_EXAMPLES / f"{name}.yaml")
        definition["settings"] = {**definition.get("settings", {}), **settings}
        wanted = referenced_names(definition)["template"]
        templates = {t["name"]: t for t in map(read_yaml, TEMPLATE_EXAMPLES.glob("*.yaml"))}
        have = {t["name"]: t["id"] for t in (await self.api("GET", "/v1/templates"))["data"]}
        for missing in sorted(wanted - have.keys()):
            have[missing] = (await self.api("POST", "/v1/templates", 201,
                                            json=templates[missing]))["id"]  # fmt: skip
        for step in definition["steps"]:
            if "template" in step:
                step["template_id"] = have[step.pop("template")]
        flow = await self.api("POST", "/v1/flows", 201, json={"definition": definition})
        published = await self.api("POST", f"/v1/flows/{flow['id']}/publish", json={})
        assert published["status"] == "live", published
        return uuid.UUID(flow["id"])

    async def customer(self, external_id: str, **fields: Any) -> uuid.UUID:
        """A subscribed customer (email and SMS) known by the shop's user id."""
        body = {
            "external_id": external_id,
            "email": f"{external_id}@example.com",
            "phone": f"+4860{uuid.uuid4().int % 10**7:07d}",
            "first_name": "Ada",
            "timezone": "Europe/Warsaw",
            "locale": "pl-PL",
            "consents": {"email": "subscribed", "sms": "subscribed"},
            **fields,
        }
        profile = await self.api("POST", "/v1/profiles", 201, json=body)
        self.phones[uuid.UUID(profile["id"])] = profile["phone"]
        return uuid.UUID(profile["id"])

    async def outbox(self, profile_id: uuid.UUID) -> list[dict[str, Any]]:
        """What the local-mode channels sent the customer, oldest first. (The local outbox
        keeps the profile of emails and pushes only: SMS are found by the phone number.)"""
        found = {}
        for params in ({"profile_id": str(profile_id)}, {"to": self.phones[profile_id]}):
            page = await self.api("GET", "/v1/outbox", params={**params, "limit": 200})
            found |= {m["id"]: m for m in page["data"]}
        return sorted(found.values(), key=lambda m: (m["created_at"], m["id"]))

    async def clicked(self, text: str, before: str) -> str:
        """Where the tracked link in `text` right after `before` takes the customer."""
        link = re.search(re.escape(before) + r'"?(https://wm\.example\.com(/l/c/[^"\s<]+))', text)
        assert link, f"no tracked link after {before!r} in {text!r}"
        response = await self.http.get(link.group(2))
        assert response.status_code == 302, response.text
        return response.headers["location"]

    # --- the storefront (tracking API, public write key) ----------------------------------

    async def track(self, user_id: str, event: str, properties: dict[str, Any], **call: Any):
        call = {"userId": user_id, "event": event, "properties": properties,
                "messageId": str(uuid.uuid4()), **call}  # fmt: skip
        response = await self.http.post("/v1/track", headers=self.ws.tracking, json=call)
        assert response.status_code == 200, response.text
        return call["messageId"]

    async def batch(self, calls: list[dict[str, Any]]) -> dict[str, Any]:
        body = {"batch": [{"type": "track", "messageId": str(uuid.uuid4()), **c} for c in calls]}
        response = await self.http.post("/v1/batch", headers=self.ws.tracking, json=body)
        assert response.status_code == 200, response.text
        return response.json()

    # --- the workers ----------------------------------------------------------------------

    def worker(self, **options: Any) -> Worker:
        """A worker process's Temporal worker (use as `async with`); options as `Worker`'s."""
        return build_worker(self.client, self.settings, self.engine, **options)

    async def skip(self, duration: timedelta) -> None:
        """Let `duration` of journey time pass (timers due meanwhile fire). Run a worker: the
        test server does not move its clock while a workflow task waits for one."""
        await self.env.sleep(duration)

    # --- what happened (the database) -----------------------------------------------------

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(text(sql), params)).mappings())

    async def journeys(self, flow_id: uuid.UUID, profile_id: uuid.UUID) -> list[Any]:
        return await self.rows(
            "SELECT * FROM journeys WHERE flow_id = :f AND profile_id = :p ORDER BY started_at",
            f=flow_id, p=profile_id,
        )  # fmt: skip

    async def at_step(self, flow_id: uuid.UUID, profile_id: uuid.UUID, step: str) -> Any:
        """Wait until the customer's journey is in `step` (its `entered` row written)."""

        async def arrived() -> Any:
            rows = await self.journeys(flow_id, profile_id)
            return rows and rows[-1]["current_step"] == step and rows[-1]

        arrived.__name__ = f"journey at {step}"
        return await until(arrived)

    async def ended(self, flow_id: uuid.UUID, profile_id: uuid.UUID) -> Any:
        async def done() -> Any:
            rows = await self.journeys(flow_id, profile_id)
            return rows and rows[-1]["status"] != "active" and rows[-1]

        return await until(done)

    async def messages(self, flow_id: uuid.UUID, profile_id: uuid.UUID) -> list[Any]:
        """The ledger's rows of the flow's messages to the customer, by creation."""
        return await self.rows(
            "SELECT * FROM messages WHERE flow_id = :f AND profile_id = :p ORDER BY created_at",
            f=str(flow_id), p=profile_id,
        )  # fmt: skip

    async def step_times(self, journey_id: uuid.UUID, outcome: str) -> dict[str, datetime]:
        """When (journey time) each step reached `outcome`."""
        rows = await self.rows(
            "SELECT step_id, occurred_at FROM journey_steps WHERE journey_id = :j AND outcome = :o",
            j=journey_id, o=outcome,
        )  # fmt: skip
        return {r["step_id"]: r["occurred_at"] for r in rows}

    async def event_time(self, message_id: str) -> datetime:
        [row] = await self.rows(
            "SELECT occurred_at FROM events WHERE workspace_id = :ws AND message_id = :m",
            ws=self.ws.id, m=message_id,
        )  # fmt: skip
        return row["occurred_at"]


@pytest.fixture
async def skipping_env(time_skipping_env: WorkflowEnvironment) -> WorkflowEnvironment:
    """The time-skipping server with Waymark's search attributes (it takes none at start)."""
    client = time_skipping_env.client
    request = AddSearchAttributesRequest(
        namespace=client.namespace,
        search_attributes={k.name: k.indexed_value_type for k in search_attributes.ALL},
    )
    await client.operator_service.add_search_attributes(request)
    return time_skipping_env


@pytest.fixture
async def shop(
    skipping_env: WorkflowEnvironment,
    database_url: str,
    engine: AsyncEngine,
    workspaces: WorkspaceFactory,
    task_queue: str,
) -> AsyncIterator[Shop]:
    """API + outbox dispatcher (with the journey router) on the time-skipping server; start
    workers with `shop.worker()`."""
    client = skipping_env.client
    settings = Settings(
        database_url=database_url,
        temporal_address=client.service_client.config.target_host,
        task_queue=task_queue,
        secret_key=SECRET,
        public_url="https://wm.example.com",
    )
    app = create_app(settings)
    app.dependency_overrides[get_temporal] = lambda: client
    stop = asyncio.Event()
    dispatcher = build_dispatcher(client, settings, engine)
    async with (
        LifespanManager(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="http://waymark.test") as http,
        _running(dispatcher.run(stop), stop),
    ):
        shop = Shop(skipping_env, http, engine, settings, await workspaces.create("Linen & Co"))
        await shop.configure()
        yield shop


@asynccontextmanager
async def _running(work: Awaitable[None], stop: asyncio.Event) -> AsyncIterator[None]:
    task = asyncio.ensure_future(work)
    try:
        yield
    finally:
        stop.set()
        await task
