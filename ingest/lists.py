"""List membership, set-based: joins and leaves with their log, and profiles found by identifier.

Every writer (REST API, CSV import, flow actions) goes through `add_members` (or, for profile ids
already in the database, a statement made by `add_statement`) and `remove_members`, so each join
and leave is recorded once, with time and source. List-triggered flows read joins.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from ingest.profiles import profiles_changed

# The one definition of a join. `{members}` is a query of the profile ids to add (any
# duplicates); `{result}` reads the `joined` rows (profile_id, joined_at).
_ADD_BODY = """
    WITH input AS (
        SELECT DISTINCT x.profile_id
        FROM ({members}) AS x(profile_id)
        JOIN profiles p ON p.id = x.profile_id AND p.workspace_id = :ws
        WHERE EXISTS (SELECT 1 FROM lists l WHERE l.id = :list AND l.workspace_id = :ws)
    ), joined AS (
        INSERT INTO list_members (list_id, profile_id, workspace_id, source, joined_at)
        SELECT :list, profile_id, :ws, :source, now() FROM input
        ON CONFLICT (list_id, profile_id) DO NOTHING
        RETURNING profile_id, joined_at
    ), logged AS (
        INSERT INTO list_membership_changes
            (workspace_id, list_id, profile_id, action, source, occurred_at)
        SELECT :ws, :list, profile_id, 'joined', :source, joined_at FROM joined
    )
    {result}
    """


@cache
def add_statement(members: str, result: str = "SELECT profile_id FROM joined") -> TextClause:
    """The join statement over `members`, a SELECT of profile ids (e.g. from a staging table).
    Binds `:ws`, `:list`, `:source` plus the query's own parameters."""
    return text(_ADD_BODY.format(members=members, result=result))


_ADD = add_statement("SELECT unnest(CAST(:profile_ids AS uuid[]))")

_REMOVE = text(
    """
    WITH removed AS (
        DELETE FROM list_members m
        WHERE m.list_id = :list AND m.workspace_id = :ws
          AND m.profile_id = ANY(CAST(:profile_ids AS uuid[]))
        RETURNING m.profile_id
    ), logged AS (
        INSERT INTO list_membership_changes
            (workspace_id, list_id, profile_id, action, source, occurred_at)
        SELECT :ws, :list, profile_id, 'left', :source, now() FROM removed
    )
    SELECT profile_id FROM removed
    """
)


async def add_members(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    list_id: uuid.UUID,
    profile_ids: Sequence[uuid.UUID],
    source: str,
) -> list[uuid.UUID]:
    """Add profiles of this workspace to the list; returns those that newly joined.

    Existing members stay as they are (their join time and source too). One statement."""
    if not profile_ids:
        return []
    rows = await session.execute(
        _ADD,
        {"ws": workspace_id, "list": list_id, "profile_ids": list(profile_ids), "source": source},
    )
    changed = list(rows.scalars())
    if changed:
        await profiles_changed(session, workspace_id, changed, changed={"lists"})
    return changed


async def remove_members(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    list_id: uuid.UUID,
    profile_ids: Sequence[uuid.UUID],
    source: str,
) -> list[uuid.UUID]:
    """Remove profiles from the list; returns those that were members and left. One statement."""
    if not profile_ids:
        return []
    rows = await session.execute(
        _REMOVE,
        {"ws": workspace_id, "list": list_id, "profile_ids": list(profile_ids), "source": source},
    )
    changed = list(rows.scalars())
    if changed:
        await profiles_changed(session, workspace_id, changed, changed={"lists"})
    return changed


@dataclass
class Identifiers:
    """Normalized identifiers of profiles (emails as normalized, phones in E.164)."""

    profile_ids: list[uuid.UUID] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    external_ids: list[str] = field(default_factory=list)


@dataclass
class Resolved:
    """Identifier (kind, value) → profile id; `missing` holds those with no profile."""

    found: dict[tuple[str, str], uuid.UUID]
    missing: list[tuple[str, str]]
    created: int = 0


_CREATE = text(
    """
    INSERT INTO profiles (id, workspace_id, email, phone, external_id)
    SELECT gen_random_uuid(), :ws, x.email, x.phone, x.external_id
    FROM (
        SELECT e AS email, CAST(NULL AS text) AS phone, CAST(NULL AS text) AS external_id
        FROM unnest(CAST(:emails AS text[])) e
        UNION ALL SELECT NULL, ph, NULL FROM unnest(CAST(:phones AS text[])) ph
        UNION ALL SELECT NULL, NULL, x FROM unnest(CAST(:externals AS text[])) x
    ) x
    ON CONFLICT DO NOTHING
    """
)

_FIND = text(
    """
    SELECT 'profile_id', CAST(p.id AS text), p.id FROM profiles p
    WHERE p.workspace_id = :ws AND p.id = ANY(CAST(:ids AS uuid[]))
    UNION ALL
    SELECT 'email', e, p.id FROM unnest(CAST(:emails AS text[])) e
    JOIN profiles p ON p.workspace_id = :ws AND lower(p.email) = lower(e)
    UNION ALL
    SELECT 'phone', ph, p.id FROM unnest(CAST(:phones AS text[])) ph
    JOIN profiles p ON p.workspace_id = :ws AND p.phone = ph
    UNION ALL
    SELECT 'external_id', x, p.id FROM unnest(CAST(:externals AS text[])) x
    JOIN profiles p ON p.workspace_id = :ws AND p.external_id = x
    """
)


async def find_profiles(
    session: AsyncSession, workspace_id: uuid.UUID, ids: Identifiers, *, create: bool = False
) -> Resolved:
    """The profiles these identifiers name, in two statements at most.

    With `create`, an email, phone or external id that names no profile gets a new profile
    holding just that identifier (as Klaviyo does); unknown profile ids are never created."""
    params = {
        "ws": workspace_id,
        "ids": ids.profile_ids,
        "emails": ids.emails,
        "phones": ids.phones,
        "externals": ids.external_ids,
    }
    created = 0
    if create and (ids.emails or ids.phones or ids.external_ids):
        created = (await session.execute(_CREATE, params)).rowcount
    found = {(kind, value): pid for kind, value, pid in await session.execute(_FIND, params)}
    wanted = [("profile_id", str(i)) for i in ids.profile_ids]
    wanted += [("email", e) for e in ids.emails] + [("phone", p) for p in ids.phones]
    wanted += [("external_id", x) for x in ids.external_ids]
    return Resolved(found, [w for w in wanted if w not in found], created)
