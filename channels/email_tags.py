"""Email content shared by many recipients: what differs per recipient as SendGrid substitutions.

SendGrid sends one request to up to 1,000 recipients of the same content, each with its own
`substitutions` (tag → value). What differs per recipient goes into the content as a tag
`-wm0-`, `-wm1-`, ... and its value into that recipient's substitutions:

- the signed URLs of the email (clicks, open pixel, unsubscribe/preferences), always — for an
  email of the same copy (`SharedEmail`), one message token, which every click URL, the open
  pixel and the unsubscribe and preference links hold;
- the recipient's own values the template printed (`personal_values`: first name, ...), where
  tagging them provably changes nothing: every occurrence is in the HTML's text (not in a tag,
  an attribute, a comment or a character reference) and the value is plain (no markup
  characters, single spaces). Recipients whose emails differ only in their names then share a
  request too.

Substituted, the tagged content is exactly the content of the message prepared on its own
(`real_html`, `real_text`, which the ledger keeps). When that cannot be guaranteed, the email
goes out with its own content (no substitutions) — never with a wrong one.
"""

from __future__ import annotations

import hashlib
import html as htmllib
import json
import re
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from channels import links
from core.settings import Settings
from models import Channel

TAG_PREFIX = "-wm"
_TAG = re.compile(r"-wm\d+-")
# A tag is `-wm<n>-`. Content with no `wm<digit>` of its own can hold tags safely: every
# `wm<digit>` in the tagged content is then inside a tag, so no tag matches anywhere else
# (not even across a tag's edge).
_UNSAFE = re.compile(r"wm\d")
# A value that can stand as a tag: no markup characters (it is the same escaped), no
# whitespace but single inner spaces (text extraction collapses whitespace the same way).
_PLAIN = re.compile(r"[^\s<>&\"']+(?: [^\s<>&\"']+)*").fullmatch
_TAG_CHARS = frozenset("-wm0123456789")  # a value of only these could match inside a tag
MAX_VALUE = 200


def _tag_name(n: int) -> str:
    return f"{TAG_PREFIX}{n}-"


@dataclass(frozen=True)
class TaggedEmail:
    """An email's HTML and text with per-recipient parts as tags; `substitutions` maps each tag
    to its value (empty when the content could not hold tags: then html/text are the real
    content). `real_html`/`real_text` are the content as the recipient gets it."""

    html: str
    text: str
    substitutions: dict[str, str] = field(default_factory=dict)
    real_html: str = ""
    real_text: str = ""


def substitute(content: str, substitutions: dict[str, str]) -> str:
    """`content` with every tag replaced by its value, in one pass (values are not rescanned)."""
    if not substitutions or not content:
        return content
    pieces = _pieces(content)  # literal, tag, literal, tag, ..., literal
    out = list(pieces)
    for i in range(1, len(pieces), 2):
        out[i] = substitutions.get(pieces[i], pieces[i])
    return "".join(out)


@lru_cache(maxsize=512)
def _pieces(content: str) -> tuple[str, ...]:
    """`content` split around its tags (shared content is split once for all recipients)."""
    return tuple(_TAG_SPLIT.split(content))


_TAG_SPLIT = re.compile(r"(-wm\d+-)")


def taggable(value: str) -> bool:
    """A recipient's value that may stand in the content as a tag (see the module doc)."""
    return (
        2 <= len(value) <= MAX_VALUE
        and _PLAIN(value) is not None
        and not _TAG_CHARS.issuperset(value)
    )


def _in_text_only(html: str, value: str) -> bool:
    """No occurrence of `value` starts a tag name (`<value`) or ends a character reference
    (`&am` + `p...`). Occurrences inside tags, attributes or comments are caught after the
    tagged HTML is parsed (`_Scan.in_data`)."""
    at = html.find(value)
    while at != -1:
        before = at
        while before and (html[before - 1].isalnum() or html[before - 1] in "#_"):
            before -= 1
        if before and html[before - 1] in "<&":
            return False
        at = html.find(value, at + len(value))
    return True


