"""Profiles that disappear — merged into another by identity resolution, or erased — leave their
segments and lists on the record: entry/exit counts, member counters and the history chart stay
right, the surviving profile's new entries are logged (and start flows), exits start nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from core.db import session_scope
from tests.flows.test_triggers import api, live_flow, new_list, segment


def did(metric: str) -> dict:
    return {
        "type": "behaviour",
        "metric": metric,
        "count": {"op": "at_least", "value": 1},
        "timeframe": {"kind": "all_time"},
    }


def on_list(list_id: str) -> dict:
    return {"type": "list_membership", "op": "in", "list_id": list_id}


def prop(name: str, op: str, value: Any = None) -> dict:
    return {"type": "property", "property": name, "op": op} | (
        {} if value is None else {"value": value}
    )


async def rows(engine, sql: str, **params) -> list:
    async with session_scope(engine) as session:
        return list((await session.execute(text(sql), params)).all())


async def segment_log(engine, segment_id: str) -> list[tuple[str, str]]:
    return [
        (str(p), a)
        for p, a in await rows(
            engine,
            "SELECT profile_id, action FROM segment_membership_changes WHERE segment_id = :s"
            " ORDER BY id",
            s=segment_id,
        )
    ]


async def list_log(engine, list_id: str) -> list[tuple[str, str, str]]:
    return [
        (str(p), a, s)
        for p, a, s in await rows(
            engine,
            "SELECT profile_id, action, source FROM list_membership_changes WHERE list_id = :l"
            " ORDER BY id",
            l=list_id,
        )
    ]


async def segment_counts_add_up(engine, client, ws, segment_id: str) -> int:
    """Members now = counter = entries - exits in the log = today's figure of the history chart."""
    [(members, counter, entered, exited)] = await rows(
        engine,
        "SELECT (SELECT count(*) FROM segment_members WHERE segment_id = s.id), s.member_count,"
        " (SELECT count(*) FROM segment_membership_changes c"
        "  WHERE c.segment_id = s.id AND action = 'entered'),"
        " (SELECT count(*) FROM segment_membership_changes c"
        "  WHERE c.segment_id = s.id AND action = 'exited')"
        " FROM segments s WHERE s.id = :s",
        s=segment_id,
    )
    assert members == counter == entered - exited, (members, counter, entered, exited)
    history = await api(client, ws, "GET", f"/v1/segments/{segment_id}/history?days=2")
    assert [d["members"] for d in history["days"]] == [0, members]  # all logged today
    assert history["days"][-1]["entered"] == entered
    assert history["days"][-1]["exited"] == exited
    return members


async def list_members(engine, list_id: str) -> set[str]:
    counted = await rows(
        engine,
        "SELECT count(*) FILTER (WHERE action = 'joined') - count(*) FILTER (WHERE action = 'left')"
        " FROM list_membership_changes WHERE list_id = :l",
        l=list_id,
    )
    members = {
        str(p)
        for (p,) in await rows(
            engine, "SELECT profile_id FROM list_members WHERE list_id = :l", l=list_id
        )
    }
    assert counted[0][0] == len(members)
    return members


async def track(client, ws, path: str, body: dict) -> None:
    r = await client.post(path, headers=ws.tracking, json=body)
    assert r.status_code == 200, r.text


