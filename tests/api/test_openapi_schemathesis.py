"""Schemathesis against our own OpenAPI schema: no request gets a 5xx, and every response keeps
to the schema (documented status code and content type, body matching its schema).

Driven by hand rather than through schemathesis' pytest plugin: the app lives in the session
event loop with its lifespan run by the `app` fixture, and `schemathesis.openapi.from_asgi` /
`case.call` would run a second lifespan (a new engine and Temporal client) in a thread of their
own. So the cases are generated with hypothesis from `operation.as_strategy()`, sent through our
httpx client, and judged with `case.validate_response`.
"""

from __future__ import annotations

import base64
import hashlib
import textwrap
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import schemathesis
from httpx import ASGITransport, AsyncClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from structlog.testing import capture_logs

from channels import links
from models import Channel
from tests.api import test_tenancy as tenancy

# Every tag the app serves (a new one fails the test). The routes without an API key are here
# too: links get a signed token of their kind, webhooks the workspace's id (no provider keys set
# up, so every webhook is a 401).
TAGS = {
    "profiles", "consents", "suppressions", "push", "lists", "tracking", "keys", "workspace",
    "flows", "flow reviews", "campaigns", "segments", "templates", "channels", "imports",
    "outbox", "links", "webhooks", "health",
}  # fmt: skip
EXAMPLES = 25  # per operation and generation mode, with the known ids
UNKNOWN_ID_EXAMPLES = 10  # and with path values of the fuzzer's own (4xx only, so fewer)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
BASE_URL = "http://waymark.test"


def generate(
    operation: Any, mode: GenerationMode, path_parameters: dict[str, str], examples: int
) -> list:
    """The cases hypothesis draws for the operation: derandomized, so every run sends the same."""
    cases: list = []
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters or None)

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(case: Any) -> None:
        cases.append(case)

    try:
        collect()
    except Unsatisfiable:
        # Nothing to make invalid: no body or query, and the path parameters are fixed (GET
        # /healthz, GET /v1/flows/{flow_id}). Positive cases must always exist.
        if mode is not GenerationMode.NEGATIVE:
            raise
    return cases


def _header(value: str) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


async def send(client, case: Any, authorization: str):
    """Send the case as schemathesis would (its own serialization), through our ASGI client."""
    kwargs = case.as_transport_kwargs(base_url=BASE_URL)
    kwargs["headers"]["Authorization"] = authorization
    kwargs.pop("cookies", None)
    prepared = requests.Request(**kwargs).prepare()
    headers = [(_header(k), _header(v)) for k, v in prepared.headers.items()]
    return await client.request(
        prepared.method, prepared.url, headers=headers, content=prepared.body or b""
    )


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.fixture
async def known(client, workspaces, settings) -> dict[str, Any]:
    """A workspace with one of each resource, so paths reach real rows and not only 404s: the
    ones made here, then the rest of test_tenancy's RESOURCES (a flow with a published version,
    a review waiting on it, a campaign with a path and a message, a segment, a template...)."""
    ws = await workspaces.create()

    async def made(url: str, body: dict, status: int = 201) -> dict:
        r = await client.post(url, json=body, headers=ws.admin)
        assert r.status_code == status, f"{url}: {r.text}"
        return r.json()

    profile = await made(
        "/v1/profiles",
        {
            "external_id": "cust-1",
            "email": "anna@example.com",
            "phone": "+48600100200",
            "properties": {"tier": "gold", "orders": 3},
            "consents": {"email": "subscribed", "sms": "unsubscribed"},
        },
    )
    lst = await made("/v1/lists", {"name": "VIP"})
    await made(f"/v1/lists/{lst['id']}/members", {"profile_ids": [profile["id"]]}, 200)
    key = await made("/v1/keys", {"name": "spare", "scopes": ["read"]})
    await made("/v1/suppressions", {"channel": "email", "address": "gone@example.com"})
    digest = hashlib.sha512(b"seed").digest()
    subscription = {
        "endpoint": "https://fcm.googleapis.com/fcm/send/one",
        "keys": {"p256dh": _b64url(b"\x04" + digest[:64]), "auth": _b64url(digest[:16])},
    }
    r = await client.post(
        "/v1/push/subscriptions",
        json={"userId": "cust-1", "subscription": subscription},
        headers=ws.tracking,
    )
    assert r.status_code == 201, r.text
    tenant = tenancy.Tenant(client, ws)
    tenant.made.update(profile_id=profile["id"], list_id=lst["id"], key_id=key["id"])
    for param in tenancy.RESOURCES:
        await tenancy.made(tenant, param)
    path = dict(tenant.made, workspace_id=str(ws.id))
    # A message that passes review, so schedule, cancel and revert reach their real work.
    send_at = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    message_url = f"/v1/campaigns/{path['campaign_id']}/messages/{path['message_id']}"
    r = await client.patch(message_url, json={"send_at": send_at}, headers=ws.admin)
    assert r.status_code == 200, r.text
    r = await client.get(f"{message_url}/review", headers=ws.admin)
    assert r.status_code == 200 and r.json()["errors"] == [], r.text
    owner = (ws.id, uuid.UUID(profile["id"]))
    tokens = {  # links: a token of the route's own kind (of another kind it is a 404)
        prefix: links.sign(
            settings, links.LinkToken(kind, Channel.email, *owner, url="https://shop.example/")
        )
        for kind, prefix in (
            (links.LinkKind.open, "/l/o/"),
            (links.LinkKind.click, "/l/c/"),
            (links.LinkKind.unsubscribe, "/l/u/"),
            (links.LinkKind.preferences, "/l/p/"),
        )
    }
    signer, copy = links.signer(settings, ws.id), b"c" * links.COPY_BYTES
    copy_click = {  # a click in an email of a shared copy: its message's token and its link's
        "token": signer.message_token(Channel.email, owner[1], uuid.uuid4(), copy),
        "link": signer.link_token(copy, "https://shop.example/"),
    }
    return {"ws": ws, "path": path, "tokens": tokens, "copy_click": copy_click}