@lru_cache(maxsize=512)
def _unsafe(content: str) -> bool:
    return _UNSAFE.search(content) is not None


class _Scan(links._Scanner):
    """The email scanner, also counting the tags found in the document's text."""

    def __init__(self, source: str) -> None:
        super().__init__(source)
        self.in_data: Counter[str] = Counter()

    def handle_data(self, data: str) -> None:
        if TAG_PREFIX in data:
            self.in_data.update(_TAG.findall(data))


@lru_cache(maxsize=256)
def _tagged_structure(
    html: str,
    public_url: str,
    utm: tuple[tuple[str, str], ...],
    preheader: str | None,
    unsubscribe: str | None,
    first: int,
    copy: tuple[links.Signer, bytes] | None = None,
) -> tuple[str, tuple[tuple[str, links._Slot], ...], Counter[str]]:
    """The email HTML with tags from `first` on for its signed URLs, each tag's slot, and the
    tags the HTML's text holds: the same for every recipient of the same tagged HTML, so the
    HTML is parsed once. `copy` (a shared copy: its signer and id): the clicks and the open
    pixel are the copy's URLs with tag `first` for the message token (`links.copy_url`), and
    no slot."""
    slots: dict[links._Slot, str] = {}

    def place(slot: links._Slot) -> str:
        if slot[0] == "url":  # tagged already (the footer's unsubscribe URL)
            return slot[1]
        if copy is not None:
            return links.copy_url(copy[0], slot, _tag_name(first), copy[1])
        if slot not in slots:
            slots[slot] = _tag_name(first + len(slots))
        return slots[slot]

    scan = _Scan(html)
    scan.feed(html)
    scan.close()
    tagged = links._email_html(html, public_url, utm, preheader, unsubscribe, place, scan)
    return tagged, tuple((tag, slot) for slot, tag in slots.items()), scan.in_data


@dataclass(frozen=True)
class SharedEmail:
    """The content of an email that is the same for every recipient of a send (a template that
    reads nothing of the recipient but, maybe, its own links), tagged once: each recipient's own
    value is their message token (in every click URL, the open pixel and the unsubscribe and
    preference links, `links.copy_url`, `links.Signer.message_url`; signed to stand for the
    links the content holds, `grants`), which `values` makes.
    `links.prepare_email_html(..., copy=)` with those links gives the same content,
    substituted, recipient by recipient."""

    html: str
    text: str
    # Content stored before the message token held the recipient's links: a tag per link
    # (`links.LinkKind.unsubscribe`, `.preferences`) the content holds. Empty since.
    links: tuple[tuple[str, links.LinkKind], ...] = ()
    # Content stored before shared copies had a message token: a tag per signed URL (click
    # links, the open pixel). Empty since.
    slots: tuple[tuple[str, links._Slot], ...] = ()
    # The tag of the message token, in every click URL and the open pixel (`links.copy_url`),
    # and the copy's id it carries.
    message_tag: str | None = None
    copy: bytes = b""
    # The recipient links the content holds, which the message token stands for too
    # (`links.GRANTS` flags; none in content stored before).
    grants: int = 0

    def values(
        self, signer: links.Signer, profile_id: uuid.UUID | bytes, message_id: uuid.UUID | bytes
    ) -> dict[str, str]:
        """One recipient's substitutions: the message token, however many links the email has
        (and a signed URL per tag of content stored before). Check them with `looks_tagged`
        before handing them to SendGrid."""
        subs: dict[str, str] = {}
        for tag, kind in self.links:
            subs[tag] = signer.url(kind, Channel.email, profile_id, message_id)
        if self.message_tag is not None:
            token = signer.message_token(
                Channel.email, profile_id, message_id, self.copy, self.grants
            )
            subs[self.message_tag] = token
        for name, slot in self.slots:
            subs[name] = links.slot_value(slot, signer, profile_id, message_id)
        return subs


