"""Presence: derived from live sessions, published once per change, seen by co-members
in /sync (waking their long-polls at once), and the operator's switch."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from trio.testing import MockClock

from backends.records import JsonDict, Presence, SessionRecord
from homeserver.engine.presence import aggregate
from homeserver.errors import Forbidden, InvalidParam, NotFoundError
from tests.engine.conftest import START_MS, Client, Harness, MakeHarness, presence_events

T = 10_000
ONLINE, UNAVAILABLE, OFFLINE = Presence.ONLINE, Presence.UNAVAILABLE, Presence.OFFLINE


def session(presence: str, last_active_ts: int = 0, status_msg: str | None = None) -> SessionRecord:
    return SessionRecord(
        session_id=f"{presence}{last_active_ts}",
        user_id="@a:x",
        device_id="D",
        presence=presence,
        status_msg=status_msg,
        created_ts=0,
        last_active_ts=last_active_ts,
        expires_at_ms=1,
    )


async def start(h: Harness, client: Client, presence: str, status_msg: str | None = None) -> str:
    record = await h.engine.sessions.start(
        client.user_id, client.device_id, presence, status_msg, replace=True
    )
    return record.session_id


async def set_presence(
    h: Harness, client: Client, presence: str, status_msg: str | None = None, **kw: Any
) -> None:
    async with h.request(client) as who:
        await h.engine.sessions.set_presence(who, presence, status_msg, **kw)


# -- the rule -------------------------------------------------------------------------------


def test_aggregate_takes_the_strongest_presence() -> None:
    assert aggregate([]) is None
    assert aggregate([session(OFFLINE)]) == (OFFLINE, None)
    assert aggregate([session(OFFLINE), session(UNAVAILABLE, status_msg="away")]) == (
        UNAVAILABLE,
        "away",
    )
    assert aggregate([session(UNAVAILABLE), session(ONLINE), session(OFFLINE)]) == (ONLINE, None)
    # Among equals, the most recently active session's message.
    assert aggregate([session(ONLINE, 5, "new"), session(ONLINE, 1, "old")]) == (ONLINE, "new")


async def test_two_devices_one_offline_one_away_appear_away(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    phone = await h.client("alice", "PHONE")
    laptop = await h.client("alice", "LAPTOP")
    tablet = await h.client("alice", "TABLET")

    on_phone = await start(h, phone, OFFLINE)
    assert await h.presence(phone.user_id) == OFFLINE
    assert h.published == []  # offline mode from the start: nothing to announce
    on_laptop = await start(h, laptop, UNAVAILABLE)
    assert await h.presence(phone.user_id) == UNAVAILABLE
    on_tablet = await start(h, tablet, ONLINE)
    assert await h.presence(phone.user_id) == ONLINE

    await h.engine.sessions.end(phone.user_id, on_tablet)
    assert await h.presence(phone.user_id) == UNAVAILABLE
    await h.engine.sessions.end(phone.user_id, on_laptop)
    # The phone's session is live, but it appears offline.
    assert await h.live_sessions(phone) == [on_phone]
    assert await h.presence(phone.user_id) == OFFLINE
    await h.engine.sessions.end(phone.user_id, on_phone)
    assert h.changes(phone.user_id) == [UNAVAILABLE, ONLINE, UNAVAILABLE, OFFLINE]


async def test_with_no_live_session_a_user_is_offline(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    alice = await h.client("alice")
    assert await h.engine.presence.status(alice.user_id, alice.user_id) == {
        "presence": OFFLINE,
        "currently_active": False,
    }
    await start(h, alice, UNAVAILABLE, "lunch")
    await h.at(T)
    assert await h.presence(alice.user_id) == OFFLINE
    status = await h.engine.presence.status(alice.user_id, alice.user_id)
    # The status message outlives the sessions; last activity is when the session began.
    assert status == {
        "presence": OFFLINE,
        "currently_active": False,
        "last_active_ago": T,
        "status_msg": "lunch",
    }


# -- explicit changes -----------------------------------------------------------------------


async def test_set_presence_changes_the_session_and_publishes_once(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    alice = await h.client("alice")
    sid = await h.touch(alice)
    await set_presence(h, alice, UNAVAILABLE, "lunch")
    record = await h.storage.sessions.get_session(sid)
    assert record is not None
    assert (record.presence, record.status_msg) == (UNAVAILABLE, "lunch")
    await set_presence(h, alice, UNAVAILABLE, "lunch")  # no change
    await set_presence(h, alice, UNAVAILABLE, keep_status=True)  # /sync?set_presence
    assert [(p.presence, p.status_msg) for p in h.published] == [
        (ONLINE, None),
        (UNAVAILABLE, "lunch"),
    ]
    await set_presence(h, alice, ONLINE, keep_status=True)
    await set_presence(h, alice, ONLINE, None)
    assert [(p.presence, p.status_msg) for p in h.published[2:]] == [
        (ONLINE, "lunch"),
        (ONLINE, None),
    ]


async def test_set_presence_of_one_session_under_a_stronger_one_publishes_nothing(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    phone = await h.client("alice", "PHONE")
    laptop = await h.client("alice", "LAPTOP")
    await h.touch(phone)
    await h.touch(laptop)
    await set_presence(h, laptop, UNAVAILABLE)
    assert h.changes(phone.user_id) == [ONLINE]


async def test_set_presence_refuses_unknown_values(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    alice = await h.client("alice")
    with pytest.raises(InvalidParam) as info:
        await set_presence(h, alice, "busy")
    assert (info.value.status, info.value.errcode) == (400, "M_INVALID_PARAM")
    assert h.changes(alice.user_id) == [ONLINE]


# -- what co-members see ---------------------------------------------------------------------


async def test_comembers_see_each_change_once(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    alice = await h.client("alice")
    bob = await h.client("bob")
    carol = await h.client("carol")  # shares no room with alice
    await h.room(alice, bob)
    await h.room(carol)
    bob_since = (await h.sync(bob))["next_batch"]
    carol_since = (await h.sync(carol))["next_batch"]
    seen: list[tuple[str, str]] = []

    async def bob_sees() -> list[tuple[str, str]]:
        nonlocal bob_since
        body = await h.sync(bob, since=bob_since)
        bob_since = body["next_batch"]
        events = [e for e in presence_events(body) if e[0] == alice.user_id]
        seen.extend(events)
        return events

    await bob_sees()
    seen.clear()
    sid = await h.touch(alice)  # start
    assert await bob_sees() == [(alice.user_id, ONLINE)]
    for ms in range(1, 6):  # requests are not changes
        await h.at(ms)
        await h.touch(alice)
        assert await bob_sees() == []
    await set_presence(h, alice, UNAVAILABLE)  # explicit change
    await set_presence(h, alice, UNAVAILABLE)
    assert await bob_sees() == [(alice.user_id, UNAVAILABLE)]
    await h.engine.sessions.end(alice.user_id, sid)  # end
    assert await bob_sees() == [(alice.user_id, OFFLINE)]
    await h.at(100)
    await h.touch(alice)  # a new session
    assert await bob_sees() == [(alice.user_id, ONLINE)]
    await h.at(100 + T)  # expiry
    assert await bob_sees() == [(alice.user_id, OFFLINE)]
    assert await bob_sees() == []
    assert seen == [(alice.user_id, p) for p in (ONLINE, UNAVAILABLE, OFFLINE, ONLINE, OFFLINE)]
    # Carol shares no room with alice: she never sees her.
    body = await h.sync(carol, since=carol_since)
    assert [e for e in presence_events(body) if e[0] == alice.user_id] == []


async def test_presence_event_content(make_harness: MakeHarness, autojump_clock: MockClock) -> None:
    h = await make_harness(session_timeout_ms=T)
    alice = await h.client("alice")
    bob = await h.client("bob")
    await h.room(alice, bob)
    await start(h, alice, UNAVAILABLE, "in a meeting")
    await h.at(250)
    body = await h.sync(bob)
    [event] = [e for e in body["presence"]["events"] if e["sender"] == alice.user_id]
    assert event == {
        "type": "m.presence",
        "sender": alice.user_id,
        "content": {
            "presence": UNAVAILABLE,
            "currently_active": False,
            "last_active_ago": 250,
            "status_msg": "in a meeting",
        },
    }


async def wait_for_sync(
    h: Harness, client: Client, since: str, change: Any, timeout_ms: int = 30_000
) -> tuple[JsonDict, float]:
    """Run a long-poll of `client`, make `change` once it waits; return its response and
    how long (trio time) it took to return after the change."""
    result: dict[str, Any] = {}

    async def poll() -> None:
        result["body"] = await h.sync(client, since=since, timeout_ms=timeout_ms)
        result["at"] = trio.current_time()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(poll)
        await h.settle()
        assert "body" not in result  # it waits
        changed_at = trio.current_time()
        await change()
    return result["body"], result["at"] - changed_at


async def test_a_presence_change_wakes_a_waiting_comember_at_once(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    alice = await h.client("alice")
    bob = await h.client("bob")
    await h.room(alice, bob)
    since = (await h.sync(bob))["next_batch"]

    async def alice_comes_online() -> None:
        await h.touch(alice)

    body, took = await wait_for_sync(h, bob, since, alice_comes_online)
    assert took == 0  # no clock advance at all
    assert (alice.user_id, ONLINE) in presence_events(body)

    async def alice_steps_away() -> None:
        await set_presence(h, alice, UNAVAILABLE)

    body, took = await wait_for_sync(h, bob, body["next_batch"], alice_steps_away)
    assert took == 0
    assert presence_events(body) == [(alice.user_id, UNAVAILABLE)]


async def test_expiry_wakes_a_waiting_comember_at_the_deadline(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    alice = await h.client("alice")
    bob = await h.client("bob")
    await h.room(alice, bob)
    await h.touch(alice)
    since = (await h.sync(bob))["next_batch"]
    body = await h.sync(bob, since=since, timeout_ms=3 * T)
    assert h.ms() == T
    assert presence_events(body) == [(alice.user_id, OFFLINE)]


async def test_clients_that_never_send_a_session_id_stay_online_while_they_sync(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    alice = await h.client("alice")
    bob = await h.client("bob")
    await h.room(alice, bob)
    since = (await h.sync(alice))["next_batch"]
    [sid] = await h.live_sessions(alice)
    # Long-polls longer than the session timeout, back to back, for ten timeouts.
    while h.ms() < 10 * T:
        body = await h.sync(alice, since=since, timeout_ms=int(2.5 * T))
        since = body["next_batch"]
    # And short ones, each starting just before the session would expire.
    for _ in range(5):
        await h.at(h.ms() + T - 1)
        since = (await h.sync(alice, since=since))["next_batch"]
    assert await h.live_sessions(alice) == [sid]
    assert h.changes(alice.user_id) == [ONLINE]
    assert await h.presence(alice.user_id) == ONLINE


# -- GET /presence/{userId}/status ----------------------------------------------------------


async def test_status_of_a_comember(make_harness: MakeHarness, autojump_clock: MockClock) -> None:
    h = await make_harness(session_timeout_ms=T)
    alice = await h.client("alice")
    bob = await h.client("bob")
    await h.room(alice, bob)
    await h.touch(alice)
    await h.at(1500)
    assert await h.engine.presence.status(bob.user_id, alice.user_id) == {
        "presence": ONLINE,
        "currently_active": True,
        "last_active_ago": 1500,
    }
    await set_presence(h, alice, UNAVAILABLE, "back soon")
    await h.at(1600)
    assert await h.engine.presence.status(bob.user_id, alice.user_id) == {
        "presence": UNAVAILABLE,
        "currently_active": False,
        "last_active_ago": 100,
        "status_msg": "back soon",
    }


async def test_status_is_refused_to_strangers_and_unknown_users(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    alice = await h.client("alice")
    carol = await h.client("carol")
    await h.touch(alice)
    with pytest.raises(Forbidden) as forbidden:
        await h.engine.presence.status(carol.user_id, alice.user_id)
    assert (forbidden.value.status, forbidden.value.errcode) == (403, "M_FORBIDDEN")
    with pytest.raises(NotFoundError) as not_found:
        await h.engine.presence.status(carol.user_id, "@nobody:test.local")
    assert (not_found.value.status, not_found.value.errcode) == (404, "M_NOT_FOUND")


# -- operator switch ------------------------------------------------------------------------


async def test_presence_disabled_publishes_nothing_and_reads_offline(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T, presence_enabled=False)
    alice = await h.client("alice")
    bob = await h.client("bob")
    await h.room(alice, bob)
    since = (await h.sync(bob))["next_batch"]
    sid = await h.touch(alice)
    await set_presence(h, alice, UNAVAILABLE, "x")
    await h.engine.sessions.end(alice.user_id, sid)
    await h.touch(alice)
    await h.at(T)
    assert h.published == []
    body = await h.sync(bob, since=since)
    assert body["presence"] == {"events": []}
    await h.touch(alice)
    assert await h.engine.presence.status(bob.user_id, alice.user_id) == {
        "presence": OFFLINE,
        "currently_active": False,
    }


async def test_harness_clock_reads_wall_milliseconds(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness()
    assert h.clock.now_ms() == START_MS
    await h.at(1234)
    assert h.clock.now_ms() == START_MS + 1234
