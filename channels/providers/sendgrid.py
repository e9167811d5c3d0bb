"""Email through SendGrid's v3 Mail Send API, with the official `sendgrid` SDK.

Emails with the same content (from, reply-to, HTML, text, shared headers, categories) share one
request of up to 1,000 personalizations; each personalization carries its recipient's
`custom_args` (Waymark's message id), per-recipient headers (List-Unsubscribe), its subject when
it differs from the request's, and `substitutions` (the recipient's tracking URLs and values,
standing in the content as tags `-wm0-`, ...: see `channels.email_tags`). Substitutions over
SendGrid's limit (10,000 bytes per personalization), or that the subject/reply-to would pick
up, are applied here instead and the email goes out with its own content.
The request's shared part is built with the SDK's `Mail` helper; personalizations are the
dicts `Personalization.get()` gives, built directly (a thousand helper objects, each parsing
its address with `email.utils`, cost more than the request itself).
Requests run concurrently, a few at a time (the SDK is synchronous: each runs in a thread).
429, 5xx and failures to connect are retried with backoff, then raise ProviderUnavailable; a
request that went out but got no answer (read timeout, connection dropped) raises
OutcomeUnknown and is never resent; any other 4xx fails the request's messages with SendGrid's
reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import defaultdict
from collections.abc import Sequence
from functools import lru_cache
from http.client import HTTPException
from urllib.error import URLError

import sendgrid
from python_http_client.exceptions import HTTPError
from sendgrid.helpers.mail import Category, Content, From, Header, Mail, ReplyTo

from channels.base import OutcomeUnknown, OutgoingEmail, SendResult, SendStatus
from channels.email_tags import substitute
from channels.providers.common import (
    CONCURRENCY,
    RETRY_DELAYS,
    Retryable,
    retry_after_seconds,
    run_bounded,
    with_retries,
)

MAX_PERSONALIZATIONS = 1000
MESSAGE_ID_ARG = "waymark_message_id"
# Headers that differ per recipient: they go into the personalization, not the shared content.
PER_RECIPIENT_HEADERS = frozenset({"list-unsubscribe"})
TIMEOUT_SECONDS = 30.0
MAX_SUBSTITUTION_BYTES = 10_000  # per personalization, keys and values (the Mail Send spec)
MAX_SUBSTITUTIONS = 10_000  # `maxProperties` of personalizations[].substitutions


def substitutions_fit(substitutions: dict[str, str]) -> bool:
    if len(substitutions) > MAX_SUBSTITUTIONS:
        return False
    chars = sum(map(len, substitutions)) + sum(map(len, substitutions.values()))
    if chars * 4 <= MAX_SUBSTITUTION_BYTES:  # UTF-8: at most 4 bytes a character
        return True
    size = sum(len(k.encode()) + len(v.encode()) for k, v in substitutions.items())
    return size <= MAX_SUBSTITUTION_BYTES


def expanded(email: OutgoingEmail) -> OutgoingEmail:
    """The email with its substitutions applied to the content (and none left)."""
    subs = email.substitutions
    return dataclasses.replace(
        email,
        html=substitute(email.html, subs),
        text=substitute(email.text, subs),
        substitutions={},
    )


def _sendable(email: OutgoingEmail) -> OutgoingEmail:
    subs = email.substitutions
    if not subs:
        return email
    # SendGrid substitutes in the subject and reply-to too: a tag there would be replaced.
    elsewhere = (email.subject or "") + (email.reply_to or "")
    if not substitutions_fit(subs) or any(tag in elsewhere for tag in subs):
        return expanded(email)
    return email


@lru_cache(maxsize=256)
def _per_recipient(name: str) -> bool:
    """A header that goes into the personalization (asked for every header of every email)."""
    return name.lower() in PER_RECIPIENT_HEADERS


def _split_headers(headers: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    shared, own = {}, {}
    for name, value in headers.items():
        (own if _per_recipient(name) else shared)[name] = value
    return shared, own


def reason_from(error: HTTPError) -> str:
    """SendGrid's own words: `errors[].message` (with the field), else the status line."""
    body = error.body.decode("utf-8", "replace") if isinstance(error.body, bytes) else error.body
    try:
        errors = json.loads(body or "{}").get("errors") or []
        parts = [
            f"{e.get('field')}: {e.get('message')}" if e.get("field") else str(e.get("message"))
            for e in errors
            if isinstance(e, dict)
        ]
    except (ValueError, AttributeError):
        parts = []
    detail = "; ".join(parts) or (body or "").strip()[:500] or str(error.reason)
    return f"SendGrid {error.status_code}: {detail}"


class MailSendBody:
    """A Mail Send request body: `get()` is the JSON the SDK posts."""

    def __init__(self, mail: Mail, personalizations: list[dict]) -> None:
        self.mail = mail
        self.personalizations = personalizations

    def get(self) -> dict:
        body = self.mail.get()
        body["personalizations"] = self.personalizations
        return body


