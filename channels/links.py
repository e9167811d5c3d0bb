"""Tracking links: signed tokens, click/open/unsubscribe URLs, and outgoing email HTML.

A token is `base64url(payload) + "." + base64url(mac)`, where the MAC is HMAC-SHA256 (first 16
bytes) under a key derived from `settings.secret_key` and the workspace id in the payload. The
payload carries the kind (open, click, unsubscribe, preferences), the channel, the workspace,
message and profile ids, and for clicks the destination URL itself: a click redirects only to a
URL signed into that message, so there is no open redirect and no lookup. A token of one kind
is never accepted as another, and changing any byte (the URL, the workspace) breaks the MAC.

Emails of the same copy (one content for every recipient of a send, `channels.email_tags`)
carry one token per message instead of one per link: a `message` token (the ids and the
copy's id, 16 bytes) is the open pixel's, and a click is `/l/c/<message token>/<link token>`,
where the `link` token (workspace, copy id, URL) is signed once per send. A click verifies
only with both tokens of the same workspace and copy (`verify_click`): the URL was in that
message. The message token is also the message's open pixel and, where the email holds them,
its unsubscribe link (page and RFC 8058 one-click) and its preference page: a flag signed into
the token for each (`grants`), so it grants nothing the email does not hold already (a
transactional email without an unsubscribe link has a token that unsubscribes no one), and a
recipient costs one signature whatever the email prints. It is never a click by itself.

HTML is changed with the stdlib HTML parser: only the `href` of `<a>`/`<area>` tags is
rewritten, in place, and everything else in the document is kept byte for byte.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import html as htmllib
import re
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from core.settings import Settings
from models import Channel

VERSION = 1
MAC_BYTES = 16
_ZERO = uuid.UUID(int=0)
_CHANNELS = list(Channel)
_CHANNEL_INDEX = {c: i for i, c in enumerate(_CHANNELS)}
_ZLIB = 0x80  # flag in the channel byte: the URL is deflated
_CHANNEL_BITS = 0x1F  # the channel's index in the channel byte (the rest are flags)
COPY_BYTES = 16  # the id of an email's copy in message and link tokens
_TAG_LIKE = re.compile(r"wm\d").search  # what `channels.email_tags` keeps out of shared content


class LinkKind(enum.IntEnum):
    open = 1
    click = 2
    unsubscribe = 3
    preferences = 4
    # A message's one token for its opens, clicks, unsubscribe and preferences, with the id of
    # its copy (see "Emails of the same copy" above), and a link of that copy, the same for
    # every recipient.
    message = 5
    link = 6


# Flags in a message token's channel byte: the recipient links of its email it stands for too.
GRANTS = {LinkKind.unsubscribe: 0x40, LinkKind.preferences: 0x20}


PATHS = {
    LinkKind.open: "/l/o/{}.gif",
    LinkKind.click: "/l/c/{}",
    LinkKind.unsubscribe: "/l/u/{}",
    LinkKind.preferences: "/l/p/{}",
}


_PATH_PARTS = {kind: tuple(path.split("{}")) for kind, path in PATHS.items()}


class BadToken(ValueError):
    """Not a token this server signed (forged, altered, truncated, or of another kind)."""


@dataclass(frozen=True)
class LinkToken:
    kind: LinkKind
    channel: Channel
    workspace_id: uuid.UUID
    profile_id: uuid.UUID
    message_id: uuid.UUID | None = None
    url: str | None = None


def _key(settings: Settings, workspace_id: uuid.UUID) -> bytes:
    return _derived_key(settings.secret_key, workspace_id)


@lru_cache(maxsize=256)
def _derived_key(secret_key: str, workspace_id: uuid.UUID) -> bytes:
    material = b"waymark/links/v1/" + workspace_id.bytes
    return hmac.new(secret_key.encode(), material, hashlib.sha256).digest()


@lru_cache(maxsize=1024)
def _packed_url(url: str) -> tuple[bytes, bool]:
    """The URL as stored in a token: deflated when that is shorter (the same for every
    recipient of a message, so computed once)."""
    raw = url.encode()
    if len(raw) > 64 and len(packed := zlib.compress(raw, 9)) < len(raw):
        return packed, True
    return raw, False


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64(data: bytes) -> str:
    """URL-safe base64 without padding (`base64.urlsafe_b64encode`, minus two calls)."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(settings: Settings, token: LinkToken) -> str:
    return signer(settings, token.workspace_id).token(
        token.kind, token.channel, token.profile_id, token.message_id, token.url
    )


