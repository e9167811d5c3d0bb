"""Opaque cursors for keyset pagination, one implementation for every listing.

A cursor is the base64url (no padding) of a JSON array of strings: the sort key of the last row
of a page. Clients pass it back unchanged; anything that does not decode to what this API
returned answers 400 `invalid_cursor`, never a 500 from the database.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import ApiError

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")
_BIGINT_MAX = 2**63 - 1


def _invalid() -> ApiError:
    return ApiError(400, "invalid_cursor", "cursor is not one this API returned")


def encode_cursor(*parts: object) -> str:
    """The cursor for a sort key: each part as its `str()`."""
    raw = json.dumps([str(part) for part in parts], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, n: int) -> list[str]:
    """The `n` strings `encode_cursor` was given; 400 `invalid_cursor` for anything else."""
    if not _ALPHABET.fullmatch(cursor):
        raise _invalid()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise _invalid() from None
    if not isinstance(parts, list) or len(parts) != n:
        raise _invalid()
    for part in parts:
        # NUL and lone surrogates never came from us, and the database would refuse them (500).
        if not isinstance(part, str) or "\x00" in part:
            raise _invalid()
        try:
            part.encode()
        except UnicodeEncodeError:
            raise _invalid() from None
    return parts


def time_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """`(created_at, id)` of a cursor made by `encode_cursor(at.isoformat(), id)`."""
    at, key = decode_cursor(cursor, 2)
    try:
        moment = datetime.fromisoformat(at)
        if moment.utcoffset() is None:
            raise ValueError("naive datetime")
        # In UTC, as the database driver sends it: an offset near year 1 or 9999 overflows here.
        return moment.astimezone(UTC), uuid.UUID(key)
    except (ValueError, OverflowError):
        raise _invalid() from None


def id_cursor(cursor: str) -> int:
    """The bigint id of a cursor made by `encode_cursor(id)`."""
    (key,) = decode_cursor(cursor, 1)
    if not (key.isascii() and key.isdigit() and len(key) <= 19) or int(key) > _BIGINT_MAX:
        raise _invalid()
    return int(key)


async def created_page(
    session: AsyncSession, query: Select, entity: Any, limit: int, cursor: str | None
) -> tuple[list[Any], str | None]:
    """One page of `query` in (`entity.created_at`, `entity.id`) order, after `cursor`: at most
    `limit` rows (the entity itself when the query selects only it, else the rows, the entity
    first) and the cursor of the next page (None on the last)."""
    key = (entity.created_at, entity.id)
    if cursor:
        query = query.where(tuple_(*key) > tuple_(*time_cursor(cursor)))
    rows = list((await session.execute(query.order_by(*key).limit(limit + 1))).all())
    more, rows = len(rows) > limit, rows[:limit]
    last = rows[-1][0] if more else None
    next_cursor = encode_cursor(last.created_at.isoformat(), last.id) if last else None
    if len(query.column_descriptions) == 1:
        rows = [row[0] for row in rows]
    return rows, next_cursor