def _path_parameters(operation: Any, known: dict[str, Any]) -> dict[str, str]:
    params = {p: v for p, v in known["path"].items() if "{" + p + "}" in operation.path}
    for prefix, token in known["tokens"].items():
        if operation.path.startswith(prefix):
            params["token"] = token
    if operation.path == "/l/c/{token}/{link}":
        params |= known["copy_click"]
    return params


def _order(operation: Any) -> tuple:
    # Deletes last (deepest path first), so they do not turn every later case into a 404.
    return operation.method.upper() == "DELETE", -len(operation.path), operation.path


@pytest.fixture
async def client(app) -> AsyncIterator[AsyncClient]:
    """Unlike the shared client, an unhandled exception comes back as the 500 a caller sees."""
    transport = ASGITransport(app=app, raise_app_exceptions=False)
    async with AsyncClient(transport=transport, base_url=BASE_URL) as c:
        yield c


def _authorization(operation: Any, ws: Any, public_key: str) -> str:
    schemes = {name for req in operation.definition.raw.get("security", []) for name in req}
    if "HTTPBasic" in schemes:  # tracking: the public write key, as storefronts send it
        return "Basic " + base64.b64encode(f"{public_key}:".encode()).decode()
    return f"Bearer {ws.admin_key}"


def _describe(exc: AssertionError | FailureGroup) -> tuple[str, str]:
    """The failed checks' names, and what each says."""
    found = exc.exceptions if isinstance(exc, FailureGroup) else (exc,)
    kinds = ", ".join(sorted({getattr(f, "title", type(f).__name__) for f in found}))
    details = "\n".join(str(getattr(f, "message", f))[:800] for f in found)
    return kinds, details


async def test_no_server_errors_and_responses_match_the_schema(client, known):
    document = (await client.get("/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(document)
    operations = [
        result.ok()
        for result in schema.get_all_operations()
        if TAGS & set(result.ok().definition.raw.get("tags", []))
    ]
    served = {
        tag for result in schema.get_all_operations() for tag in result.ok().definition.raw["tags"]
    }
    assert served == TAGS, f"new tags to fuzz: {served - TAGS}; gone: {TAGS - served}"

    ws, public_key, sent = known["ws"], known["ws"].public_key, 0
    failures: dict[tuple, list[str]] = {}  # (operation, failed checks, status) -> examples
    statuses: dict[str, set[int]] = {}  # operation -> what it answered with the known ids
    # Captured, not rendered: the dev renderer's tracebacks with locals take seconds per 500.
    with capture_logs() as logs:
        for operation in sorted(operations, key=_order):
            params = _path_parameters(operation, known)
            # With the known ids (real rows), then with ids of the fuzzer's own: unknown, out of
            # range or malformed ones must be a 4xx too.
            passes = [
                (mode, fixed, examples)
                for fixed, examples in (
                    [(params, EXAMPLES), ({}, UNKNOWN_ID_EXAMPLES)] if params else [({}, EXAMPLES)]
                )
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
            ]
            for mode, fixed, examples in passes:
                for case in generate(operation, mode, fixed, examples):
                    logged = len(logs)
                    response = await send(client, case, _authorization(operation, ws, public_key))
                    sent += 1
                    if fixed:
                        statuses.setdefault(operation.label, set()).add(response.status_code)
                    if operation.path.endswith("/public-key/rotate") and response.is_success:
                        public_key = response.json()["public_key"]
                    try:
                        case.validate_response(response, checks=CHECKS)
                    except (AssertionError, FailureGroup) as exc:
                        kinds, details = _describe(exc)
                        raised = [
                            repr(entry["exc_info"])[:500]
                            for entry in logs[logged:]
                            if isinstance(entry.get("exc_info"), BaseException)
                        ]
                        key = (operation.label, kinds, response.status_code)
                        failures.setdefault(key, []).append(
                            f"  {mode.value} request: "
                            f"{case.as_curl_command(base_url=BASE_URL)[:1500]}\n"
                            f"  response: {response.status_code} {response.text[:500]}\n"
                            + "".join(f"  raised: {r}\n" for r in raised)
                            + textwrap.indent(details, "    ")
                        )
    assert sent >= len(operations) * EXAMPLES
    # The known ids must reach real rows, or the fuzzer only ever sees 404s there.
    unreached = [op for op, codes in sorted(statuses.items()) if op.startswith("GET ") and
                 all(code >= 400 for code in codes)]  # fmt: skip
    assert not unreached, f"GETs that never answered 2xx or 3xx with the known ids: {unreached}"
    report = [
        f"{label}: {kinds} [{status}] x{len(examples)}\n{examples[0]}"
        for (label, kinds, status), examples in sorted(failures.items())
    ]
    summary = f"{len(report)} kinds of failure in {sent} requests:\n\n"
    assert not report, summary + "\n\n".join(report)