async def test_a_merge_logs_the_anonymous_profiles_exits_and_the_known_profiles_entries(
    client, workspaces, engine
):
    ws = await workspaces.create()
    # An anonymous visitor who viewed a product, and a known customer in Lyon.
    await track(client, ws, "/v1/track", {"anonymousId": "anon-1", "event": "Viewed Product"})
    await track(client, ws, "/v1/identify", {"userId": "known", "traits": {
        "email": "k@example.com", "city": "Lyon"}})  # fmt: skip
    [(anon,)] = await rows(
        engine, "SELECT profile_id FROM profile_aliases WHERE anonymous_id = 'anon-1'"
    )
    [(known,)] = await rows(engine, "SELECT id FROM profiles WHERE external_id = 'known'")
    anon, known = str(anon), str(known)
    newsletter = await new_list(client, ws, "Newsletter")  # the visitor's only
    shared = await new_list(client, ws, "Shared")  # both were on it
    await api(client, ws, "POST", f"/v1/lists/{newsletter}/members", json={"profile_ids": [anon]})
    await api(client, ws, "POST", f"/v1/lists/{shared}/members", json={"profile_ids": [anon]})
    await api(client, ws, "POST", f"/v1/lists/{shared}/members", json={"profile_ids": [known]})
    viewers = await segment(client, ws, "Viewers", did("Viewed Product"))
    nameless = await segment(client, ws, "No email", prop("email", "is_not_set"))
    lyon = await segment(client, ws, "Lyon", prop("city", "eq", "Lyon"))
    readers = await segment(client, ws, "Newsletter readers", on_list(newsletter))
    on_viewers = await live_flow(client, ws, {"type": "segment_entered", "segment_id": viewers})
    on_nameless = await live_flow(client, ws, {"type": "segment_entered", "segment_id": nameless})
    on_newsletter = await live_flow(client, ws, {"type": "list_joined", "list_id": newsletter})
    on_shared = await live_flow(client, ws, {"type": "list_joined", "list_id": shared})
    assert await segment_log(engine, viewers) == [(anon, "entered")]

    # The visitor logs in: the anonymous profile is merged into the known one.
    await track(client, ws, "/v1/identify", {"userId": "known", "anonymousId": "anon-1"})
    assert [str(p) for (p,) in await rows(engine, "SELECT id FROM profiles")] == [known]

    # The visitor's memberships ended (exits logged), and the merged customer newly qualifies
    # for what the visitor's events and list brought (entries logged); the visitor's earlier
    # history follows the surviving profile like its events do.
    assert await segment_log(engine, viewers) == [
        (known, "entered"),
        (known, "exited"),
        (known, "entered"),
    ]
    assert await segment_log(engine, nameless) == [(known, "entered"), (known, "exited")]
    assert await segment_log(engine, lyon) == [(known, "entered")]  # unchanged
    assert await segment_log(engine, readers) == [
        (known, "entered"),
        (known, "exited"),
        (known, "entered"),
    ]
    assert [await segment_counts_add_up(engine, client, ws, s) for s in (
        viewers, nameless, lyon, readers)] == [1, 0, 1, 1]  # fmt: skip

    assert await list_log(engine, newsletter) == [
        (known, "joined", "api"),
        (known, "left", "merged"),
        (known, "joined", "merged"),
    ]
    assert await list_log(engine, shared) == [
        (known, "joined", "api"),
        (known, "joined", "api"),
        (known, "left", "merged"),
    ]
    assert await list_members(engine, newsletter) == {known}
    assert await list_members(engine, shared) == {known}

    # Only the new entry and the new join start flows; exits and leaves start nothing.
    queued = await rows(engine, "SELECT flow_id, profile_id FROM membership_outbox")
    assert sorted((str(f), str(p)) for f, p in queued) == sorted(
        [(on_viewers, known), (on_newsletter, known)]
    )
    assert on_nameless not in {str(f) for f, _ in queued}
    assert on_shared not in {str(f) for f, _ in queued}


async def test_an_erased_profile_leaves_no_trace_and_segment_counts_stay_right(
    client, workspaces, engine
):
    ws = await workspaces.create()
    people = []
    for name in ("erase-me", "stays"):
        r = await client.post(
            "/v1/profiles",
            headers=ws.admin,
            json={"external_id": name, "email": f"{name}@example.com", "city": "Lyon"},
        )
        assert r.status_code == 201, r.text
        people.append(r.json()["id"])
    gone, stays = people
    vip = await new_list(client, ws, "VIP")
    await api(client, ws, "POST", f"/v1/lists/{vip}/members", json={"profile_ids": people})
    lyon = await segment(client, ws, "Lyon", prop("city", "eq", "Lyon"))
    readers = await segment(client, ws, "VIP in Lyon", {"all": [on_list(vip), {
        "type": "segment_membership", "op": "in", "segment_id": lyon}]})  # fmt: skip
    assert await segment_counts_add_up(engine, client, ws, lyon) == 2

    r = await client.delete(f"/v1/profiles/{gone}", headers=ws.admin)
    assert r.status_code == 204, r.text

    # The erased person's id appears in no change log (no exit row is written for them: their
    # whole history goes, as if they had never been a member) ...
    for table in ("segment_membership_changes", "list_membership_changes", "membership_outbox"):
        assert await rows(engine, f"SELECT 1 FROM {table} WHERE profile_id = :p", p=gone) == []
    # ... and every count still adds up: members, the segment's counter, the log, the chart.
    assert await segment_counts_add_up(engine, client, ws, lyon) == 1
    assert await segment_counts_add_up(engine, client, ws, readers) == 1
    assert await list_members(engine, vip) == {stays}
    segments = await api(client, ws, "GET", "/v1/segments")
    assert {s["name"]: s["member_count"] for s in segments["data"]} == {"Lyon": 1, "VIP in Lyon": 1}
    assert await segment_log(engine, lyon) == [(stays, "entered")]