class Signer:
    """Signs the links of many messages of one workspace: the key is derived once, and each
    token costs one HMAC (`signer(settings, workspace_id)`)."""

    __slots__ = ("base", "_key", "_workspace")

    def __init__(self, key: bytes, workspace_id: uuid.UUID, public_url: str) -> None:
        self.base = public_url.rstrip("/")
        self._key = key
        self._workspace = workspace_id.bytes

    def token(
        self,
        kind: LinkKind,
        channel: Channel,
        profile_id: uuid.UUID | bytes,
        message_id: uuid.UUID | bytes | None = None,
        url: str | None = None,
    ) -> str:
        if kind == LinkKind.click and not _is_web(url):
            raise ValueError(f"only http(s) links are tracked, not {url!r}")
        flags = _CHANNEL_INDEX[channel]
        packed = b""
        if url:
            packed, deflated = _packed_url(url)
            if deflated:
                flags |= _ZLIB
        payload = b"".join(
            (
                bytes((VERSION, kind, flags)),
                self._workspace,
                _raw(profile_id),
                _raw(message_id or _ZERO),
                packed,
            )
        )
        return self._signed(payload)

    def _signed(self, payload: bytes) -> str:
        mac = hmac.digest(self._key, payload, "sha256")
        return f"{_b64(payload)}.{_b64(mac[:MAC_BYTES])}"

    def message_token(
        self,
        channel: Channel,
        profile_id: uuid.UUID | bytes,
        message_id: uuid.UUID | bytes,
        copy: bytes,
        grants: int = 0,
    ) -> str:
        """The token of one message of a copy: its opens, (with a link token of that copy) its
        clicks, and the recipient links `grants` flags (`GRANTS`: those the email holds).
        Laid out as a click token, with the copy's id where the URL would be."""
        payload = b"".join(
            (
                bytes((VERSION, LinkKind.message, _CHANNEL_INDEX[channel] | grants)),
                self._workspace,
                _raw(profile_id),
                _raw(message_id),
                copy,
            )
        )
        return self._signed(payload)

    def message_url(self, kind: LinkKind, message_token: str) -> str:
        """The open pixel, unsubscribe or preference page URL of a message token (or of the
        substitution tag standing for it)."""
        prefix, suffix = _PATH_PARTS[kind]
        return f"{self.base}{prefix}{message_token}{suffix}"

    def link_token(self, copy: bytes, url: str) -> str:
        """The token of a link of a copy, the same for every message of it: with a message
        token of the same copy, a click URL (`/l/c/<message token>/<link token>`). Free of
        `wm<digit>` (a salt byte is chosen for it), so it can stand in content that holds
        SendGrid substitution tags."""
        if not _is_web(url):
            raise ValueError(f"only http(s) links are tracked, not {url!r}")
        packed, deflated = _packed_url(url)
        head = bytes((VERSION, LinkKind.link, _ZLIB if deflated else 0)) + self._workspace + copy
        for salt in range(256):
            token = self._signed(head + bytes((salt,)) + packed)
            if not _TAG_LIKE(token):
                return token
        raise ValueError("no salt gives a token free of wm<digit>")  # 256 tries: never

    def url(
        self,
        kind: LinkKind,
        channel: Channel,
        profile_id: uuid.UUID | bytes,
        message_id: uuid.UUID | bytes | None = None,
        url: str | None = None,
    ) -> str:
        """The public URL of a signed token (`https://…/l/c/<token>`)."""
        prefix, suffix = _PATH_PARTS[kind]
        return (
            f"{self.base}{prefix}{self.token(kind, channel, profile_id, message_id, url)}{suffix}"
        )


def _raw(value: uuid.UUID | bytes) -> bytes:
    """A UUID's 16 bytes; callers signing many links of one message pass them once."""
    return value if value.__class__ is bytes else value.bytes  # type: ignore[union-attr]


def signer(settings: Settings, workspace_id: uuid.UUID) -> Signer:
    return _signer(settings.secret_key, settings.public_url, workspace_id)


@lru_cache(maxsize=256)
def _signer(secret_key: str, public_url: str, workspace_id: uuid.UUID) -> Signer:
    return Signer(_derived_key(secret_key, workspace_id), workspace_id, public_url)