def _personalization(email: OutgoingEmail, subject: str) -> dict:
    """`Personalization.get()` of one recipient: to, own headers, subject when it differs from
    the request's, substitutions, custom_args (with Waymark's message id)."""
    personalization: dict = {"to": [{"email": email.to}]}
    _, own = _split_headers(email.headers)
    if own:
        personalization["headers"] = own
    if email.subject != subject:
        personalization["subject"] = email.subject
    if email.substitutions:  # the email's own dicts: the body is only serialized
        personalization["substitutions"] = email.substitutions
    args = email.custom_args  # strings (`OutgoingEmail`)
    if MESSAGE_ID_ARG not in args:
        args = {**args, MESSAGE_ID_ARG: str(email.message_id)}
    personalization["custom_args"] = args
    return personalization


class SendGridEmailProvider:
    def __init__(
        self,
        api_key: str,
        base_url: str = "https://api.sendgrid.com",
        *,
        default_from_email: str | None = None,
        default_from_name: str | None = None,
        default_reply_to: str | None = None,
        concurrency: int = CONCURRENCY,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
    ) -> None:
        self.client = sendgrid.SendGridAPIClient(api_key, host=base_url.rstrip("/"))
        self.client.client.timeout = TIMEOUT_SECONDS
        self.default_from_email = default_from_email
        self.default_from_name = default_from_name
        self.default_reply_to = default_reply_to
        self.concurrency = concurrency
        self.retry_delays = retry_delays

    async def send_emails(self, emails: list[OutgoingEmail]) -> list[SendResult]:
        groups: dict[tuple, list[OutgoingEmail]] = defaultdict(list)
        for email in emails:
            email = _sendable(email)
            groups[self._content_key(email)].append(email)
        batches = [
            group[i : i + MAX_PERSONALIZATIONS]
            for group in groups.values()
            for i in range(0, len(group), MAX_PERSONALIZATIONS)
        ]
        results = await run_bounded(
            (lambda batch=batch: self._send_batch(batch) for batch in batches), self.concurrency
        )
        if len(batches) == 1:  # one request (a copy to 1,000 at most): its results, in order
            return results
        by_id = {r.message_id: r for r in results}
        return [by_id[email.message_id] for email in emails]

    def _content_key(self, email: OutgoingEmail) -> tuple:
        shared, _ = _split_headers(email.headers)
        return (
            email.from_email or self.default_from_email,
            email.from_name or self.default_from_name,
            email.reply_to or self.default_reply_to,
            email.html,
            email.text,
            tuple(sorted(shared.items())),
            tuple(email.categories),
        )

    def build(self, batch: Sequence[OutgoingEmail]) -> MailSendBody:
        """One Mail Send request for emails of the same content (subjects may differ)."""
        first = batch[0]
        from_email = first.from_email or self.default_from_email
        if not from_email:
            raise ValueError("no from address: set it on the message or the workspace")
        mail = Mail()
        mail.from_email = From(from_email, first.from_name or self.default_from_name)
        mail.subject = first.subject
        # text/plain must come before text/html (the SDK orders them so).
        if first.text:
            mail.add_content(Content("text/plain", first.text))
        if first.html:
            mail.add_content(Content("text/html", first.html))
        if reply_to := first.reply_to or self.default_reply_to:
            mail.reply_to = ReplyTo(reply_to)
        shared, _ = _split_headers(first.headers)
        for name, value in shared.items():
            mail.add_header(Header(name, value))
        for category in first.categories:
            mail.add_category(Category(category))
        return MailSendBody(mail, [_personalization(email, first.subject) for email in batch])

    async def _send_batch(self, batch: Sequence[OutgoingEmail]) -> list[SendResult]:
        body = self.build(batch).get()

        def post() -> str | None:
            try:
                response = self.client.client.mail.send.post(request_body=body)
            except HTTPError as error:
                if error.status_code == 429 or error.status_code >= 500:
                    headers = error.headers or {}
                    raise Retryable(
                        reason_from(error), retry_after_seconds(headers.get("Retry-After"))
                    ) from error
                raise
            except URLError as error:  # connecting or sending failed: nothing was accepted
                raise Retryable(f"SendGrid unreachable: {error}") from error
            except (TimeoutError, ConnectionError, HTTPException) as error:
                # Sent, but no answer: SendGrid may have accepted it. Never resent.
                raise OutcomeUnknown(f"no answer from SendGrid: {error!r}") from error
            return response.headers.get("X-Message-Id")

        try:
            provider_id = await with_retries(
                lambda: asyncio.to_thread(post), self.retry_delays, what="SendGrid"
            )
        except HTTPError as error:
            reason = reason_from(error)
            return [SendResult(e.message_id, SendStatus.failed, error=reason) for e in batch]
        return [SendResult(e.message_id, SendStatus.sent, provider_id) for e in batch]
