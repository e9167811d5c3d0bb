"""The example flows end to end through the API, on the time-skipping server.

Flows and templates are installed from `examples/` through the REST API; customers' events
come in through `/v1/track` and `/v1/batch`; the outbox dispatcher, the journey router and a
worker do the rest. Times are journey times, against the event's time (see
`tests/flows/conftest.py`); every message is counted in the ledger and the local outbox.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from tests.flows.conftest import Shop, until

# Slack on top of each delay: the skip goes a minute past the timer, and the worker's real time.
SLACK = timedelta(minutes=5)


def cart(n: str) -> dict:
    return {
        "$value": 89.0,
        "currency": "PLN",
        "items": [
            {"name": f"Linen shirt {n}", "quantity": 1, "price": 59.0},
            {"name": "Wool socks", "quantity": 2, "price": 15.0},
        ],
        "checkout_url": f"https://linen.example.com/checkout/recover/{n}",
    }


async def sent(shop: Shop, flow: uuid.UUID, profile: uuid.UUID) -> list[tuple[str, str]]:
    """(step, channel) of every ledger row of the flow for the customer; each one was sent
    (accepted by the provider; a click on it since does not change that)."""
    rows = await shop.messages(flow, profile)
    assert all(m["sent_at"] is not None for m in rows), [(m["step_id"], m["status"]) for m in rows]
    return [(m["step_id"], m["channel"]) for m in rows]


async def after_event(shop: Shop, journey_id: uuid.UUID, message_id: str) -> dict[str, timedelta]:
    """How long after the triggering event each step completed, in journey time."""
    at = await shop.event_time(message_id)
    return {s: t - at for s, t in (await shop.step_times(journey_id, "completed")).items()}


def about(elapsed: timedelta, expected: timedelta) -> bool:
    return expected <= elapsed < expected + SLACK


async def test_abandoned_cart_sends_on_time_and_an_order_stops_it_at_once(shop: Shop):
    flow = await shop.install("abandoned-cart")
    names = ("stays", "early", "late", "last")
    stays, early, late, last = [await shop.customer(f"cart-{n}") for n in names]
    async with shop.worker():
        # The storefront's pipeline sends the three checkouts in one batch.
        answer = await shop.batch([
            {"userId": f"cart-{n}", "event": "Started Checkout", "properties": cart(n),
             "messageId": f"checkout-{n}"}
            for n in names
        ])  # fmt: skip
        assert answer["accepted"] == 4, answer
        journey = await shop.at_step(flow, stays, "wait-4-hours")
        for who in (early, late, last):
            await shop.at_step(flow, who, "wait-4-hours")

        # An order before the first email: out at once, nothing sent, now or later.
        left = await _order(shop, flow, early, "cart-early")
        assert (left["status"], left["end_reason"], left["current_step"]) == (
            "exited", "order_placed", "wait-4-hours",
        )  # fmt: skip

        await shop.skip(timedelta(hours=4, minutes=1))
        await shop.at_step(flow, stays, "wait-1-day")
        for who in (late, last):
            await shop.at_step(flow, who, "wait-1-day")
        for who in (stays, late, last):
            assert await sent(shop, flow, who) == [("reminder-email", "email")]
        [email] = await shop.outbox(stays)
        assert (email["channel"], email["to"]) == ("email", "cart-stays@example.com")
        assert email["subject"] == "You left something in your cart"
        assert "<li>Linen shirt stays × 1</li><li>Wool socks × 2</li>" in email["html"]
        checkout_url = cart("stays")["checkout_url"]
        assert await shop.clicked(email["html"], "<a href=") == checkout_url
        elapsed = await after_event(shop, journey["id"], "checkout-stays")
        assert about(elapsed["reminder-email"], timedelta(hours=4)), elapsed

        # Back at the checkout after the email: no second journey (the example's cooldown).
        await shop.track("cart-stays", "Started Checkout", cart("stays-again"))
        await until(_outbox_empty(shop))

        # An order between the email and the SMS: out at once, mid-delay.
        left = await _order(shop, flow, late, "cart-late")
        assert (left["status"], left["end_reason"], left["current_step"]) == (
            "exited", "order_placed", "wait-1-day",
        )  # fmt: skip

        await shop.skip(timedelta(days=1, minutes=1))
        await shop.at_step(flow, stays, "wait-2-days")
        await shop.at_step(flow, last, "wait-2-days")
        [_, sms] = await shop.outbox(stays)
        assert sms["channel"] == "sms"
        assert sms["text"].startswith("Linen & Co: your cart is still here. Finish your order: ")
        assert await shop.clicked(sms["text"], "Finish your order: ") == checkout_url

        # An order between the SMS and the discount: out at once, no discount.
        left = await _order(shop, flow, last, "cart-last")
        assert (left["status"], left["current_step"]) == ("exited", "wait-2-days")

        await shop.skip(timedelta(days=2, minutes=1))
        done = await shop.ended(flow, stays)
        assert done["status"] == "completed"
        [*_, discount] = await shop.outbox(stays)
        assert discount["subject"] == "10% off the cart you left behind"
        assert "COMEBACK10" in discount["html"]
        assert await shop.clicked(discount["html"], "<a href=") == checkout_url
        elapsed = await after_event(shop, journey["id"], "checkout-stays")
        assert about(elapsed["reminder-sms"], timedelta(days=1, hours=4)), elapsed
        assert about(elapsed["discount-email"], timedelta(days=3, hours=4)), elapsed

        # A week later: still nothing more for anyone.
        await shop.skip(timedelta(days=7))
    assert await sent(shop, flow, stays) == [
        ("reminder-email", "email"),
        ("reminder-sms", "sms"),
        ("discount-email", "email"),
    ]
    assert len(await shop.outbox(stays)) == 3
    assert len(await shop.journeys(flow, stays)) == 1
    assert await sent(shop, flow, early) == [] and await shop.outbox(early) == []
    assert await sent(shop, flow, late) == [("reminder-email", "email")]
    assert len(await shop.outbox(late)) == 1
    assert await sent(shop, flow, last) == [("reminder-email", "email"), ("reminder-sms", "sms")]
    assert len(await shop.outbox(last)) == 2


async def _order(shop: Shop, flow: uuid.UUID, profile: uuid.UUID, user: str):
    """The customer places an order; their journey's row once it has left, which it does
    at once: less than a minute of journey time after the order."""
    ordered = await shop.env.get_current_time()
    await shop.track(user, "Placed Order", {"$value": 89.0, "currency": "PLN"})
    left = await shop.ended(flow, profile)
    assert timedelta(0) <= left["ended_at"] - ordered < timedelta(minutes=1), (left, ordered)
    return left


async def test_post_purchase_sends_each_buyer_their_variant_then_review_and_cross_sell(
    shop: Shop,
):
    returning = await shop.customer("buyer-returning")
    # Last year's order, from before the flow existed: it starts nothing.
    last_year = (datetime.now(UTC) - timedelta(days=300)).isoformat()
    await shop.track("buyer-returning", "Placed Order", {"$value": 35.0}, timestamp=last_year)
    await until(_outbox_empty(shop))
    flow = await shop.install("post-purchase")
    first, vip = await shop.customer("buyer-first"), await shop.customer("buyer-vip")
    orders = {"buyer-first": 60.0, "buyer-vip": 150.0, "buyer-returning": 250.0}
    async with shop.worker():
        await shop.batch([
            {"userId": user, "event": "Placed Order", "messageId": f"order-{user}",
             "properties": {"$value": value, "currency": "PLN"}}
            for user, value in orders.items()
        ])  # fmt: skip
        buyers = {first: "buyer-first", vip: "buyer-vip", returning: "buyer-returning"}
        journeys = {p: await shop.at_step(flow, p, "wait-9-days") for p in buyers}
        first_mail = {p: (await shop.outbox(p))[0] for p in buyers}
        assert first_mail[first]["subject"] == "Thank you for your order, Ada"
        assert "Thank you for your order of 60,00\xa0zł." in first_mail[first]["html"]
        assert first_mail[vip]["subject"] == "A special thank-you, Ada"
        assert first_mail[returning]["subject"] == "Great to see you again"
        paths = {p: await _entered(shop, journeys[p]["id"]) for p in buyers}
        assert paths == {
            first: ["first-order", "vip-order", "thank-you", "wait-9-days"],
            vip: ["first-order", "vip-order", "thank-you-vip", "wait-9-days"],
            returning: ["first-order", "welcome-back", "wait-9-days"],
        }

        await shop.skip(timedelta(days=9, minutes=1))
        for p in buyers:
            await shop.at_step(flow, p, "wait-2-weeks")
        await shop.skip(timedelta(days=14, minutes=1))
        for p in buyers:
            assert (await shop.ended(flow, p))["status"] == "completed"
    for p, user in buyers.items():
        mails = await shop.outbox(p)
        assert [m["subject"] for m in mails[1:]] == [
            "How do you like it?",
            "Goes well with your last order",
        ]
        elapsed = await after_event(shop, journeys[p]["id"], f"order-{user}")
        assert about(elapsed["review-request"], timedelta(days=9)), elapsed
        assert about(elapsed["cross-sell"], timedelta(days=23)), elapsed
        assert len(await sent(shop, flow, p)) == 3
        assert len(await shop.journeys(flow, p)) == 1  # last year's order started none


def _outbox_empty(shop: Shop):
    async def delivered() -> bool:
        return not await shop.rows("SELECT 1 FROM event_outbox")

    return delivered


async def _entered(shop: Shop, journey_id: uuid.UUID) -> list[str]:
    rows = await shop.rows(
        "SELECT step_id FROM journey_steps WHERE journey_id = :j AND outcome = 'entered' "
        "ORDER BY id",
        j=journey_id,
    )
    return [r["step_id"] for r in rows]


async def test_a_replaced_worker_resumes_each_journey_without_sending_twice(shop: Shop):
    # `ignore`, and no cooldown: only the running journey keeps a second one out.
    flow = await shop.install("abandoned-cart", duplicate="ignore", cooldown_days=None)
    pid = await shop.customer("cart-kill")
    checkout = {"userId": "cart-kill", "event": "Started Checkout", "properties": cart("kill"),
                "messageId": "checkout-kill"}  # fmt: skip
    # No workflow cache: nothing is pinned to a worker that is gone (as after a kill -9).
    async with shop.worker(max_cached_workflows=0):
        await shop.batch([checkout])
        journey = await shop.at_step(flow, pid, "wait-4-hours")

    # While no worker runs, the storefront re-sends the checkout (same messageId), the outbox
    # delivers the event again (as after a crash between routing and its delete), and a second
    # checkout arrives while the customer is still in the flow.
    await shop.batch([checkout])
    await shop.rows(
        "INSERT INTO event_outbox (event_id, workspace_id) SELECT id, workspace_id FROM events "
        "WHERE message_id = 'checkout-kill' RETURNING event_id"
    )
    await shop.track("cart-kill", "Started Checkout", cart("kill-2"))
    await until(_outbox_empty(shop))
    assert len(await shop.rows("SELECT id FROM events WHERE metric = 'Started Checkout'")) == 2
    assert len(await shop.journeys(flow, pid)) == 1
    assert await sent(shop, flow, pid) == []

    # Each new worker replays the journey's history and goes on from the step it was in. (The
    # test server does not skip time while a workflow task waits for a worker.)
    for step, wait in (("wait-1-day", timedelta(hours=4)), ("wait-2-days", timedelta(days=1)),
                       (None, timedelta(days=2))):  # fmt: skip
        async with shop.worker(max_cached_workflows=0):
            await shop.skip(wait + timedelta(minutes=1))
            if step:
                await shop.at_step(flow, pid, step)
            else:
                assert (await shop.ended(flow, pid))["status"] == "completed"

    assert len(await shop.journeys(flow, pid)) == 1
    assert await sent(shop, flow, pid) == [
        ("reminder-email", "email"),
        ("reminder-sms", "sms"),
        ("discount-email", "email"),
    ]
    assert [m["channel"] for m in await shop.outbox(pid)] == ["email", "sms", "email"]
    assert await _entered(shop, journey["id"]) == [
        "wait-4-hours", "reminder-email", "wait-1-day", "reminder-sms", "wait-2-days",
        "discount-email",
    ]  # fmt: skip
