"""Rendering: personalization with cart items, locale-aware money, strict errors, the sandbox."""

from __future__ import annotations

import pytest

from channels.render import (
    SAMPLE_EVENT,
    SAMPLE_PROFILE,
    RenderContext,
    TemplateError,
    TemplateParts,
    render,
    render_sample,
)
from models import Channel

CART_HTML = """<html><body>
<p>Hi {{ profile.first_name }}, you left these behind:</p>
<table>
{% for item in event.items %}
  <tr><td><img src="{{ item.image_url }}" alt="{{ item.name }}"></td>
      <td>{{ item.name }} × {{ item.quantity }}</td><td>{{ item.price|money }}</td></tr>
{% endfor %}
</table>
<p>Total: {{ event.value|money }}</p>
<a href="{{ event.checkout_url }}">Finish checkout</a>
</body></html>"""

CART = TemplateParts(
    channel=Channel.email,
    subject="{{ profile.first_name }}, your cart is waiting",
    html=CART_HTML,
)


def _profile(**changes):
    return {**SAMPLE_PROFILE, **changes}


def test_abandoned_cart_renders_items_with_prices_in_the_profiles_locale():
    us = render_sample(CART, profile=_profile(locale="en-US"))
    pl = render_sample(
        CART,
        profile=_profile(locale="pl-PL", first_name="Łucja"),
        event=SAMPLE_EVENT | {"currency": "PLN"},
    )

    assert us.subject == "Ada, your cart is waiting"
    assert "Organic cotton T-shirt × 2" in us.html and "Stoneware mug × 1" in us.html
    assert 'src="https://shop.example.com/images/organic-tee.jpg"' in us.html
    assert "$24.50" in us.html and "Total: $67.00" in us.html
    assert pl.subject == "Łucja, your cart is waiting"
    assert "24,50\xa0zł" in pl.html and "Total: 67,00\xa0zł" in pl.html
    # The text part is derived from the HTML when the template has none.
    assert "Organic cotton T-shirt × 2" in us.text and "<td>" not in us.text
    assert "Finish checkout (https://shop.example.com/checkout/recover/abc123)" in us.text


def test_money_falls_back_to_the_workspace_locale_then_english():
    t = TemplateParts(channel=Channel.sms, body="{{ 1234.5|money('EUR') }} {{ 1234.5|number }}")
    de = render(t, RenderContext(profile={"locale": None}, workspace={"locale": "de-DE"}))
    en = render(t, RenderContext(profile={"locale": "xx-nonsense"}))
    assert de.body == "1.234,50\xa0€ 1.234,5"
    assert en.body == "€1,234.50 1,234.5"


def test_a_missing_name_is_an_error_with_part_line_and_name():
    broken = TemplateParts(
        channel=Channel.email,
        subject="Fine",
        html=CART_HTML.replace("{{ item.name }} ×", "{{ item.nmae }} ×"),
    )
    with pytest.raises(TemplateError) as caught:
        render_sample(broken)
    err = caught.value
    assert (err.part, err.line, err.name) == ("html", 6, "nmae")
    assert str(err) == "html line 6: 'event.items[0]' has no attribute 'nmae'"

    with pytest.raises(TemplateError) as caught:
        render_sample(TemplateParts(channel=Channel.sms, body="Hi\n{{ cart.total }}"))
    assert (caught.value.part, caught.value.line, caught.value.name) == ("body", 2, "cart")
    assert "'cart' is undefined" in str(caught.value)


def test_nothing_is_half_rendered_when_one_part_fails():
    template = TemplateParts(
        channel=Channel.email,
        subject="Hi {{ profile.first_name }}",
        html="<p>ok</p>",
        text="{{ profile.nickname }}",
    )
    with pytest.raises(TemplateError) as caught:
        render_sample(template)
    assert caught.value.part == "text"
    # The only outcome is the error: there is no partially filled result to send.


def test_optional_data_is_written_with_is_defined_or_default():
    t = TemplateParts(
        channel=Channel.sms,
        body="{% if event.coupon is defined %}{{ event.coupon }}{% else %}none{% endif %} "
        "{{ profile.nickname | default('friend') }}",
    )
    assert render_sample(t).body == "none friend"


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ event.items.__init__.__globals__ }}",
        "{{ 'x' * 10000000 }}",
        "{% for i in range(10**9) %}{% endfor %}",
    ],
)
def test_the_sandbox_blocks_unsafe_access(source):
    with pytest.raises(TemplateError) as caught:
        render_sample(TemplateParts(channel=Channel.sms, body=source))
    assert caught.value.part == "body" and caught.value.line == 1


def test_profile_data_is_escaped_in_html_but_not_in_text_or_sms():
    evil = _profile(first_name='<script>alert("x")</script>')
    email = TemplateParts(
        channel=Channel.email,
        subject="Hi {{ profile.first_name }}",
        html="<p>Hi {{ profile.first_name }}</p>",
        text="Hi {{ profile.first_name }}",
    )
    sms = TemplateParts(channel=Channel.sms, body="Hi {{ profile.first_name }} & co")

    rendered = render_sample(email, profile=evil)
    assert rendered.html == "<p>Hi &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;</p>"
    assert rendered.text == 'Hi <script>alert("x")</script>'
    assert rendered.subject == 'Hi <script>alert("x")</script>'
    assert render_sample(sms, profile=evil).body == 'Hi <script>alert("x")</script> & co'


def test_syntax_errors_name_the_line():
    with pytest.raises(TemplateError) as caught:
        render_sample(TemplateParts(channel=Channel.push, push_title="ok", body="a\nb\n{% if %}"))
    assert (caught.value.part, caught.value.line) == ("body", 3)


def test_dates_in_the_profiles_timezone_and_locale():
    t = TemplateParts(channel=Channel.sms, body="{{ event.occurred_at|date('long') }}")
    pl = render_sample(t, profile=_profile(locale="pl-PL"))
    assert pl.body == "5 stycznia 2026"