def _verified(settings: Settings, token: str, kinds: tuple[LinkKind, ...], size: int) -> bytes:
    """The payload of a token of one of `kinds`, at least `size` bytes, signed by this server
    for the workspace it names; else BadToken."""
    try:
        body, mac = token.split(".")
        payload, given = _unb64(body), _unb64(mac)
    except (ValueError, TypeError):
        raise BadToken("malformed token") from None
    if len(payload) < size or payload[0] != VERSION or payload[1] not in kinds:
        raise BadToken("not a token of this kind")
    workspace_id = uuid.UUID(bytes=payload[3:19])
    expected = hmac.new(_key(settings, workspace_id), payload, hashlib.sha256).digest()
    if not hmac.compare_digest(given, expected[:MAC_BYTES]):
        raise BadToken("bad signature")
    return payload


def _url(flags: int, packed: bytes) -> str | None:
    return (zlib.decompress(packed) if flags & _ZLIB else packed).decode() or None


def _contents(kind: LinkKind, payload: bytes, url: str | None) -> LinkToken:
    message_id = uuid.UUID(bytes=payload[35:51])
    return LinkToken(
        kind=kind,
        channel=_CHANNELS[payload[2] & _CHANNEL_BITS],
        workspace_id=uuid.UUID(bytes=payload[3:19]),
        profile_id=uuid.UUID(bytes=payload[19:35]),
        message_id=None if message_id == _ZERO else message_id,
        url=url,
    )


_MESSAGE_TOKEN_KINDS = frozenset({LinkKind.open, *GRANTS})


def verify(settings: Settings, token: str, kind: LinkKind) -> LinkToken:
    """The token's contents, or BadToken. An open is also a message token's (an email of a
    shared copy), and so are an unsubscribe and a preference page where that token grants
    them (`GRANTS`); a click of one is two tokens (`verify_click`)."""
    kinds = (kind, LinkKind.message) if kind in _MESSAGE_TOKEN_KINDS else (kind,)
    payload = _verified(settings, token, kinds, 51)
    if payload[1] == LinkKind.message:
        if kind != LinkKind.open and not payload[2] & GRANTS[kind]:
            raise BadToken("not a token of this kind")  # its email does not hold that link
        return _contents(kind, payload[: 51 + COPY_BYTES], None)
    return _contents(kind, payload, _url(payload[2], payload[51:]))


def verify_click(settings: Settings, message_token: str, link_token: str) -> LinkToken:
    """A click of an email of a shared copy (`/l/c/<message token>/<link token>`): both
    signed, of the same workspace and the same copy (so the link was in that message); else
    BadToken."""
    message = _verified(settings, message_token, (LinkKind.message,), 51 + COPY_BYTES)
    link = _verified(settings, link_token, (LinkKind.link,), 19 + COPY_BYTES + 1)
    if link[3:19] != message[3:19] or link[19 : 19 + COPY_BYTES] != message[51:]:
        raise BadToken("the link is not of that message")
    return _contents(LinkKind.click, message, _url(link[2], link[20 + COPY_BYTES :]))


def link_url(settings: Settings, token: LinkToken) -> str:
    return signer(settings, token.workspace_id).url(
        token.kind, token.channel, token.profile_id, token.message_id, token.url
    )


def click_url(
    url: str,
    *,
    settings: Settings,
    workspace_id: uuid.UUID,
    message_id: uuid.UUID,
    profile_id: uuid.UUID,
    channel: Channel,
) -> str:
    token = LinkToken(LinkKind.click, channel, workspace_id, profile_id, message_id, url)
    return link_url(settings, token)


def open_pixel_url(
    *, settings: Settings, workspace_id: uuid.UUID, message_id: uuid.UUID, profile_id: uuid.UUID
) -> str:
    token = LinkToken(LinkKind.open, Channel.email, workspace_id, profile_id, message_id)
    return link_url(settings, token)


def unsubscribe_url(
    *,
    settings: Settings,
    workspace_id: uuid.UUID,
    profile_id: uuid.UUID,
    message_id: uuid.UUID | None = None,
    channel: Channel = Channel.email,
) -> str:
    """The page (GET) and one-click endpoint (POST) that unsubscribe from `channel`."""
    token = LinkToken(LinkKind.unsubscribe, channel, workspace_id, profile_id, message_id)
    return link_url(settings, token)