def looks_tagged(substitutions: dict[str, str]) -> bool:
    """A value that looks like a tag: SendGrid might replace it in turn, so such an email goes
    out with its content substituted (the substring test first: it is C, the regex runs only
    where it can match)."""
    return any(TAG_PREFIX in v and _TAG.search(v) for v in substitutions.values())


def shared_email(
    html: str,
    text: str,
    *,
    signer: links.Signer,
    public_url: str,
    utm: dict[str, str] | None,
    preheader: str | None,
    unsubscribe: bool,
    derive_text: bool,
    stand_ins: dict[links.LinkKind, str] | None = None,
) -> SharedEmail | None:
    """An email the same for every recipient, tagged once (`SharedEmail`); None when its content
    cannot hold tags (it has a `wm<digit>` of its own, a link in the preheader).

    `stand_ins`: the URL each recipient link the template prints was rendered with, by kind
    (a URL of Waymark's own, `<public_url>/l/...`, so that it is never click-tracked); each
    becomes that link's URL of the message token's tag (`links.Signer.message_url`).
    `unsubscribe`: the footer's unsubscribe link is due (not for transactional email; the
    footer is left out when the HTML links to the unsubscribe URL)."""
    stand_ins = stand_ins or {}
    if derive_text:
        text = links.html_to_text(html)
    if (
        not links._HTML_SAFE(public_url)
        or _unsafe(public_url)  # it stands in the content, in every click URL
        or any(u in (preheader or "") for u in stand_ins.values())
    ):
        return None
    probe_html, probe_text = html, text
    for url in stand_ins.values():
        probe_html, probe_text = probe_html.replace(url, ""), probe_text.replace(url, "")
    if _unsafe(probe_html) or _unsafe(probe_text) or _unsafe(preheader or ""):
        return None
    tag = _tag_name(0)  # the message token's
    held = {links.LinkKind.unsubscribe} if unsubscribe else set()
    for kind, url in stand_ins.items():
        if url in html or url in text:
            held.add(kind)
            own = signer.message_url(kind, tag)
            html, text = html.replace(url, own), text.replace(url, own)
    footer = signer.message_url(links.LinkKind.unsubscribe, tag) if unsubscribe else None
    grants = sum(links.GRANTS[kind] for kind in held)
    utm_items = tuple((utm or {}).items())
    # The copy's id: what its links and open pixel are signed for.
    copy = hashlib.sha256(
        json.dumps([html, text, public_url, utm_items, preheader, footer, grants]).encode()
    ).digest()[: links.COPY_BYTES]
    tagged_html, _, _ = _tagged_structure(
        html, public_url, utm_items, preheader, footer, 0, (signer, copy)
    )
    return SharedEmail(tagged_html, text, message_tag=tag, copy=copy, grants=grants)


