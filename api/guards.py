"""Checks every request passes before a route sees it.

- **Auth before the body**: FastAPI decodes and validates a JSON body before it runs any
  dependency, so a request without a valid key but with a malformed body would learn "422".
  The validation-error handler asks `unauthenticated()` first, so such a request gets 401.
- **No NUL characters**: PostgreSQL text cannot hold U+0000; a body or query that carries one is
  a 422 naming the problem, never a 500. (`/v1/batch` checks each call on its own, so one bad
  call does not sink the batch.)
"""

from __future__ import annotations

import base64
import binascii
import re

from fastapi import Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from api.errors import ApiError, error_response
from core import tenancy
from core.db import session_scope

# A JSON \u0000 escape that is not itself an escaped backslash followed by "u0000".
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000", re.IGNORECASE)
SELF_CHECKED_PATHS = frozenset({"/v1/batch"})


async def reject_nul(request: Request) -> None:
    if b"%00" in request.scope.get("query_string", b"") or b"%00" in request.scope.get(
        "raw_path", b""
    ):
        raise _nul_error("the URL")
    if request.url.path in SELF_CHECKED_PATHS:
        return
    if request.headers.get("content-type", "").startswith("application/json"):
        body = await request.body()
        if b"\x00" in body or _JSON_NUL.search(body):
            raise _nul_error("the body")


def _nul_error(where: str) -> ApiError:
    return ApiError(
        422, "validation_error", f"{where} holds a NUL character (\\u0000), which text cannot hold"
    )


def auth_kind(route: object) -> str | None:
    """ "private", "tracking", or None for a route no API key guards (links, webhooks, health)."""
    if not isinstance(route, APIRoute):
        return None
    pending = list(route.dependant.dependencies)
    while pending:
        dependant = pending.pop()
        if kind := getattr(dependant.call, "waymark_auth", None):
            return kind
        pending.extend(dependant.dependencies)
    return None


async def unauthenticated(request: Request) -> JSONResponse | None:
    """The 401 a request deserves before anything else is said about it, if it deserves one."""
    kind = auth_kind(request.scope.get("route"))
    if kind is None:
        return None
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    credentials = credentials.strip()
    async with session_scope(request.app.state.engine) as session:
        if scheme.lower() == "bearer" and credentials:
            principal = await tenancy.authenticate_private(session, credentials)
        elif scheme.lower() == "basic" and kind == "tracking":
            principal = await tenancy.authenticate_public(session, _basic_username(credentials))
        else:
            principal = None
    if principal is not None:
        return None
    return error_response(
        401,
        "unauthorized",
        "missing, invalid or revoked API key",
        headers={"WWW-Authenticate": "Bearer"},
    )


def _basic_username(credentials: str) -> str:
    try:
        return base64.b64decode(credentials, validate=True).decode().partition(":")[0]
    except (binascii.Error, UnicodeDecodeError):
        return ""