def preferences_url(
    *,
    settings: Settings,
    workspace_id: uuid.UUID,
    profile_id: uuid.UUID,
    message_id: uuid.UUID | None = None,
    channel: Channel = Channel.email,
) -> str:
    """The preference page: the profile's consent per channel, to change."""
    token = LinkToken(LinkKind.preferences, channel, workspace_id, profile_id, message_id)
    return link_url(settings, token)


def list_unsubscribe_headers(
    *,
    settings: Settings,
    workspace_id: uuid.UUID,
    profile_id: uuid.UUID,
    message_id: uuid.UUID | None = None,
) -> dict[str, str]:
    """RFC 8058 one-click unsubscribe headers for an email."""
    url = unsubscribe_url(
        settings=settings, workspace_id=workspace_id, profile_id=profile_id, message_id=message_id
    )
    return unsubscribe_headers(url)


def unsubscribe_headers(url: str) -> dict[str, str]:
    """RFC 8058 headers for an (email) unsubscribe URL already signed."""
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


# --- URLs --------------------------------------------------------------------------------------


def _is_web(url: str | None) -> bool:
    return bool(url) and _scheme(url) in ("http", "https")


@lru_cache(maxsize=1024)
def _scheme(url: str) -> str:
    return urlsplit(url).scheme.lower()


def add_utm(url: str, utm: dict[str, str] | None) -> str:
    """`url` with the UTM parameters it does not have yet (its own values win)."""
    if not utm:
        return url
    return _add_utm(url, tuple(utm.items()))


@lru_cache(maxsize=1024)
def _add_utm(url: str, utm: tuple[tuple[str, str], ...]) -> str:
    if not _is_web(url):
        return url
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    present = {k for k, _ in query}
    extra = [(k, v) for k, v in utm if v and k not in present]
    if not extra:
        return url
    joined = parts.query + ("&" if parts.query else "") + urlencode(extra)
    return urlunsplit(parts._replace(query=joined))


def _trackable(url: str, settings: Settings) -> bool:
    """http(s) links other than Waymark's own (unsubscribe, preferences, already tracked)."""
    return _is_web(url) and not url.startswith(settings.public_url.rstrip("/") + "/l/")


# --- email HTML --------------------------------------------------------------------------------

_PIXEL = (
    '<img src="{src}" width="1" height="1" alt="" '
    'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0" />'
)
_PREHEADER = (
    '<div style="display:none;max-height:0;overflow:hidden;mso-hide:all" aria-hidden="true">'
    "{text}</div>"
)
_UNSUBSCRIBE_FOOTER = '<p style="font-size:12px"><a href="{url}">Unsubscribe</a></p>'


class _Scanner(HTMLParser):
    """Finds, by source offset, the `<a>`/`<area>` start tags, `<body>` and `</body>`."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", source)]
        self.links: list[tuple[int, int, str, list[tuple[str, str | None]], bool]] = []
        self.body_open: int | None = None
        self.body_close: int | None = None
        self.hrefs: list[str] = []

    def _offset(self) -> int:
        line, column = self.getpos()
        return self._line_starts[line - 1] + column

    def _start(self, tag: str, attrs: list[tuple[str, str | None]], closed: bool) -> None:
        start = self._offset()
        end = start + len(self.get_starttag_text() or "")
        if tag == "body" and self.body_open is None:
            self.body_open = end
        if tag in ("a", "area"):
            self.links.append((start, end, tag, attrs, closed))
            self.hrefs.extend(v for k, v in attrs if k == "href" and v)

    def handle_starttag(self, tag, attrs):
        self._start(tag, attrs, False)

    def handle_startendtag(self, tag, attrs):
        self._start(tag, attrs, True)

    def handle_endtag(self, tag):
        if tag == "body":
            self.body_close = self._offset()


def _tag(tag: str, attrs: list[tuple[str, str | None]], closed: bool) -> str:
    rendered = "".join(
        f" {k}" if v is None else f' {k}="{htmllib.escape(v, quote=True)}"' for k, v in attrs
    )
    return f"<{tag}{rendered}{' /' if closed else ''}>"


def prepare_email_html(
    html: str,
    *,
    settings: Settings,
    workspace_id: uuid.UUID,
    message_id: uuid.UUID,
    profile_id: uuid.UUID,
    utm: dict[str, str] | None = None,
    preheader: str | None = None,
    unsubscribe_url: str | None = None,
    copy: bytes | None = None,
    grants: int = 0,
) -> str:
    """The email as sent: UTM on every http(s) link, each rewritten to a signed click URL, an open
    pixel before `</body>`, the preheader as hidden text after `<body>`, and an unsubscribe link
    in a footer when `unsubscribe_url` is given and the HTML links to it nowhere. `copy`: the
    email is of that shared copy, its clicks and open made of its message token (`copy_url`),
    signed with `grants`.

    Links opt out of tracking with `data-waymark-track="off"`; mailto:, tel:, anchors and
    Waymark's own links are left alone."""
    ids = {"workspace_id": workspace_id, "message_id": message_id, "profile_id": profile_id}
    utm_items = tuple((utm or {}).items())
    return _email_html(
        html,
        settings.public_url,
        utm_items,
        preheader,
        unsubscribe_url,
        lambda slot: _slot_value(slot, settings, ids, copy, grants),
    )


