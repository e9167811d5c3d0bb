"""SendGrid adapter against a Prism mock of SendGrid's official v3 OpenAPI spec (requests that
break the real API are rejected), and against a local sink for retries."""

from __future__ import annotations

import json
import uuid

import pytest

from channels.base import OutgoingEmail, ProviderUnavailable, SendStatus
from channels.providers.common import PartlySent
from channels.providers.sendgrid import SendGridEmailProvider
from channels.providers.sendgrid import _sendable as sendable

API_KEY = "SG.test-key-0123456789abcdef"


def email(to: str = "ann@example.com", **kw) -> OutgoingEmail:
    message_id = uuid.uuid4()
    fields = {
        "message_id": message_id,
        "to": to,
        "from_email": "shop@example.com",
        "from_name": "The Shop",
        "reply_to": "help@example.com",
        "subject": "Your cart misses you",
        "html": "<p>Come back, <b>Ann</b></p>",
        "text": "Come back, Ann",
        "headers": {
            "List-Unsubscribe": f"<https://waymark.test/u/{message_id}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        "categories": ("abandoned-cart",),
        "custom_args": {"workspace_id": "ws-1"},
    }
    return OutgoingEmail(**(fields | kw))


class CountingProvider(SendGridEmailProvider):
    """Records each Mail Send body it builds (what goes over the wire)."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.bodies: list[dict] = []

    def build(self, batch):
        mail = super().build(batch)
        self.bodies.append(mail.get())
        return mail


async def test_valid_emails_pass_the_spec(mock_providers):
    provider = CountingProvider(API_KEY, mock_providers.sendgrid_url)
    before = mock_providers.validated("sendgrid")
    sent = [
        email("ann@example.com"),
        email("bob@example.com", subject="Bob, your cart misses you"),
        email("cy@example.com", html="<p>Other content</p>"),
    ]
    results = await provider.send_emails(sent)
    assert [r.status for r in results] == [SendStatus.sent] * 3
    assert [r.message_id for r in results] == [e.message_id for e in sent]
    # Different content: 2 requests; a different subject alone shares the request (the
    # personalization carries its own subject).
    assert mock_providers.validated("sendgrid") == before + 2
    body = next(b for b in provider.bodies if len(b["personalizations"]) == 2)
    assert body["subject"] == "Your cart misses you"
    personalization, bob = body["personalizations"]
    assert "subject" not in personalization
    assert bob["subject"] == "Bob, your cart misses you" and bob["to"] == [
        {"email": "bob@example.com"}
    ]
    assert personalization["to"] == [{"email": "ann@example.com"}]
    assert personalization["custom_args"] == {
        "workspace_id": "ws-1",
        "waymark_message_id": str(sent[0].message_id),
    }
    assert personalization["headers"] == {"List-Unsubscribe": sent[0].headers["List-Unsubscribe"]}
    assert body["headers"] == {"List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    assert body["from"] == {"email": "shop@example.com", "name": "The Shop"}
    assert body["reply_to"] == {"email": "help@example.com"}
    assert body["categories"] == ["abandoned-cart"]
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]


async def test_the_mock_rejects_what_the_real_api_would(mock_providers):
    """Proof the contract tests can fail: a request that breaks the spec is refused."""
    provider = SendGridEmailProvider(API_KEY, mock_providers.sendgrid_url)
    rejected = mock_providers.rejected("sendgrid")
    good = provider.build([email()]).get()
    broken = {k: v for k, v in good.items() if k != "from"}  # `from` is required
    with pytest.raises(Exception) as caught:
        provider.client.client.mail.send.post(request_body=broken)
    assert caught.value.status_code == 400
    assert mock_providers.rejected("sendgrid") == rejected + 1


async def test_same_content_is_batched_1000_personalizations_per_request(mock_providers):
    provider = CountingProvider(API_KEY, mock_providers.sendgrid_url)
    before = mock_providers.validated("sendgrid")
    emails = [email(f"c{i}@example.com") for i in range(2500)]
    results = await provider.send_emails(emails)
    assert all(r.status is SendStatus.sent for r in results)
    assert len(provider.bodies) == 3
    assert sorted(len(b["personalizations"]) for b in provider.bodies) == [500, 1000, 1000]
    assert mock_providers.validated("sendgrid") == before + 3
    ids = {
        p["custom_args"]["waymark_message_id"]
        for b in provider.bodies
        for p in b["personalizations"]
    }
    assert ids == {str(e.message_id) for e in emails}


async def test_workspace_defaults_fill_the_sender(mock_providers):
    provider = CountingProvider(
        API_KEY,
        mock_providers.sendgrid_url,
        default_from_email="news@shop.example",
        default_from_name="Shop News",
    )
    [result] = await provider.send_emails([email(from_email="", from_name=None, reply_to=None)])
    assert result.status is SendStatus.sent
    assert provider.bodies[0]["from"] == {"email": "news@shop.example", "name": "Shop News"}
    assert "reply_to" not in provider.bodies[0]


async def test_4xx_fails_the_messages_with_sendgrids_reason(sink):
    reason = {
        "errors": [
            {
                "field": "from.email",
                "message": "The from address does not match a verified Sender Identity",
            }
        ]
    }
    sink.answers = [(403, {"Content-Type": "application/json"}, json.dumps(reason).encode())]
    provider = SendGridEmailProvider(API_KEY, sink.url, retry_delays=(0.01, 0.01))
    results = await provider.send_emails([email("a@example.com"), email("b@example.com")])
    assert {r.status for r in results} == {SendStatus.failed}
    assert results[0].error == (
        "SendGrid 403: from.email: The from address does not match a verified Sender Identity"
    )
    assert len(sink.requests) == 1  # not retried


async def test_429_and_5xx_are_retried_then_accepted(sink):
    sink.answers = [
        (429, {"Retry-After": "0"}, b'{"errors":[{"message":"too many requests"}]}'),
        (503, {}, b""),
        (202, {"X-Message-Id": "sg-abc123"}, b""),
    ]
    provider = SendGridEmailProvider(API_KEY, sink.url, retry_delays=(0.01, 0.01, 0.01))
    [result] = await provider.send_emails([email()])
    assert result.status is SendStatus.sent
    assert result.provider_message_id == "sg-abc123"
    assert len(sink.requests) == 3
    method, path, headers, _ = sink.requests[-1]
    assert (method, path) == ("POST", "/v3/mail/send")
    assert headers["Authorization"] == f"Bearer {API_KEY}"


async def test_still_unavailable_after_retries_raises_for_temporal(sink):
    sink.default = (500, {}, b"")
    provider = SendGridEmailProvider(API_KEY, sink.url, retry_delays=(0.01, 0.01))
    with pytest.raises(ProviderUnavailable, match="SendGrid 500"):
        await provider.send_emails([email()])
    assert len(sink.requests) == 3


async def test_partial_outage_reports_what_was_sent(sink):
    """One request accepted, another still failing: the caller learns which went out."""
    sink.answers = [(202, {"X-Message-Id": "sg-1"}, b"")]
    sink.default = (503, {}, b"")
    provider = SendGridEmailProvider(API_KEY, sink.url, concurrency=1, retry_delays=(0.01,))
    first, second = email(), email(html="<p>Different content</p>")
    with pytest.raises(PartlySent) as caught:
        await provider.send_emails([first, second])
    assert [(r.message_id, r.status) for r in caught.value.results] == [
        (first.message_id, SendStatus.sent)
    ]


async def test_links_personalized_batch_shares_requests_through_substitutions(mock_providers):
    """Same copy, per-recipient tracking URLs: the URLs go as per-personalization
    substitutions, so 1,500 recipients take 2 requests (1,000 + 500), each valid."""
    from channels import email_tags, links
    from core.settings import Settings

    settings = Settings(secret_key="k" * 48, public_url="https://wm.example.com")
    workspace_id = uuid.uuid4()
    html = (
        "<html><body><p>Our summer sale is on.</p>"
        '<a href="https://shop.example.com/sale">Sale</a> '
        '<a href="https://shop.example.com/new">New in</a></body></html>'
    )
    emails, real = [], {}
    for i in range(1500):
        message_id, profile_id = uuid.uuid4(), uuid.uuid4()
        ids = {"settings": settings, "workspace_id": workspace_id, "profile_id": profile_id}
        unsubscribe = links.unsubscribe_url(**ids, message_id=message_id)
        tagged = email_tags.prepare_email_tagged(
            html,
            "Our summer sale is on. Unsubscribe: " + unsubscribe,
            **ids,
            message_id=message_id,
            utm={"utm_source": "waymark"},
            unsubscribe_url=unsubscribe,
            personal_urls=(unsubscribe,),
        )
        assert tagged.substitutions and "/l/c/" not in tagged.html
        emails.append(
            email(
                f"c{i}@example.com",
                message_id=message_id,
                html=tagged.html,
                text=tagged.text,
                headers=links.unsubscribe_headers(unsubscribe),
                substitutions=tagged.substitutions,
            )
        )
        real[str(message_id)] = (tagged.real_html, tagged.real_text)
    provider = CountingProvider(API_KEY, mock_providers.sendgrid_url)
    before = mock_providers.validated("sendgrid")

    results = await provider.send_emails(emails)

    assert all(r.status is SendStatus.sent for r in results)
    assert sorted(len(b["personalizations"]) for b in provider.bodies) == [500, 1000]
    assert mock_providers.validated("sendgrid") == before + 2
    by_id = {str(e.message_id): e for e in emails}
    seen = set()
    for body in provider.bodies:
        content = {c["type"]: c["value"] for c in body["content"]}
        for personalization in body["personalizations"]:
            message_id = personalization["custom_args"]["waymark_message_id"]
            sent = by_id[message_id]
            assert personalization["substitutions"] == sent.substitutions
            assert personalization["headers"] == {
                "List-Unsubscribe": sent.headers["List-Unsubscribe"]
            }
            # What SendGrid delivers, substitutions applied: the recipient's own content.
            assert (
                email_tags.substitute(content["text/html"], personalization["substitutions"]),
                email_tags.substitute(content["text/plain"], personalization["substitutions"]),
            ) == real[message_id]
            seen.add(message_id)
    assert seen == set(by_id)


def test_substitutions_over_the_limit_go_out_as_plain_content():
    """Over 10,000 bytes of substitutions (or a tag in the subject): applied before sending."""
    provider = SendGridEmailProvider(API_KEY, "http://127.0.0.1:9")
    subs = {f"-wm{i}-": "https://wm.example.com/l/c/" + "x" * 200 for i in range(60)}
    html = "".join(f'<a href="-wm{i}-">{i}</a>' for i in range(60))
    big = email(html=html, text="-wm0-", substitutions=subs)
    body = provider.build([sendable(big)]).get()
    assert "substitutions" not in body["personalizations"][0]
    html_sent = body["content"][1]["value"]
    assert "-wm1-" not in html_sent and subs["-wm1-"] in html_sent
    small = email(
        html="<a href='-wm0-'>x</a>", text="", substitutions={"-wm0-": "https://a.example"}
    )
    assert sendable(small) is small
    tagged_subject = email(subject="Deal -wm0-", html="-wm0-", substitutions={"-wm0-": "v"})
    assert sendable(tagged_subject).substitutions == {}
