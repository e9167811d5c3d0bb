"""The cursor helpers of api/pagination.py: round trips, and 400 `invalid_cursor` for the rest."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from api.errors import ApiError
from api.pagination import decode_cursor, encode_cursor, id_cursor, time_cursor


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _json(value: object) -> str:
    return _b64(json.dumps(value).encode())


def _rejected(call, *args) -> None:
    with pytest.raises(ApiError) as caught:
        call(*args)
    assert (caught.value.status, caught.value.code) == (400, "invalid_cursor")
    assert caught.value.message == "cursor is not one this API returned"


@pytest.mark.parametrize(
    "parts",
    [
        ["only"],
        ["email", "a@example.com"],
        ["sms", "+48601234567"],
        ["with|pipe", 'with "quotes"', "ünïcødé ✉", ""],
        ["x" * 1000],
    ],
)
def test_round_trip(parts):
    cursor = encode_cursor(*parts)
    assert decode_cursor(cursor, len(parts)) == parts


def test_opaque_and_url_safe():
    cursor = encode_cursor("?&=/+ ", "\u00ff" * 10, "~~~>>>???")
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert "=" not in cursor


def test_parts_are_their_str():
    key = uuid.uuid4()
    assert decode_cursor(encode_cursor(key, 42), 2) == [str(key), "42"]


def test_time_cursor_round_trip():
    at = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    key = uuid.uuid4()
    assert time_cursor(encode_cursor(at.isoformat(), key)) == (at, key)


def test_time_cursor_keeps_the_instant_of_other_offsets():
    at = datetime(2024, 5, 6, 9, 8, tzinfo=timezone(timedelta(hours=2)))
    key = uuid.uuid4()
    moment, got = time_cursor(encode_cursor(at.isoformat(), key))
    assert moment == at and moment.tzinfo is not None and got == key


def test_id_cursor_round_trip():
    assert id_cursor(encode_cursor(0)) == 0
    assert id_cursor(encode_cursor(123456789)) == 123456789
    assert id_cursor(encode_cursor(2**63 - 1)) == 2**63 - 1


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("", id="empty"),
        pytest.param("garbage!", id="not base64url"),
        pytest.param("a b", id="space"),
        pytest.param(_b64(b'["a"]') + "==", id="padding"),
        pytest.param("ab+/", id="standard alphabet"),
        pytest.param("A", id="impossible length"),
        pytest.param("ÿÿÿÿ", id="non-ascii"),
        pytest.param(_b64(b"\xff\xfe\xfd"), id="not utf-8"),
        pytest.param(_b64(b"not json"), id="not json"),
        pytest.param(_b64(b'["a"'), id="truncated json"),
        pytest.param(_json({"a": "b"}), id="object"),
        pytest.param(_json("a"), id="bare string"),
        pytest.param(_json(None), id="null"),
        pytest.param(_json([]), id="too few"),
        pytest.param(_json(["a", "b"]), id="too many"),
        pytest.param(_json([1]), id="number"),
        pytest.param(_json([None]), id="null part"),
        pytest.param(_json([["a"]]), id="nested"),
        pytest.param(_json([True]), id="bool"),
        pytest.param(_json(["a\x00b"]), id="NUL"),
        pytest.param(_b64(b'["\\ud800"]'), id="lone surrogate"),
        pytest.param(_b64(b"[" * 100_000 + b"]" * 100_000), id="deep nesting"),
        pytest.param(_b64(b"2024-05-06T07:08:09+00:00|1"), id="old pipe format"),
    ],
)
def test_malformed_is_400(cursor):
    _rejected(decode_cursor, cursor, 1)


def test_wrong_count_is_400():
    cursor = encode_cursor("a", "b")
    _rejected(decode_cursor, cursor, 1)
    _rejected(decode_cursor, cursor, 3)


@pytest.mark.parametrize(
    "parts",
    [
        pytest.param(["2024-05-06T07:08:09+00:00", "not-a-uuid"], id="bad uuid"),
        pytest.param(["yesterday", str(uuid.uuid4())], id="bad datetime"),
        pytest.param(["2024-05-06T07:08:09", str(uuid.uuid4())], id="naive datetime"),
        pytest.param(["2024-13-01T00:00:00+00:00", str(uuid.uuid4())], id="month 13"),
        pytest.param(["0001-01-01T00:00:00+05:00", str(uuid.uuid4())], id="before year 1 in UTC"),
        pytest.param(["9999-12-31T23:59:59-05:00", str(uuid.uuid4())], id="after 9999 in UTC"),
        pytest.param([str(uuid.uuid4())], id="one part"),
        pytest.param(["2024-05-06T07:08:09+00:00", str(uuid.uuid4()), "x"], id="three parts"),
    ],
)
def test_time_cursor_rejects(parts):
    _rejected(time_cursor, encode_cursor(*parts))


def test_time_cursor_rejects_malformed():
    _rejected(time_cursor, "garbage!")
    _rejected(time_cursor, _json([1, 2]))


@pytest.mark.parametrize(
    "key",
    ["", "-1", "+1", "1.5", "abc", "²", "١٢", " 1", str(2**63), "9" * 5000],
)
def test_id_cursor_rejects(key):
    _rejected(id_cursor, encode_cursor(key))


def test_id_cursor_rejects_two_parts():
    _rejected(id_cursor, encode_cursor(1, 2))
