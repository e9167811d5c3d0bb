"""A fast local stand-in for SendGrid's Mail Send and Twilio's Messages API, in its own process.

It answers like the providers (202 + X-Message-Id; a Twilio message resource) and counts every
recipient it is handed, by run tag — the domain of an email address, or "sms" + the first four
digits of a phone number — so a benchmark can check exactly-once delivery. `/stall?tag=&at=N`
makes it hold every answer once a run has N recipients (a crash mid-send can then be staged);
`/stall?off` lets them go. `/received?tag=&after=K` lists (recipient, Waymark message id) in
arrival order, for playing the provider's event webhook; `/requests` counts the Mail Send and
Twilio requests handled.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import socket
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.common import free_port
from channels.providers.sendgrid import MESSAGE_ID_ARG

ACCOUNT_SID = "AC" + "0" * 32


def _serve(port: int) -> None:
    from collections import Counter

    from aiohttp import web

    seen: dict[str, Counter] = {}  # run tag -> recipient -> deliveries
    received: dict[str, list[tuple[str, str]]] = {}  # run tag -> (recipient, Waymark message id)
    counter = iter(range(1 << 62))
    requests = {"mail": 0, "sms": 0}  # requests handled, by API
    flowing = asyncio.Event()  # cleared: requests are counted, then left waiting for an answer
    flowing.set()

    stall_at: dict[str, int] = {}  # run tag -> stop answering once this many recipients came

    def count(address: str, message_id: str) -> None:
        tag = address.rsplit("@", 1)[-1] if "@" in address else "sms" + address.lstrip("+")[:4]
        seen.setdefault(tag, Counter())[address] += 1
        received.setdefault(tag, []).append((address, message_id))
        if len(seen[tag]) >= stall_at.get(tag, 1 << 62):
            flowing.clear()

    async def mail(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        requests["mail"] += 1
        for personalization in body["personalizations"]:
            message_id = personalization.get("custom_args", {}).get(MESSAGE_ID_ARG, "")
            for to in personalization["to"]:
                count(to["email"], message_id)
        await flowing.wait()
        return web.Response(status=202, headers={"X-Message-Id": f"sg{next(counter)}"})

    async def message(request: web.Request) -> web.Response:
        form = await request.post()
        requests["sms"] += 1
        count(str(form["To"]), "")
        await flowing.wait()
        sid = f"SM{next(counter):032x}"
        return web.json_response(
            {
                "sid": sid,
                "account_sid": ACCOUNT_SID,
                "to": form.get("To"),
                "from": form.get("From"),
                "body": form.get("Body"),
                "status": "queued",
                "num_segments": "1",
                "direction": "outbound-api",
                "api_version": "2010-04-01",
                "date_created": "Wed, 02 Dec 2026 10:00:00 +0000",
                "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
            },
            status=201,
        )

    async def counts(request: web.Request) -> web.Response:
        got = seen.get(request.query["tag"], Counter())
        total = sum(got.values())
        return web.json_response(
            {
                "recipients": len(got),
                "deliveries": total,
                "duplicates": total - len(got),
                "stalled": not flowing.is_set(),
            }
        )

    async def since(request: web.Request) -> web.Response:
        after = int(request.query.get("after", 0))
        return web.json_response(received.get(request.query["tag"], [])[after:])

    async def stall(request: web.Request) -> web.Response:
        """`?tag=…&at=N`: hold every answer once the run has N recipients; `?off`: go on."""
        if "off" in request.query:
            stall_at.clear()
            flowing.set()
        else:
            stall_at[request.query["tag"]] = int(request.query["at"])
        return web.json_response({"stalled": not flowing.is_set()})

    app = web.Application(client_max_size=32 * 1024 * 1024)

    async def handled(request: web.Request) -> web.Response:
        return web.json_response(requests)

    app.router.add_get("/counts", counts)
    app.router.add_get("/requests", handled)
    app.router.add_get("/received", since)
    app.router.add_post("/stall", stall)
    app.router.add_post("/v3/mail/send", mail)
    app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", message)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def call(base_url: str, path: str, method: str = "GET") -> Any:
    """One of the sink's own endpoints (/counts, /received, /stall), JSON back."""
    request = urllib.request.Request(f"{base_url}{path}", method=method)
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def counts(base_url: str, tag: str) -> dict[str, Any]:
    """recipients (distinct), deliveries, duplicates of a run tag; stalled (answers held)."""
    return call(base_url, f"/counts?tag={tag}")


@contextmanager
def running() -> Iterator[str]:
    """The sink in a separate process (so it does not share the benchmark's CPU); its URL."""
    port = free_port()
    process = multiprocessing.get_context("spawn").Process(target=_serve, args=(port,))
    process.start()
    try:
        _wait_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.join()


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"the sink did not start on port {port}")
