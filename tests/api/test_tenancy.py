"""Tenancy, for every route the app serves: no key, a bad key or a revoked key gets 401, and a key
of workspace A cannot read, list, change or delete anything of workspace B (404).

The routes come from the app itself, so a new route is checked without touching this file; a
new path parameter fails the test until `RESOURCES` learns how to make one in workspace B.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from httpx import AsyncClient, Response

from api.deps import require, tracking_principal
from tests.factories import bearer

if TYPE_CHECKING:  # imported by name, pytest would try to collect it as a test class
    from tests.factories import TestWorkspace

SKIPPED_PATHS = {"/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"}
# Routes that take no API key by design, and what authenticates them instead. A route without a
# key dependency that is not here fails `test_every_route_takes_a_key_or_says_why_not`.
NO_API_KEY = {
    "/l/": "the signed token in the URL (channels.links); a forged one answers 404",
    "/webhooks/": "the provider's signature; a bad one answers 401",
    "/outbox": "a developer page holding no data; it calls /v1/outbox with a key",
    "/waymark-push.js": "a static storefront script",
    "/waymark-sw.js": "a static service worker",
}


# --- the routes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    auth: str  # "private" (require(scope)), "tracking" (the public write key too), or "none"

    @property
    def tracking(self) -> bool:
        return self.auth == "tracking"

    @property
    def params(self) -> list[str]:
        return re.findall(r"{(\w+)(?::\w+)?}", self.path)

    def url(self, values: dict[str, str]) -> str:
        return re.sub(r"{(\w+)(?::\w+)?}", lambda m: values[m.group(1)], self.path)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _route_entries(app: FastAPI) -> Iterator[Any]:
    """Every route with its effective path. Newer FastAPI keeps included routers as one entry
    each (`iter_route_contexts` expands them); older versions copy the routes into `app.routes`."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:
        yield from app.routes
    else:
        yield from iter_route_contexts(app.routes)


def _calls(dependant: Any) -> Iterator[Callable[..., Any]]:
    for sub in getattr(dependant, "dependencies", None) or []:
        yield sub.call
        yield from _calls(sub)


def _auth(dependant: Any) -> str:
    calls = list(_calls(dependant))
    if any(call is tracking_principal for call in calls):
        return "tracking"
    scoped = f"{require.__qualname__}.<locals>."
    if any(getattr(call, "__qualname__", "").startswith(scoped) for call in calls):
        return "private"
    return "none"


def endpoints(app: FastAPI, *, keyed: bool = True) -> list[Endpoint]:
    """The app's routes; only those that take an API key unless `keyed` is False."""
    found = []
    for entry in _route_entries(app):
        route = getattr(entry, "original_route", entry)
        if not isinstance(route, APIRoute) or entry.path in SKIPPED_PATHS:
            continue
        auth = _auth(entry.dependant)
        for method in sorted(set(entry.methods) - {"HEAD", "OPTIONS"}):
            if auth != "none" or not keyed:
                found.append(Endpoint(method, entry.path, auth))
    assert len(found) > 20, f"route discovery found only {[str(e) for e in found]}"
    return found


# --- plausible request bodies from the OpenAPI schema -----------------------------------------