def prepare_email_tagged(
    html: str,
    text: str,
    *,
    settings: Settings,
    workspace_id: uuid.UUID,
    message_id: uuid.UUID,
    profile_id: uuid.UUID,
    utm: dict[str, str] | None = None,
    preheader: str | None = None,
    unsubscribe_url: str | None = None,
    personal_urls: Sequence[str] = (),
    personal_values: Sequence[str] = (),
    derive_text: bool = False,
) -> TaggedEmail:
    """`links.prepare_email_html` for a batch send: the same email, but with each signed URL
    (click links, the open pixel, the unsubscribe footer), each of `personal_urls` (the
    rendered unsubscribe/preferences URLs, wherever the template put them, HTML and text) and
    each of `personal_values` that can be (see the module doc) replaced by a tag `-wm0-`,
    `-wm1-`, ..., and the tag → value map. Substituted, the same content as
    `prepare_email_html` gives (`real_html`, `real_text`).

    `derive_text`: the text part is derived from the HTML (`links.html_to_text`) — from the
    HTML with the values tagged, so recipients of the same copy share that work too."""
    signer = links.signer(settings, workspace_id)
    utm_items = tuple((utm or {}).items())
    personal = list(dict.fromkeys(u for u in (unsubscribe_url, *personal_urls) if u))
    values = [
        v
        for v in dict.fromkeys(personal_values)
        if v
        and taggable(v)
        and (v in html or v in text or (preheader and v in preheader))
        and _in_text_only(html, v)
    ]
    values.sort(key=len, reverse=True)  # "Ada Lovelace" before "Ada"
    # The content without what becomes tags: it must hold no `wm<digit>` of its own.
    probe_html, probe_text, probe_pre = html, text, preheader or ""
    for url in personal:
        escaped = htmllib.escape(url, quote=True)
        if url in probe_html or escaped in probe_html:
            probe_html = probe_html.replace(escaped, "").replace(url, "")
        if url in probe_text:
            probe_text = probe_text.replace(url, "")
    for value in values:
        probe_html = probe_html.replace(value, "")
        probe_text = probe_text.replace(value, "")
        probe_pre = probe_pre.replace(value, "")
    if _unsafe(probe_html) or _unsafe(probe_text) or _unsafe(probe_pre):
        real = _email_html_real(
            html, settings, signer, utm_items, preheader, unsubscribe_url, profile_id, message_id
        )
        if derive_text:
            text = links.html_to_text(html)
        return TaggedEmail(real, text, {}, real, text)

    subs: dict[str, str] = {}
    tag_of: dict[str, str] = {}

    def tag_for(value: str) -> str:
        if value not in tag_of:
            tag_of[value] = _tag_name(len(subs))
            subs[tag_of[value]] = value
        return tag_of[value]

    # The recipient's values first, then their URLs, in a fixed order: recipients of the same
    # copy get the same tagged HTML (parsed once, below).
    tagged_pre = preheader
    source_html, source_text = html, text
    for value in values:
        tag = tag_for(value)
        html = html.replace(value, tag)
        if not derive_text:
            text = text.replace(value, tag)
        if tagged_pre:
            tagged_pre = tagged_pre.replace(value, tag)
    if derive_text:
        text = links.html_to_text(html)
    for url in personal:
        escaped = htmllib.escape(url, quote=True)
        if escaped in html:
            html = html.replace(escaped, tag_for(escaped))
        if url != escaped and url in html:
            html = html.replace(url, tag_for(url))
        if url in text:
            text = text.replace(url, tag_for(url))
    unsubscribe_tag = None
    if unsubscribe_url:
        unsubscribe_tag = tag_for(htmllib.escape(unsubscribe_url, quote=True))
    tagged_html, slots, in_data = _tagged_structure(
        html, settings.public_url, utm_items, tagged_pre, unsubscribe_tag, len(subs)
    )
    if values and any(html.count(tag_of[v]) != in_data[tag_of[v]] for v in values):
        # A value inside a tag, an attribute or a comment: not provably the same; only the
        # URLs as tags.
        return prepare_email_tagged(
            source_html,
            "" if derive_text else source_text,
            settings=settings,
            workspace_id=workspace_id,
            message_id=message_id,
            profile_id=profile_id,
            utm=utm,
            preheader=preheader,
            unsubscribe_url=unsubscribe_url,
            personal_urls=personal_urls,
            derive_text=derive_text,
        )
    profile_raw, message_raw = profile_id.bytes, message_id.bytes
    for name, slot in slots:
        subs[name] = links.slot_value(slot, signer, profile_raw, message_raw)
    real_html = substitute(tagged_html, subs)
    real_text = substitute(text, subs)
    if looks_tagged(subs):
        return TaggedEmail(real_html, real_text, {}, real_html, real_text)
    return TaggedEmail(tagged_html, text, subs, real_html, real_text)


def _email_html_real(
    html: str,
    settings: Settings,
    signer: links.Signer,
    utm: tuple[tuple[str, str], ...],
    preheader: str | None,
    unsubscribe_url: str | None,
    profile_id: uuid.UUID,
    message_id: uuid.UUID,
) -> str:
    return links._email_html(
        html,
        settings.public_url,
        utm,
        preheader,
        unsubscribe_url,
        lambda slot: links.slot_value(slot, signer, profile_id, message_id),
    )
