"""Who a call is about: Segment's `userId` / `anonymousId` resolved to profiles, set-based.

- A `userId` is a profile's `external_id`; a profile is created the first time one is seen.
- An `anonymousId` is an alias (profile_aliases) of a profile; an anonymous profile is created
  the first time one is seen.
- A call carrying both ties them together: the anonymous id becomes an alias of the known
  profile, and an anonymous profile that id had is merged into it (events move, no duplicates;
  its segment exits and list leaves are logged, and the known profile's new entries and joins:
  `ingest.profiles.merge_profiles`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from ingest.profiles import merge_profiles, profiles_changed


@dataclass(frozen=True)
class Identity:
    user_id: str | None = None
    anonymous_id: str | None = None

    def __post_init__(self) -> None:
        if not (self.user_id or self.anonymous_id):
            raise ValueError("userId or anonymousId is required")


# Existing rows are found by one unique-index probe per wanted id: a LATERAL subquery on the
# full unique key (`LIMIT 1` keeps the planner from flattening it into a join), whatever the
# statistics say. With a plain join, or `= ANY(array)`, stale statistics (a new workspace, a
# table not analyzed yet) made PostgreSQL scan every profile of the workspace once per batch,
# or once per wanted id in the generic plan psycopg's prepared statements get after five runs.
_KNOWN = text(
    """
    WITH wanted AS (SELECT DISTINCT u FROM unnest(CAST(:uids AS text[])) AS u ORDER BY u),
    created AS (
        INSERT INTO profiles (id, workspace_id, external_id)
        SELECT gen_random_uuid(), :ws, u FROM wanted
        ON CONFLICT (workspace_id, external_id) WHERE external_id IS NOT NULL DO NOTHING
        RETURNING id, external_id
    )
    SELECT external_id, id, true AS created FROM created
    UNION ALL
    SELECT wanted.u, p.id, false FROM wanted CROSS JOIN LATERAL (
        SELECT id FROM profiles WHERE workspace_id = :ws AND external_id = wanted.u LIMIT 1
    ) AS p
    """
)

# New anonymous ids get a profile and an alias in one statement (the foreign key is checked
# at its end), so a concurrent request for the same id never leaves an orphan profile.
_ANONYMOUS = text(
    """
    WITH wanted AS (SELECT DISTINCT a FROM unnest(CAST(:aids AS text[])) AS a ORDER BY a),
    aliased AS (
        INSERT INTO profile_aliases (workspace_id, anonymous_id, profile_id)
        SELECT :ws, a, gen_random_uuid() FROM wanted
        ON CONFLICT DO NOTHING
        RETURNING anonymous_id, profile_id
    ),
    created AS (
        INSERT INTO profiles (id, workspace_id) SELECT profile_id, :ws FROM aliased
    )
    SELECT anonymous_id, profile_id, true AS created FROM aliased
    UNION ALL
    SELECT wanted.a, pa.profile_id, false FROM wanted CROSS JOIN LATERAL (
        SELECT profile_id FROM profile_aliases
        WHERE workspace_id = :ws AND anonymous_id = wanted.a LIMIT 1
    ) AS pa
    """
)

_LINK = text(
    """
    INSERT INTO profile_aliases (workspace_id, anonymous_id, profile_id)
    SELECT :ws, a, p FROM unnest(CAST(:aids AS text[]), CAST(:pids AS uuid[])) AS x(a, p)
    ON CONFLICT DO NOTHING
    """
)

_MISLINKED = text(
    """
    SELECT x.a, x.p AS wanted, pa.profile_id AS current, p.external_id
    FROM unnest(CAST(:aids AS text[]), CAST(:pids AS uuid[])) AS x(a, p)
    CROSS JOIN LATERAL (
        SELECT profile_id FROM profile_aliases WHERE workspace_id = :ws AND anonymous_id = x.a
        LIMIT 1
    ) AS pa
    JOIN profiles p ON p.id = pa.profile_id
    WHERE pa.profile_id <> x.p
    """
)


async def known_profiles(
    session: AsyncSession, workspace_id: uuid.UUID, user_ids: Iterable[str]
) -> dict[str, uuid.UUID]:
    """Profiles by external id, created where missing."""
    uids = sorted(set(user_ids))
    if not uids:
        return {}
    return await _get_or_create(session, _KNOWN, workspace_id, "uids", uids)


async def anonymous_profiles(
    session: AsyncSession, workspace_id: uuid.UUID, anonymous_ids: Iterable[str]
) -> dict[str, uuid.UUID]:
    """Profiles by anonymous id, created (with their alias) where missing."""
    aids = sorted(set(anonymous_ids))
    if not aids:
        return {}
    return await _get_or_create(session, _ANONYMOUS, workspace_id, "aids", aids)


async def _get_or_create(
    session: AsyncSession,
    statement: TextClause,
    workspace_id: uuid.UUID,
    param: str,
    keys: list[str],
) -> dict[str, uuid.UUID]:
    """Run a get-or-create statement until it has answered for every key.

    A row committed by a concurrent request after this statement's snapshot was taken is
    skipped by `ON CONFLICT DO NOTHING` yet invisible to the statement's own SELECT; the next
    statement (a new snapshot, under READ COMMITTED) sees it.
    """
    found: dict[str, uuid.UUID] = {}
    created: list[uuid.UUID] = []
    for _ in range(3):
        rows = await session.execute(statement, {"ws": workspace_id, param: keys})
        for key, profile_id, is_new in rows:
            found[key] = profile_id
            if is_new:
                created.append(profile_id)
        keys = [key for key in keys if key not in found]
        if not keys:
            await profiles_changed(session, workspace_id, created, new=True)
            return found
    raise RuntimeError(f"could not resolve {len(keys)} ids (e.g. {keys[0]!r})")


async def link_anonymous(
    session: AsyncSession, workspace_id: uuid.UUID, links: dict[str, uuid.UUID]
) -> None:
    """Make each anonymous id an alias of the given profile, merging anonymous profiles into it.

    An anonymous id that already belongs to another *known* profile (a shared device) stays
    where it is: known profiles are never merged implicitly.
    """
    if not links:
        return
    aids = sorted(links)  # one lock order for concurrent requests: no deadlocks
    params = {"ws": workspace_id, "aids": aids, "pids": [links[a] for a in aids]}
    await session.execute(_LINK, params)
    for anonymous_id, wanted, current, external_id in (
        await session.execute(_MISLINKED, params)
    ).all():
        if external_id is None:
            await merge_profiles(session, workspace_id, source=current, target=wanted)
        else:
            links.pop(anonymous_id, None)


async def resolve(
    session: AsyncSession, workspace_id: uuid.UUID, identities: Iterable[Identity]
) -> dict[Identity, uuid.UUID]:
    """The profile of every identity, in a handful of statements whatever their number."""
    identities = list(dict.fromkeys(identities))
    known = await known_profiles(
        session, workspace_id, (i.user_id for i in identities if i.user_id)
    )
    await link_anonymous(
        session,
        workspace_id,
        {i.anonymous_id: known[i.user_id] for i in identities if i.user_id and i.anonymous_id},
    )
    anonymous = await anonymous_profiles(
        session, workspace_id, (i.anonymous_id for i in identities if not i.user_id)
    )
    return {i: known[i.user_id] if i.user_id else anonymous[i.anonymous_id] for i in identities}


async def resolve_one(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    user_id: str | None = None,
    anonymous_id: str | None = None,
) -> uuid.UUID:
    identity = Identity(user_id=user_id, anonymous_id=anonymous_id)
    return (await resolve(session, workspace_id, [identity]))[identity]