# What a signed URL of an email stands for: ("click", destination with UTM), ("open",), or
# ("url", an HTML-escaped URL put in as it is).
_Slot = tuple[str, ...]


def _slot_value(
    slot: _Slot, settings: Settings, ids: dict[str, uuid.UUID], copy: bytes | None, grants: int
) -> str:
    """The HTML-escaped text a slot stands for, for one message."""
    sign = signer(settings, ids["workspace_id"])
    return slot_value(slot, sign, ids["profile_id"], ids["message_id"], copy, grants)


def slot_value(
    slot: _Slot,
    signer: Signer,
    profile_id: uuid.UUID | bytes,
    message_id: uuid.UUID | bytes,
    copy: bytes | None = None,
    grants: int = 0,
) -> str:
    """The HTML-escaped text a slot of an email stands for, for one message (`copy`: of an
    email of that shared copy, `copy_url`, its message token signed with `grants`)."""
    if copy is not None and slot[0] != "url":
        token = signer.message_token(Channel.email, profile_id, message_id, copy, grants)
        return copy_url(signer, slot, token, copy)
    if slot[0] == "click":
        url = signer.url(LinkKind.click, Channel.email, profile_id, message_id, slot[1])
    elif slot[0] == "open":
        url = signer.url(LinkKind.open, Channel.email, profile_id, message_id)
    else:
        return slot[1]
    # Signed URLs hold only URL-safe characters; the destination is inside the token.
    return url if _HTML_SAFE(url) else htmllib.escape(url, quote=True)


_HTML_SAFE = re.compile(r"[^&<>\"']*\Z").match


def copy_url(signer: Signer, slot: _Slot, message_token: str, copy: bytes) -> str:
    """A signed URL of an email of a shared copy: the open pixel, or a click — the message's
    token (or the substitution tag standing for it) and the link's, the same for every
    message of the copy. HTML-safe when the public URL is."""
    if slot[0] == "open":
        return signer.message_url(LinkKind.open, message_token)
    return f"{signer.base}/l/c/{message_token}/{_link_token(signer, copy, slot[1])}"


@lru_cache(maxsize=4096)
def _link_token(signer: Signer, copy: bytes, url: str) -> str:
    return signer.link_token(copy, url)


def _email_html(
    html: str,
    public_url: str,
    utm: tuple[tuple[str, str], ...],
    preheader: str | None,
    unsubscribe_url: str | None,
    place: Callable[[_Slot], str],
    scan: _Scanner | None = None,
) -> str:
    """`prepare_email_html`, with each signed URL put in by `place(slot)`: the URL itself, or a
    substitution tag standing for it. `scan`: `html` already scanned."""
    if scan is None:
        scan = _Scanner(html)
        scan.feed(html)
        scan.close()
    own = public_url.rstrip("/") + "/l/"
    edits: list[tuple[int, int, str]] = []
    for start, end, tag, attrs, closed in scan.links:
        values = dict(attrs)
        href = (values.get("href") or "").strip()
        if not (_is_web(href) and not href.startswith(own)):
            continue
        if values.get("data-waymark-track") == "off":
            continue
        tracked = place(("click", _add_utm(href, utm) if utm else href))
        # `_tag` escapes attribute values; the placed text is escaped already: put in after.
        rendered = _tag(tag, [(k, _PLACED if k == "href" else v) for k, v in attrs], closed)
        edits.append((start, end, rendered.replace(_PLACED, tracked, 1)))
    tail = _PIXEL.format(src=place(("open",)))
    if unsubscribe_url and not any(h.strip() == unsubscribe_url for h in scan.hrefs):
        footer = place(("url", htmllib.escape(unsubscribe_url, quote=True)))
        tail = _UNSUBSCRIBE_FOOTER.format(url=footer) + tail
    close = scan.body_close if scan.body_close is not None else len(html)
    edits.append((close, close, tail))
    if preheader:
        at = scan.body_open or 0
        edits.append((at, at, _PREHEADER.format(text=htmllib.escape(preheader))))
    out, cursor = [], 0
    for start, end, text in sorted(edits, key=lambda e: (e[0], e[1])):
        out.append(html[cursor:start])
        out.append(text)
        cursor = end
    out.append(html[cursor:])
    return "".join(out)


