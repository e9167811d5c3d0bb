"""Signed tracking links and the email HTML as sent: links rewritten, UTM added, pixel present."""

from __future__ import annotations

import re
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest

from channels import links
from channels.links import BadToken, LinkKind
from core.settings import Settings
from models import Channel

SETTINGS = Settings(secret_key="k" * 48, public_url="https://t.example.com")
WS, MSG, PROFILE = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
IDS = {"settings": SETTINGS, "workspace_id": WS, "message_id": MSG, "profile_id": PROFILE}
UTM = {"utm_source": "waymark", "utm_medium": "email", "utm_campaign": "cart"}

DOCUMENT = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><style>a { color: #c00 }</style></head>
<body style="margin:0">
<!-- header -->
<p>Fish &amp; chips &mdash; <b>50%</b> off</p>
<a href="https://shop.example.com/cart?step=2&amp;lang=pl" class="btn">Back to cart</a>
<a href="https://shop.example.com/sale?utm_campaign=own">Sale</a>
<a href="mailto:help@shop.example.com">Help</a> <a href="tel:+48600100200">Call</a>
<a href="#top">Top</a> <a href="https://shop.example.com/raw" data-waymark-track="off">Raw</a>
<a href="{unsubscribe}">Unsubscribe</a>
</body>
</html>"""


def _unsubscribe() -> str:
    return links.unsubscribe_url(settings=SETTINGS, workspace_id=WS, profile_id=PROFILE)


def _tokens(html: str) -> list[str]:
    return re.findall(r'href="https://t\.example\.com/l/c/([^"]+)"', html)


def test_email_html_keeps_the_document_tracks_links_and_adds_utm_and_a_pixel():
    source = DOCUMENT.replace("{unsubscribe}", _unsubscribe())
    out = links.prepare_email_html(source, utm=UTM, **IDS)

    # Everything but the rewritten hrefs is kept byte for byte.
    untracked = re.sub(r'href="https://t\.example\.com/l/c/[^"]+"', "HREF", out)
    pixel = re.search(r'<img src="https://t\.example\.com/l/o/([^"]+)\.gif"[^>]*/>', out)
    assert pixel is not None and out.index(pixel.group(0)) < out.index("</body>")
    expected = source.replace('href="https://shop.example.com/cart?step=2&amp;lang=pl"', "HREF")
    expected = expected.replace('href="https://shop.example.com/sale?utm_campaign=own"', "HREF")
    assert untracked.replace(pixel.group(0), "") == expected

    destinations = [links.verify(SETTINGS, t, LinkKind.click).url for t in _tokens(out)]
    cart, sale = (parse_qs(urlsplit(url).query) for url in destinations)
    assert destinations[0].startswith("https://shop.example.com/cart?step=2&lang=pl&")
    assert cart["utm_campaign"] == ["cart"] and cart["utm_source"] == ["waymark"]
    assert sale["utm_campaign"] == ["own"] and sale["utm_medium"] == ["email"]
    assert 'href="mailto:help@shop.example.com"' in out and 'href="tel:+48600100200"' in out
    assert 'href="https://shop.example.com/raw"' in out
    assert f'href="{_unsubscribe()}"' in out  # Waymark's own links are not wrapped
    opened = links.verify(SETTINGS, pixel.group(1), LinkKind.open)
    assert (opened.workspace_id, opened.message_id, opened.profile_id) == (WS, MSG, PROFILE)


def test_preheader_and_a_missing_unsubscribe_link_are_added():
    out = links.prepare_email_html(
        "<p>No footer</p>", preheader="50% <off>", unsubscribe_url=_unsubscribe(), **IDS
    )
    assert out.startswith('<div style="display:none')
    assert "50% &lt;off&gt;" in out
    assert f'<a href="{_unsubscribe()}">Unsubscribe</a>' in out
    assert "/l/o/" in out  # a document without <body> gets the pixel at the end


def test_a_token_with_a_swapped_url_or_from_another_workspace_is_rejected():
    url = links.click_url("https://shop.example.com/a", channel=Channel.email, **IDS)
    token = url.rsplit("/", 1)[1]
    body, mac = token.split(".")
    payload = links._unb64(body)

    swapped = payload.replace(b"https://shop.example.com/a", b"https://evil.example.net/")
    other_ws = payload[:3] + uuid.uuid4().bytes + payload[19:]
    for forged in (swapped, other_ws):
        with pytest.raises(BadToken):
            links.verify(SETTINGS, f"{links._b64(forged)}.{mac}", LinkKind.click)
    with pytest.raises(BadToken):  # a click token is not an unsubscribe token
        links.verify(SETTINGS, token, LinkKind.unsubscribe)
    with pytest.raises(BadToken):  # another server's secret
        links.verify(Settings(secret_key="o" * 48), token, LinkKind.click)
    assert links.verify(SETTINGS, token, LinkKind.click).url == "https://shop.example.com/a"


def test_only_web_links_can_be_signed():
    with pytest.raises(ValueError):
        links.click_url("javascript:alert(1)", channel=Channel.sms, **IDS)


def test_sms_links_are_tracked_and_punctuation_stays_outside():
    body = "Your cart: https://shop.example.com/c?id=7. Reply STOP to opt out (https://x.example.com/y)"
    out = links.track_text_links(body, channel=Channel.sms, utm={"utm_medium": "sms"}, **IDS)
    tokens = re.findall(r"https://t\.example\.com/l/c/([A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+)", out)
    urls = [links.verify(SETTINGS, t, LinkKind.click) for t in tokens]
    assert [u.url for u in urls] == [
        "https://shop.example.com/c?id=7&utm_medium=sms",
        "https://x.example.com/y?utm_medium=sms",
    ]
    assert {u.channel for u in urls} == {Channel.sms}
    assert out.startswith("Your cart: https://t.example.com/l/c/") and ". Reply STOP" in out
    assert out.endswith(")")


def test_list_unsubscribe_headers_are_one_click():
    headers = links.list_unsubscribe_headers(
        settings=SETTINGS, workspace_id=WS, profile_id=PROFILE, message_id=MSG
    )
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = headers["List-Unsubscribe"].strip("<>")
    token = links.verify(SETTINGS, url.rsplit("/", 1)[1], LinkKind.unsubscribe)
    assert (token.channel, token.message_id) == (Channel.email, MSG)


def test_push_click_url_records_as_push():
    url = links.push_click_url("https://shop.example.com/p", **IDS)
    assert links.verify(SETTINGS, url.rsplit("/", 1)[1], LinkKind.click).channel == Channel.push


COPY, OTHER_COPY = b"c" * links.COPY_BYTES, b"d" * links.COPY_BYTES


def _copy_click(url: str, copy: bytes = COPY, ws: uuid.UUID = WS) -> tuple[str, str]:
    """(message token, link token) of a click in an email of `copy`."""
    signer = links.signer(SETTINGS, ws)
    message = signer.message_token(Channel.email, PROFILE, MSG, copy)
    return message, signer.link_token(copy, url)


def test_a_copy_click_is_its_message_s_token_and_its_link_s():
    """An email of a shared copy: one token per message (its opens, and its clicks with the
    link's token, the same for every message of the copy)."""
    message, link = _copy_click("https://shop.example.com/a")
    click = links.verify_click(SETTINGS, message, link)
    assert (click.kind, click.workspace_id, click.message_id, click.profile_id) == (
        LinkKind.click,
        WS,
        MSG,
        PROFILE,
    )
    assert click.url == "https://shop.example.com/a" and click.channel == Channel.email
    opened = links.verify(SETTINGS, message, LinkKind.open)
    assert (opened.kind, opened.message_id, opened.url) == (LinkKind.open, MSG, None)


def test_a_copy_click_rejects_forged_mixed_and_misused_tokens():
    message, link = _copy_click("https://shop.example.com/a")
    other_copy = _copy_click("https://shop.example.com/a", OTHER_COPY)[1]
    other_ws = _copy_click("https://shop.example.com/a", ws=uuid.uuid4())[1]
    body, mac = link.split(".")
    swapped = links._unb64(body).replace(b"https://shop.example.com/a", b"https://evil.example/")
    forged = f"{links._b64(swapped)}.{mac}"
    for bad_message, bad_link in (
        (message, other_copy),  # a link of another copy: not in that message
        (message, other_ws),  # another workspace's
        (message, forged),  # its URL swapped
        (link, message),  # the other way round
        (message, message),
    ):
        with pytest.raises(BadToken):
            links.verify_click(SETTINGS, bad_message, bad_link)
    with pytest.raises(BadToken):  # a message token is no click by itself
        links.verify(SETTINGS, message, LinkKind.click)
    for kind in links.PATHS:  # a link token alone is nothing
        with pytest.raises(BadToken):
            links.verify(SETTINGS, link, kind)


def test_a_message_token_is_its_message_s_unsubscribe_and_preferences_link():
    """An email of a shared copy signs one token per message: its unsubscribe and preference
    links are that token's, for that message's recipient and channel — where the token was
    signed to stand for them (the email holds them), and not otherwise."""
    signer = links.signer(SETTINGS, WS)
    unsubscribes = links.GRANTS[LinkKind.unsubscribe]
    only = signer.message_token(Channel.email, PROFILE, MSG, COPY, unsubscribes)
    assert links.verify(SETTINGS, only, LinkKind.unsubscribe).message_id == MSG
    assert links.verify(SETTINGS, only, LinkKind.open).channel == Channel.email
    with pytest.raises(BadToken):  # its email has no preference link
        links.verify(SETTINGS, only, LinkKind.preferences)
    bare, _ = _copy_click("https://shop.example.com/a")  # e.g. a transactional email's
    for kind in (LinkKind.unsubscribe, LinkKind.preferences):
        with pytest.raises(BadToken):
            links.verify(SETTINGS, bare, kind)
    message = signer.message_token(
        Channel.email, PROFILE, MSG, COPY, unsubscribes | links.GRANTS[LinkKind.preferences]
    )
    assert links.verify_click(SETTINGS, message, signer.link_token(COPY, "https://a.example/"))
    for kind in (LinkKind.unsubscribe, LinkKind.preferences):
        token = links.verify(SETTINGS, message, kind)
        assert (token.kind, token.channel, token.workspace_id) == (kind, Channel.email, WS)
        assert (token.profile_id, token.message_id, token.url) == (PROFILE, MSG, None)
        url = links.signer(SETTINGS, WS).message_url(kind, message)
        assert url == f"{SETTINGS.public_url.rstrip('/')}{links.PATHS[kind].format(message)}"
    body, mac = message.split(".")
    other = links._unb64(body)[:19] + uuid.uuid4().bytes + links._unb64(body)[35:]
    with pytest.raises(BadToken):  # another profile's, under this MAC
        links.verify(SETTINGS, f"{links._b64(other)}.{mac}", LinkKind.unsubscribe)


def test_link_tokens_never_hold_what_looks_like_a_substitution_tag():
    """Link tokens stand in content with SendGrid tags (`-wm<n>-`): a salt keeps `wm<digit>`
    out of every one, and each still verifies."""
    ws = uuid.UUID(int=1)  # fixed: about 1 link token in 3,000 needs a salt, this one's do
    signer = links.signer(SETTINGS, ws)
    message = signer.message_token(Channel.email, PROFILE, MSG, COPY)
    salted = 0
    for n in range(3000):
        url = f"https://shop.example.com/p/{n}"
        token = signer.link_token(COPY, url)
        assert re.search(r"wm\d", token) is None
        assert links.verify_click(SETTINGS, message, token).url == url
        salted += links._unb64(token.split(".")[0])[19 + links.COPY_BYTES] != 0
    assert salted > 0  # some needed another salt than the first