def _resolve(schema: dict, document: dict) -> dict:
    while "$ref" in schema:
        node: Any = document
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def example(schema: dict, document: dict) -> Any:
    """A small value the schema accepts (examples, defaults and enums first; required only)."""
    schema = _resolve(schema, document)
    if "example" in schema:
        return schema["example"]
    if schema.get("examples"):
        return schema["examples"][0]
    if "default" in schema:
        return schema["default"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [_resolve(s, document) for s in schema[key]]
            usable = [s for s in options if s.get("type") != "null"] or options
            return example(usable[0], document)
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            value = example(part, document)
            if isinstance(value, dict):
                merged |= value
        return merged
    kind = schema.get("type", "object")
    if kind == "object":
        properties = schema.get("properties", {})
        required = schema.get("required", [])
        return {name: example(properties.get(name, {}), document) for name in required}
    if kind == "array":
        items = schema.get("items", {})
        return [example(items, document) for _ in range(schema.get("minItems", 0))]
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return True
    text_formats = {
        "uuid": str(uuid.uuid4()),
        "date-time": datetime.now(UTC).isoformat(),
        "uri": "https://example.com/x",
        "email": "someone@example.com",
        "binary": "x",
    }
    return text_formats.get(schema.get("format", ""), "x" * max(schema.get("minLength", 1), 1))


# Bodies the schema cannot describe (cross-field rules). Keyed by "METHOD /path".
BODIES: dict[str, Any] = {
    "POST /v1/lists/{list_id}/members": {"emails": ["someone@example.com"]},
    "DELETE /v1/lists/{list_id}/members": {"emails": ["someone@example.com"]},
}


def request_body(document: dict, endpoint: Endpoint) -> dict[str, Any]:
    """`client.request` keyword arguments carrying a plausible body (none when none is taken)."""
    if str(endpoint) in BODIES:
        return {"json": BODIES[str(endpoint)]}
    operation = document["paths"].get(endpoint.path, {}).get(endpoint.method.lower(), {})
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        return {"json": example(content["application/json"].get("schema", {}), document)}
    if "multipart/form-data" in content:
        schema = _resolve(content["multipart/form-data"]["schema"], document)
        files, data = {}, {}
        for name in schema.get("required", []):
            prop = _resolve(schema["properties"][name], document)
            if prop.get("format") == "binary" or prop.get("contentMediaType"):
                files[name] = ("upload.csv", b"email\nsomeone@example.com\n", "text/csv")
            else:
                data[name] = str(example(prop, document))
        return {"files": files or None, "data": data or None}
    return {}


# --- workspace B's resources, one per path parameter ------------------------------------------


@dataclass
class Tenant:
    """A workspace driven through its own API with its own admin key."""

    client: AsyncClient
    ws: TestWorkspace
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    made: dict[str, str] = field(default_factory=dict)

    async def call(self, method: str, url: str, **kwargs: Any) -> Response:
        return await self.client.request(method, url, headers=self.ws.admin, **kwargs)

    async def create(self, method: str, url: str, expected: int = 201, **kwargs: Any) -> dict:
        r = await self.call(method, url, **kwargs)
        assert r.status_code == expected, f"{method} {url} for the setup: {r.status_code} {r.text}"
        return r.json()

    @property
    def email(self) -> str:
        return f"person-{self.tag}@example.com"

    @property
    def external_id(self) -> str:
        return f"customer-{self.tag}"

    @property
    def suppressed(self) -> str:
        return f"bounced-{self.tag}@example.com"


@dataclass(frozen=True)
class Resource:
    """How to make one in a workspace (returns the path value) and how its owner sees it."""

    make: Callable[[Tenant], Awaitable[str]]
    view: Callable[[Tenant, str], Awaitable[Any]] | None = None
    # False for a selector (a channel name): with only those, a route acts on the caller's own
    # workspace, so A gets its own answer; B's resources must still be unchanged.
    owned: bool = True


async def _profile(t: Tenant) -> str:
    body = {
        "external_id": t.external_id,
        "email": t.email,
        "phone": f"+4860{int(t.tag, 16) % 10**7:07d}",
        "first_name": "Bea",
        "properties": {"tier": "gold"},
        "consents": {"email": "subscribed"},
    }
    return (await t.create("POST", "/v1/profiles", json=body))["id"]


async def _profile_view(t: Tenant, profile_id: str) -> Any:
    urls = [f"/v1/profiles/{profile_id}", f"/v1/profiles/{profile_id}/consents"]
    urls.append(f"/v1/profiles/{profile_id}/consents/history")
    urls.append(f"/v1/profiles/{profile_id}/push-subscriptions")
    return [await _json(t, url) for url in urls]


async def _list(t: Tenant) -> str:
    list_id = (await t.create("POST", "/v1/lists", json={"name": f"VIP {t.tag}"}))["id"]
    profile_id = await made(t, "profile_id")
    await t.create("POST", f"/v1/lists/{list_id}/members", 200, json={"profile_ids": [profile_id]})
    return list_id


async def _list_view(t: Tenant, list_id: str) -> Any:
    return [await _json(t, f"/v1/lists/{list_id}{tail}") for tail in ("", "/members", "/changes")]


async def _key(t: Tenant) -> str:
    return (await t.create("POST", "/v1/keys", json={"name": f"k {t.tag}", "scopes": ["read"]}))[
        "id"
    ]


async def _import(t: Tenant) -> str:
    csv = f"email,first_name\n{t.email},Bea\nnot-an-email,X\n".encode()
    files = {"file": (f"{t.tag}.csv", csv, "text/csv")}
    return (await t.create("POST", "/v1/imports", 202, files=files))["id"]


async def _import_view(t: Tenant, import_id: str) -> Any:
    status, body = await _json(t, f"/v1/imports/{import_id}")
    return status, {k: body.get(k) for k in ("id", "filename", "list_id", "created_at")}


async def _channel(t: Tenant) -> str:
    # The profile is subscribed on email, and the suppressed address is an email too.
    await made(t, "profile_id")
    return "email"


async def _segment(t: Tenant) -> str:
    definition = {
        "type": "behaviour",
        "metric": "Placed Order",
        "count": {"op": "at_least", "value": 1},
        "timeframe": {"kind": "all_time"},
    }
    body = {"name": f"Buyers {t.tag}", "definition": definition}
    return (await t.create("POST", "/v1/segments", json=body))["id"]


async def _template(t: Tenant) -> str:
    body = {"name": f"Hello {t.tag}", "channel": "sms", "body": "Hi {{ profile.first_name }}"}
    return (await t.create("POST", "/v1/templates", json=body))["id"]


async def _address(t: Tenant) -> str:
    body = {"channel": "email", "address": t.suppressed, "reason": "hard_bounce"}
    return (await t.create("POST", "/v1/suppressions", json=body))["address"]


async def _address_view(t: Tenant, address: str) -> Any:
    status, body = await _json(t, "/v1/suppressions", params={"channel": "email", "limit": 200})
    return status, [s for s in body["data"] if s["address"] == address]


async def _flow(t: Tenant) -> str:
    from tests.flows import flow_body

    body = {"definition": flow_body(f"Cart {t.tag}", await made(t, "template_id"))}
    flow_id = (await t.create("POST", "/v1/flows", json=body))["id"]
    await t.create("POST", f"/v1/flows/{flow_id}/publish", 200, json={"message": "v1"})
    return flow_id


async def _flow_version(t: Tenant) -> str:
    await made(t, "flow_id")
    return "1"


async def _campaign(t: Tenant) -> str:
    body = {"name": f"Sale {t.tag}", "path": {"include_lists": [await made(t, "list_id")]}}
    return (await t.create("POST", "/v1/campaigns", json=body))["id"]


async def _campaign_path(t: Tenant) -> str:
    campaign_id = await made(t, "campaign_id")
    return (await t.call("GET", f"/v1/campaigns/{campaign_id}")).json()["paths"][0]["id"]


async def _campaign_message(t: Tenant) -> str:
    campaign_id, path_id = await made(t, "campaign_id"), await made(t, "path_id")
    body = {
        "name": f"Launch {t.tag}",
        "channel": "sms",
        "template_id": await made(t, "template_id"),
    }
    url = f"/v1/campaigns/{campaign_id}/paths/{path_id}/messages"
    return (await t.create("POST", url, json=body))["id"]


async def _review(t: Tenant) -> str:
    """A send of the flow waiting for review (as a journey of a manual flow registers it)."""
    from sqlalchemy import text

    from core.db import session_scope

    flow_id, profile_id = await made(t, "flow_id"), await made(t, "profile_id")
    ids = {"j": uuid.uuid4(), "r": uuid.uuid4(), "ws": t.ws.id, "f": flow_id, "p": profile_id,
           "t": await made(t, "template_id")}  # fmt: skip
    async with session_scope(t.ws.engine) as session:
        await session.execute(text(
            "INSERT INTO journeys (id, workspace_id, flow_id, flow_version, profile_id, "
            "workflow_id, status, current_step) VALUES (:j, :ws, :f, 1, :p, 'journey-x', "
            "'active', 'remind')"), ids)  # fmt: skip
        await session.execute(text(
            "INSERT INTO journey_reviews (id, workspace_id, flow_id, flow_version, step_id, "
            "journey_id, profile_id, channel, template_id, status) VALUES (:r, :ws, :f, 1, "
            "'remind', :j, :p, 'sms', :t, 'waiting')"), ids)  # fmt: skip
    return str(ids["r"])


async def _review_view(t: Tenant, review_id: str) -> Any:
    return await _json(t, f"/v1/flows/{t.made['flow_id']}/reviews/{review_id}")


# Every path parameter of every route must be here; a new one fails `test_cross_workspace`.
RESOURCES: dict[str, Resource] = {
    "profile_id": Resource(_profile, _profile_view),
    "list_id": Resource(_list, _list_view),
    "key_id": Resource(_key, lambda t, key_id: _json(t, f"/v1/keys/{key_id}")),
    "import_id": Resource(_import, _import_view),
    "job_id": Resource(_import, _import_view),
    "channel": Resource(_channel, owned=False),
    "segment_id": Resource(_segment, lambda t, i: _json(t, f"/v1/segments/{i}")),
    "template_id": Resource(_template, lambda t, i: _json(t, f"/v1/templates/{i}")),
    "address": Resource(_address, _address_view),
    "flow_id": Resource(_flow, lambda t, i: _json(t, f"/v1/flows/{i}")),
    "version": Resource(_flow_version),
    "review_id": Resource(_review, _review_view),
    "campaign_id": Resource(_campaign, lambda t, i: _json(t, f"/v1/campaigns/{i}")),
    "path_id": Resource(_campaign_path),
    "message_id": Resource(_campaign_message),
}


async def made(t: Tenant, param: str) -> str:
    """The tenant's resource for a path parameter, made on first use."""
    if param not in t.made:
        t.made[param] = await RESOURCES[param].make(t)
    return t.made[param]


async def _json(t: Tenant, url: str, **kwargs: Any) -> tuple[int, Any]:
    r = await t.call("GET", url, **kwargs)
    return r.status_code, r.json()


async def views(t: Tenant) -> dict[str, Any]:
    return {
        param: await resource.view(t, t.made[param])
        for param, resource in RESOURCES.items()
        if resource.view is not None and param in t.made
    }


def _problem(endpoint: Endpoint, sent: str, r: Response, expected: int) -> str | None:
    if r.status_code != expected:
        return f"{endpoint} with {sent}: {r.status_code} (expected {expected}) {r.text[:300]}"
    try:
        error = r.json()["error"]
        assert {"code", "message", "details"} <= error.keys()
    except (ValueError, KeyError, TypeError, AssertionError):
        return f"{endpoint} with {sent}: {expected} not in the error shape: {r.text[:300]}"
    return None


def _basic(username: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:".encode()).decode()}


# --- the checks --------------------------------------------------------------------------------


@pytest.fixture
async def two(client, workspaces) -> tuple[Tenant, Tenant]:
    a = Tenant(client, await workspaces.create("Shop A"))
    b = Tenant(client, await workspaces.create("Shop B"))
    return a, b


def test_every_route_takes_a_key_or_says_why_not(app):
    unexplained = [
        str(e)
        for e in endpoints(app, keyed=False)
        if e.auth == "none" and not any(e.path.startswith(prefix) for prefix in NO_API_KEY)
    ]
    assert not unexplained, (
        "routes that take no API key; add a key dependency (api.deps) or, when public by design, "
        "say what authenticates them in NO_API_KEY: " + ", ".join(unexplained)
    )


async def test_every_route_answers_401_without_a_valid_key(app, client, two):
    a, b = two
    new = await a.create("POST", "/v1/keys", json={"name": "soon revoked", "scopes": ["admin"]})
    assert (await client.get("/v1/keys", headers=bearer(new["key"]))).status_code == 200
    await a.create("DELETE", f"/v1/keys/{new['id']}", 200)

    private_credentials = {
        "no Authorization header": {},
        "a bogus private key": bearer("wm_sk_bogus"),
        "a revoked private key": bearer(new["key"]),
        "an empty bearer token": {"Authorization": "Bearer "},
    }
    document = app.openapi()
    problems = []
    for endpoint in endpoints(app):
        credentials = dict(private_credentials)
        if endpoint.tracking:
            credentials["a bogus public write key (Basic)"] = _basic("wm_pk_bogus")
            credentials["a private key as the Basic username"] = _basic(b.ws.admin_key)
        else:
            # The public write key ships in storefront pages: it must open nothing else.
            credentials["a valid public write key (Basic)"] = _basic(b.ws.public_key)
        url = endpoint.url({p: str(uuid.uuid4()) for p in endpoint.params})
        bodies = {"a plausible body": request_body(document, endpoint), "`{}`": {"json": {}}}
        for body_name, body in bodies.items():
            for name, headers in credentials.items():
                r = await client.request(endpoint.method, url, headers=headers, **body)
                problems.append(_problem(endpoint, f"{name} and {body_name}", r, 401))
    problems = [p for p in problems if p]
    assert not problems, "routes that do not answer 401:\n" + "\n".join(problems)


async def test_auth_comes_before_reading_the_body(app, client):
    """A caller without a key learns nothing, not even what the body should look like."""
    problems = []
    for endpoint in endpoints(app):
        if endpoint.method == "GET":
            continue
        url = endpoint.url({p: str(uuid.uuid4()) for p in endpoint.params})
        for name, content in {"malformed JSON": b"{not json", "a JSON list": b"[1, 2]"}.items():
            r = await client.request(
                endpoint.method, url, content=content, headers={"Content-Type": "application/json"}
            )
            problems.append(_problem(endpoint, f"no key and {name}", r, 401))
    problems = [p for p in problems if p]
    assert not problems, "routes that read the body before the key:\n" + "\n".join(problems)


async def test_cross_workspace(app, client, two):
    """A's admin key on B's resources: 404 on every route with a path parameter (as if they
    did not exist), and B's resources unchanged afterwards."""
    a, b = two
    routes = [e for e in endpoints(app) if e.params]
    unknown = sorted({f"{e} ({p})" for e in routes for p in e.params if p not in RESOURCES})
    assert not unknown, (
        "path parameters the tenancy test cannot make in workspace B; add them to RESOURCES in "
        "tests/api/test_tenancy.py: " + ", ".join(unknown)
    )
    values = {p: await made(b, p) for e in routes for p in e.params}
    before = await views(b)
    document = app.openapi()

    problems = []
    # Reads first, deletes last, so a leaking DELETE does not hide a leaking read.
    order = {"GET": 0, "PUT": 1, "PATCH": 1, "POST": 2, "DELETE": 3}
    for endpoint in sorted(routes, key=lambda e: order.get(e.method, 2)):
        url = endpoint.url(values)
        body = request_body(document, endpoint)
        if endpoint.method == "GET":  # the ids are good: B itself reads them
            own = await b.call("GET", url)
            if not own.is_success:
                problems.append(f"{endpoint}: B's own key gets {own.status_code}; fix RESOURCES")
        r = await client.request(endpoint.method, url, headers=a.ws.admin, **body)
        # With only selectors in the path (a channel), A acts on its own workspace: the answer
        # is A's own; what matters is that B's resources below are unchanged.
        names_b_resource = any(RESOURCES[p].owned for p in endpoint.params)
        if names_b_resource and r.status_code != 404:
            problems.append(
                f"{endpoint} {url} with workspace A's key: {r.status_code} (expected 404) "
                f"{r.text[:300]}"
            )
        elif names_b_resource and r.json().get("error", {}).get("code") != "not_found":
            problems.append(f"{endpoint}: 404 not in the error shape: {r.text[:300]}")
        after = await views(b)
        for param, view in before.items():
            if after[param] != view:
                problems.append(
                    f"{endpoint} with workspace A's key changed B's {param}:\n  before {view}\n"
                    f"  after  {after[param]}"
                )
                before[param] = after[param]
    assert not problems, "cross-workspace leaks:\n" + "\n".join(problems)


def _markers(t: Tenant) -> dict[str, str]:
    """Strings only this workspace's data contains."""
    return {
        "workspace id": str(t.ws.id),
        "public key": t.ws.public_key,
        "email": t.email,
        "external id": t.external_id,
        "suppressed address": t.suppressed,
        **{p: v for p, v in t.made.items() if p not in ("channel", "version")},  # not unique
    }


# Query parameters that name a resource: A filters by B's values and must find nothing of B.
async def _query_values(t: Tenant) -> dict[str, str]:
    return {
        "email": t.email,
        "external_id": t.external_id,
        "list_id": await made(t, "list_id"),
        "profile_id": await made(t, "profile_id"),
        "anonymous_id": t.external_id,
    }


async def test_listings_never_show_another_workspace(app, client, two):
    a, b = two
    for t in (a, b):
        for param in RESOURCES:
            await made(t, param)
    b_markers, a_markers = _markers(b), _markers(a)
    b_values = await _query_values(b)
    document = app.openapi()

    problems, seen = [], ""
    for endpoint in endpoints(app):
        if endpoint.method != "GET" or endpoint.params:
            continue
        parameters = document["paths"].get(endpoint.path, {}).get("get", {}).get("parameters", [])
        names = {p["name"] for p in parameters if p.get("in") == "query"}
        queries = [{}] + [{name: b_values[name]} for name in sorted(names & b_values.keys())]
        for query in queries:
            r = await client.get(endpoint.path, params=query, headers=a.ws.admin)
            seen += r.text
            if r.status_code >= 500:
                problems.append(f"{endpoint} {query}: {r.status_code} {r.text[:300]}")
            leaked = [name for name, value in b_markers.items() if value in r.text]
            if leaked:
                problems.append(f"{endpoint} {query} with A's key shows B's {', '.join(leaked)}")
            if query and r.status_code == 200:
                data = r.json().get("data")
                if data is None or data:  # a lookup answers 404; a listing an empty page
                    problems.append(f"{endpoint} {query}: found B's data: {r.text[:300]}")
    assert not problems, "listings that leak:\n" + "\n".join(problems)
    # The listings are not empty by accident: between them they show A's own resources.
    missing = [name for name in ("profile_id", "list_id", "key_id", "suppressed address")]
    missing = [name for name in missing if a_markers[name] not in seen]
    assert not missing, f"A's own {missing} appear in none of A's listings"


async def test_ids_of_another_workspace_in_bodies(client, two):
    """B's ids inside A's requests: never joined, never linked, never touched."""
    a, b = two
    b_profile, b_list = await made(b, "profile_id"), await made(b, "list_id")
    before = await views(b)
    a_list = await made(a, "list_id")

    r = await client.post(
        f"/v1/lists/{a_list}/members", json={"profile_ids": [b_profile]}, headers=a.ws.admin
    )
    assert r.status_code == 200, r.text
    assert r.json()["joined"] == 0 and [x["identifier"] for x in r.json()["rejected"]] == [
        b_profile
    ]
    members = (await client.get(f"/v1/lists/{a_list}/members", headers=a.ws.admin)).json()
    assert b_profile not in json.dumps(members)

    files = {"file": ("x.csv", b"email\nsomeone@example.com\n", "text/csv")}
    r = await client.post("/v1/imports", files=files, data={"list_id": b_list}, headers=a.ws.admin)
    assert r.status_code == 404, r.text

    # Tracking with A's write key, naming B's people: A gets its own profiles, B is untouched.
    user = {"userId": b.external_id}
    for url, body in {
        "/v1/identify": {**user, "traits": {"email": b.email, "first_name": "Mallory"}},
        "/v1/track": {**user, "event": "Order Completed", "properties": {"revenue": 1}},
        "/v1/alias": {**user, "previousId": b_profile},
    }.items():
        r = await client.post(url, json=body, headers=a.ws.tracking)
        assert r.status_code == 200, f"{url}: {r.text}"
    assert await views(b) == before