_PLACED = "\x00wm-placed\x00"  # never in a parsed attribute value (NUL is not kept by `_tag`)

# --- plain text: SMS, WhatsApp, the email's text part, push --------------------------------

_URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
_TRAILING = ".,;:!?)]}'\""


def _split_trailing(url: str) -> tuple[str, str]:
    """A URL at the end of a sentence without its trailing punctuation (balanced `)` stay)."""
    end = len(url)
    while end and url[end - 1] in _TRAILING:
        if url[end - 1] == ")" and url[:end].count("(") >= url[:end].count(")"):
            break
        end -= 1
    return url[:end], url[end:]


def track_text_links(
    body: str,
    *,
    settings: Settings,
    workspace_id: uuid.UUID,
    message_id: uuid.UUID,
    profile_id: uuid.UUID,
    channel: Channel,
    utm: dict[str, str] | None = None,
) -> str:
    """Every http(s) URL in a text body replaced by a signed click URL (with UTM added)."""
    if "://" not in body:
        return body
    sign = signer(settings, workspace_id)

    def replace(match: re.Match[str]) -> str:
        url, rest = _split_trailing(match.group(0))
        if not _trackable(url, settings):
            return match.group(0)
        tracked = sign.url(LinkKind.click, channel, profile_id, message_id, add_utm(url, utm))
        return tracked + rest

    return _URL.sub(replace, body)


def push_click_url(
    url: str,
    *,
    settings: Settings,
    workspace_id: uuid.UUID,
    message_id: uuid.UUID,
    profile_id: uuid.UUID,
    utm: dict[str, str] | None = None,
) -> str:
    """The URL a push notification opens: a signed click URL (records "Clicked Push")."""
    if not _trackable(url, settings):
        return url
    return click_url(
        add_utm(url, utm),
        settings=settings,
        workspace_id=workspace_id,
        message_id=message_id,
        profile_id=profile_id,
        channel=Channel.push,
    )


# --- the email's text part, derived from its HTML ----------------------------------------------

_BLOCKS = {
    "p", "div", "br", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6", "li", "ul", "ol",
    "section", "article", "header", "footer", "blockquote", "hr",
}  # fmt: skip
_SKIP = {"script", "style", "head", "title"}


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skipping = 0
        self.href: str | None = None
        self.link_text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in _SKIP:
            self.skipping += 1
        elif tag in _BLOCKS:
            self.out.append("\n- " if tag == "li" else "\n")
        elif tag == "a":
            self.href, self.link_text = dict(attrs).get("href"), []

    def handle_endtag(self, tag):
        if tag in _SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCKS and tag != "li":
            self.out.append("\n")
        elif tag == "a" and self.href is not None:
            label = " ".join("".join(self.link_text).split())
            if _is_web(self.href) and self.href != label:
                self.out.append(f" ({self.href})" if label else self.href)
            self.href = None

    def handle_data(self, data):
        if self.skipping:
            return
        text = re.sub(r"\s+", " ", data)
        self.out.append(text)
        if self.href is not None:
            self.link_text.append(text)


@lru_cache(maxsize=256)  # a pure function; recipients of the same copy share the HTML
def html_to_text(html: str) -> str:
    """A readable plain-text version of an email: blocks on their own lines, links as
    "label (url)", no scripts, styles or head."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    lines = [line.strip() for line in "".join(parser.out).splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
