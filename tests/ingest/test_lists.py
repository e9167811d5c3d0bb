"""List membership service: set-based joins and leaves, each recorded once, tenant-safe."""

from __future__ import annotations

from sqlalchemy import text

from core.db import session_scope
from ingest.lists import add_members, remove_members
from models import Profile, ProfileList


async def _setup(engine, ws_id, n: int = 3):
    async with session_scope(engine) as session:
        lst = ProfileList(workspace_id=ws_id, name="VIP")
        people = [Profile(workspace_id=ws_id, email=f"p{i}@example.com") for i in range(n)]
        session.add_all([lst, *people])
    return lst.id, [p.id for p in people]


async def test_joins_and_leaves_are_recorded_once(engine, workspaces):
    ws = await workspaces.create()
    list_id, ids = await _setup(engine, ws.id)
    async with session_scope(engine) as session:
        assert set(await add_members(session, ws.id, list_id, ids[:2], "flow")) == set(ids[:2])
    async with session_scope(engine) as session:
        joined = await add_members(session, ws.id, list_id, ids + ids, "api")
        assert joined == [ids[2]]  # the others were members already
        left = await remove_members(session, ws.id, list_id, [ids[0], ids[0]], "api")
        assert left == [ids[0]]
        assert await remove_members(session, ws.id, list_id, [ids[0]], "api") == []
    async with session_scope(engine) as session:
        log = (
            await session.execute(
                text(
                    "SELECT profile_id, action, source FROM list_membership_changes "
                    "WHERE list_id = :l ORDER BY id"
                ),
                {"l": list_id},
            )
        ).all()
        sources = dict(
            (await session.execute(text("SELECT profile_id, source FROM list_members"))).all()
        )
    assert [(a, s) for _, a, s in log] == [
        ("joined", "flow"),
        ("joined", "flow"),
        ("joined", "api"),
        ("left", "api"),
    ]
    assert sources == {ids[1]: "flow", ids[2]: "api"}  # existing members keep their source


async def test_other_workspaces_profiles_and_lists_are_ignored(engine, workspaces):
    ws, other = await workspaces.create(), await workspaces.create("Other")
    list_id, ids = await _setup(engine, ws.id, 1)
    _, foreign = await _setup(engine, other.id, 1)
    async with session_scope(engine) as session:
        assert await add_members(session, ws.id, list_id, foreign, "api") == []
        assert await add_members(session, other.id, list_id, ids, "api") == []
        assert await add_members(session, ws.id, list_id, ids, "api") == ids
        assert await remove_members(session, other.id, list_id, ids, "api") == []
