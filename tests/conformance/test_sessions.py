"""Sessions: the hot-path lookup, the device's active session, deadlines and expiry."""

from __future__ import annotations

import dataclasses
from functools import partial

import trio

from backends import Storage
from backends.protocols import AuthLookup, SessionStart
from backends.records import SessionRecord

from .records import ALICE, BOB, login, session
from .support import gather

CONCURRENCY = 12


async def _active(storage: Storage, token_value: str) -> SessionRecord | None:
    lookup = await storage.sessions.authenticate(token_value, None)
    assert lookup is not None
    return lookup.session


# -- authenticate ----------------------------------------------------------------------


async def test_authenticate_unknown_token_is_none(storage: Storage) -> None:
    assert await storage.sessions.authenticate("nope", None) is None
    await storage.sessions.start_session(session("s1"), replace=False)
    assert await storage.sessions.authenticate("nope", "s1") is None


async def test_authenticate_token_without_session(storage: Storage) -> None:
    access = await login(storage, "t")
    assert await storage.sessions.authenticate("t", None) == AuthLookup(token=access, session=None)
    assert await storage.sessions.authenticate("t", "unknown") == AuthLookup(
        token=access, session=None
    )


async def test_authenticate_finds_the_devices_active_session(storage: Storage) -> None:
    access = await login(storage, "t")
    await login(storage, "t2", ALICE, "OTHER")
    await login(storage, "tb", BOB, "DEV")
    mine = session("mine")
    await storage.sessions.start_session(mine, replace=False)
    await storage.sessions.start_session(session("other-device", ALICE, "OTHER"), replace=False)
    await storage.sessions.start_session(session("bobs", BOB, "DEV"), replace=False)
    assert await storage.sessions.authenticate("t", None) == AuthLookup(token=access, session=mine)
    assert await _active(storage, "t2") == session("other-device", ALICE, "OTHER")
    assert await _active(storage, "tb") == session("bobs", BOB, "DEV")


async def test_authenticate_returns_the_named_session_whoever_owns_it(storage: Storage) -> None:
    access = await login(storage, "t")
    await storage.sessions.start_session(session("mine"), replace=False)
    others = [session("bobs", BOB, "DEV"), session("other-device", ALICE, "OTHER")]
    for other in others:
        await storage.sessions.start_session(other, replace=False)
    for other in others:
        # The store does not check ownership: the caller does.
        assert await storage.sessions.authenticate("t", other.session_id) == AuthLookup(
            token=access, session=other
        )
    assert await storage.sessions.authenticate("t", "mine") == AuthLookup(
        token=access, session=session("mine")
    )


async def test_authenticate_returns_a_named_session_that_is_not_active(storage: Storage) -> None:
    await login(storage, "t")
    await storage.sessions.start_session(session("old"), replace=False)
    await storage.sessions.start_session(session("new"), replace=True)
    lookup = await storage.sessions.authenticate("t", "old")
    assert lookup is not None and lookup.session == session("old")
    assert await _active(storage, "t") == session("new")


async def test_authenticate_returns_the_stored_deadline_even_when_past(storage: Storage) -> None:
    await login(storage, "t")
    await storage.sessions.start_session(session("s", expires_at_ms=1), replace=False)
    # The caller checks the deadline; the store returns what it has.
    assert await _active(storage, "t") == session("s", expires_at_ms=1)


async def test_authenticate_after_end_session_has_no_active_session(storage: Storage) -> None:
    access = await login(storage, "t")
    await storage.sessions.start_session(session("s"), replace=False)
    await storage.sessions.end_session("s")
    assert await storage.sessions.authenticate("t", None) == AuthLookup(token=access, session=None)
    assert await storage.sessions.authenticate("t", "s") == AuthLookup(token=access, session=None)


async def test_authenticate_follows_token_revocation_not_sessions(storage: Storage) -> None:
    await login(storage, "t")
    await storage.sessions.start_session(session("s"), replace=False)
    relogin = await login(storage, "t-new")  # same device: "t" is revoked
    assert await storage.sessions.authenticate("t", None) is None
    # The active session belongs to the device, not to the token.
    assert await storage.sessions.authenticate("t-new", None) == AuthLookup(
        token=relogin, session=session("s")
    )
    await storage.devices.delete_device(ALICE, "DEV")
    assert await storage.sessions.authenticate("t-new", None) is None


# -- start_session ---------------------------------------------------------------------


async def test_implicit_start_creates_when_absent(storage: Storage) -> None:
    first = session("s1")
    assert await storage.sessions.start_session(first, replace=False) == SessionStart(
        session=first, replaced=None
    )
    assert await storage.sessions.get_session("s1") == first
    assert await storage.sessions.list_user_sessions(ALICE) == [first]


async def test_implicit_start_returns_the_active_session_and_stores_nothing(
    storage: Storage,
) -> None:
    first = session("s1", created_ts=1)
    await storage.sessions.start_session(first, replace=False)
    second = session("s2", created_ts=2, presence="unavailable")
    assert await storage.sessions.start_session(second, replace=False) == SessionStart(
        session=first, replaced=None
    )
    assert await storage.sessions.get_session("s2") is None
    assert await storage.sessions.list_user_sessions(ALICE) == [first]
    assert await storage.sessions.next_session_deadline() == first.expires_at_ms


async def test_explicit_start_replaces_and_keeps_the_replaced_one(storage: Storage) -> None:
    await login(storage, "t")
    first = session("s1", created_ts=1)
    assert await storage.sessions.start_session(first, replace=True) == SessionStart(
        session=first, replaced=None
    )
    second = session("s2", created_ts=2)
    assert await storage.sessions.start_session(second, replace=True) == SessionStart(
        session=second, replaced=first
    )
    assert await storage.sessions.get_session("s1") == first
    assert await storage.sessions.get_session("s2") == second
    assert await storage.sessions.list_user_sessions(ALICE) == [first, second]
    assert await _active(storage, "t") == second
    # The replaced session is no longer active: an implicit start finds the new one.
    assert await storage.sessions.start_session(session("s3"), replace=False) == SessionStart(
        session=second, replaced=None
    )


async def test_devices_have_independent_active_sessions(storage: Storage) -> None:
    sessions = [session("a1"), session("a2", ALICE, "OTHER"), session("b1", BOB, "DEV")]
    for record in sessions:
        assert await storage.sessions.start_session(record, replace=False) == SessionStart(
            session=record, replaced=None
        )
    assert await storage.sessions.start_session(
        session("b2", BOB, "DEV"), replace=True
    ) == SessionStart(session=session("b2", BOB, "DEV"), replaced=sessions[2])
    assert await storage.sessions.start_session(session("a3"), replace=False) == SessionStart(
        session=sessions[0], replaced=None
    )


async def test_ending_the_active_session_lets_an_implicit_start_create(storage: Storage) -> None:
    await login(storage, "t")
    await storage.sessions.start_session(session("old", created_ts=1), replace=False)
    await storage.sessions.start_session(session("new", created_ts=2), replace=True)
    await storage.sessions.end_session("new")
    # "old" is still stored but no longer active: it is not resurrected.
    assert await _active(storage, "t") is None
    fresh = session("fresh", created_ts=3)
    assert await storage.sessions.start_session(fresh, replace=False) == SessionStart(
        session=fresh, replaced=None
    )
    assert await _active(storage, "t") == fresh
    assert [s.session_id for s in await storage.sessions.list_user_sessions(ALICE)] == [
        "old",
        "fresh",
    ]


async def test_ending_a_replaced_session_keeps_the_active_one(storage: Storage) -> None:
    await login(storage, "t")
    await storage.sessions.start_session(session("old"), replace=False)
    await storage.sessions.start_session(session("new"), replace=True)
    assert await storage.sessions.end_session("old") == session("old")
    assert await _active(storage, "t") == session("new")


async def test_concurrent_implicit_starts_make_one_active_session(storage: Storage) -> None:
    await login(storage, "t")
    candidates = [session(f"s{i:02}") for i in range(CONCURRENCY)]
    results = await gather(
        *[partial(storage.sessions.start_session, c, replace=False) for c in candidates]
    )
    winners = {r.session.session_id for r in results}
    assert len(winners) == 1
    assert all(r.replaced is None for r in results)
    [winner] = winners
    assert [s.session_id for s in await storage.sessions.list_user_sessions(ALICE)] == [winner]
    active = await _active(storage, "t")
    assert active is not None and active.session_id == winner


async def test_concurrent_explicit_starts_replace_each_session_once(storage: Storage) -> None:
    await login(storage, "t")
    candidates = [session(f"s{i:02}") for i in range(CONCURRENCY)]
    results = await gather(
        *[partial(storage.sessions.start_session, c, replace=True) for c in candidates]
    )
    assert [r.session for r in results] == candidates
    replaced = [r.replaced.session_id for r in results if r.replaced is not None]
    # The starts happened in some order: each replaced the one before it.
    assert len(replaced) == CONCURRENCY - 1
    assert len(set(replaced)) == len(replaced)
    active = await _active(storage, "t")
    assert active is not None
    assert sorted([*replaced, active.session_id]) == [c.session_id for c in candidates]
    assert len(await storage.sessions.list_user_sessions(ALICE)) == CONCURRENCY


# -- get / touch / presence ------------------------------------------------------------


async def test_get_session(storage: Storage) -> None:
    assert await storage.sessions.get_session("s") is None
    record = session("s", presence="unavailable", status_msg="brb")
    await storage.sessions.start_session(record, replace=False)
    assert await storage.sessions.get_session("s") == record


async def test_touch_session_moves_activity_and_deadline(storage: Storage) -> None:
    await login(storage, "t")
    record = session("s", created_ts=10, expires_at_ms=100)
    await storage.sessions.start_session(record, replace=False)
    assert await storage.sessions.touch_session("s", 50, 500) is True
    touched = dataclasses.replace(record, last_active_ts=50, expires_at_ms=500)
    assert await storage.sessions.get_session("s") == touched
    assert await _active(storage, "t") == touched
    assert await storage.sessions.list_user_sessions(ALICE) == [touched]
    # A deadline may also move earlier.
    assert await storage.sessions.touch_session("s", 60, 80) is True
    assert await storage.sessions.get_session("s") == dataclasses.replace(
        record, last_active_ts=60, expires_at_ms=80
    )


async def test_touch_session_of_a_missing_session_is_false(storage: Storage) -> None:
    assert await storage.sessions.touch_session("nope", 1, 2) is False
    await storage.sessions.start_session(session("s"), replace=False)
    await storage.sessions.end_session("s")
    assert await storage.sessions.touch_session("s", 1, 2) is False
    assert await storage.sessions.get_session("s") is None
    assert await storage.sessions.next_session_deadline() is None


async def test_set_session_presence(storage: Storage) -> None:
    await login(storage, "t")
    record = session("s")
    await storage.sessions.start_session(record, replace=False)
    away = dataclasses.replace(record, presence="unavailable", status_msg="lunch")
    assert await storage.sessions.set_session_presence("s", "unavailable", "lunch") == away
    assert await storage.sessions.get_session("s") == away
    assert await _active(storage, "t") == away
    cleared = dataclasses.replace(record, presence="offline", status_msg=None)
    assert await storage.sessions.set_session_presence("s", "offline", None) == cleared
    assert await storage.sessions.get_session("s") == cleared
    assert await storage.sessions.set_session_presence("nope", "online", None) is None
    await storage.sessions.end_session("s")
    assert await storage.sessions.set_session_presence("s", "online", None) is None


# -- ending ----------------------------------------------------------------------------


async def test_end_session_returns_the_record_once(storage: Storage) -> None:
    record = session("s")
    await storage.sessions.start_session(record, replace=False)
    await storage.sessions.touch_session("s", 20_000, 200_000)
    touched = dataclasses.replace(record, last_active_ts=20_000, expires_at_ms=200_000)
    assert await storage.sessions.end_session("s") == touched
    assert await storage.sessions.end_session("s") is None
    assert await storage.sessions.end_session("never") is None
    assert await storage.sessions.get_session("s") is None
    assert await storage.sessions.list_user_sessions(ALICE) == []
    assert await storage.sessions.next_session_deadline() is None
    assert await storage.sessions.take_expired_sessions(10**15, 100) == []


async def test_concurrent_end_session_is_exactly_once(storage: Storage) -> None:
    records = [session(f"s{i}", ALICE, f"D{i}") for i in range(3)]
    for record in records:
        await storage.sessions.start_session(record, replace=False)
    for record in records:
        results = await gather(
            *[partial(storage.sessions.end_session, record.session_id)] * CONCURRENCY
        )
        assert [r for r in results if r is not None] == [record]
    assert await storage.sessions.list_user_sessions(ALICE) == []


async def test_end_device_sessions_only_ends_that_device(storage: Storage) -> None:
    await login(storage, "t")
    await login(storage, "t-other", ALICE, "OTHER")
    await login(storage, "tb", BOB, "DEV")
    mine = [session("a1", created_ts=1), session("a2", created_ts=2)]
    await storage.sessions.start_session(mine[0], replace=False)
    await storage.sessions.start_session(mine[1], replace=True)
    other_device = session("o1", ALICE, "OTHER", created_ts=3)
    same_device_of_bob = session("b1", BOB, "DEV", created_ts=4)
    await storage.sessions.start_session(other_device, replace=False)
    await storage.sessions.start_session(same_device_of_bob, replace=False)

    ended = await storage.sessions.end_device_sessions(ALICE, "DEV")
    assert sorted(ended, key=lambda s: s.session_id) == mine
    assert await storage.sessions.end_device_sessions(ALICE, "DEV") == []
    assert await storage.sessions.list_user_sessions(ALICE) == [other_device]
    assert await storage.sessions.list_user_sessions(BOB) == [same_device_of_bob]
    assert await _active(storage, "t") is None
    assert await _active(storage, "t-other") == other_device
    assert await _active(storage, "tb") == same_device_of_bob
    fresh = session("a3")
    assert await storage.sessions.start_session(fresh, replace=False) == SessionStart(
        session=fresh, replaced=None
    )


async def test_end_device_sessions_of_an_unknown_device(storage: Storage) -> None:
    assert await storage.sessions.end_device_sessions(ALICE, "NOPE") == []


async def test_list_user_sessions_orders_by_creation_then_id(storage: Storage) -> None:
    records = [
        session("b", ALICE, "D1", created_ts=30),
        session("z", ALICE, "D2", created_ts=10),
        session("a", ALICE, "D3", created_ts=30),
        session("m", ALICE, "D4", created_ts=20),
        session("bob", BOB, "D1", created_ts=5),
    ]
    for record in records:
        await storage.sessions.start_session(record, replace=False)
    listed = await storage.sessions.list_user_sessions(ALICE)
    assert [s.session_id for s in listed] == ["z", "m", "a", "b"]
    assert await storage.sessions.list_user_sessions(BOB) == [records[-1]]
    assert await storage.sessions.list_user_sessions("@nobody:example.org") == []


# -- expiry ----------------------------------------------------------------------------


async def test_take_expired_sessions_at_the_boundary(storage: Storage) -> None:
    record = session("s", expires_at_ms=1_000)
    await storage.sessions.start_session(record, replace=False)
    assert await storage.sessions.take_expired_sessions(999, 10) == []
    assert await storage.sessions.get_session("s") == record
    assert await storage.sessions.take_expired_sessions(1_000, 10) == [record]
    assert await storage.sessions.get_session("s") is None
    assert await storage.sessions.take_expired_sessions(1_000, 10) == []
    assert await storage.sessions.next_session_deadline() is None


async def test_take_expired_sessions_earliest_first_within_limit(storage: Storage) -> None:
    deadlines = [500, 100, 400, 100, 300, 900]
    records = [
        session(f"s{i}", ALICE, f"D{i}", expires_at_ms=deadline)
        for i, deadline in enumerate(deadlines)
    ]
    for record in records:
        await storage.sessions.start_session(record, replace=False)
    first = await storage.sessions.take_expired_sessions(450, 3)
    assert [s.expires_at_ms for s in first] == [100, 100, 300]
    assert {s.session_id for s in first} == {"s1", "s3", "s4"}
    assert await storage.sessions.take_expired_sessions(450, 3) == [records[2]]
    assert await storage.sessions.take_expired_sessions(450, 3) == []
    assert await storage.sessions.next_session_deadline() == 500
    assert await storage.sessions.take_expired_sessions(10_000, 1) == [records[0]]
    assert await storage.sessions.take_expired_sessions(10_000, 1) == [records[5]]
    assert await storage.sessions.list_user_sessions(ALICE) == []


async def test_take_expired_sessions_ends_the_active_pointer(storage: Storage) -> None:
    await login(storage, "t")
    record = session("s", expires_at_ms=100)
    await storage.sessions.start_session(record, replace=False)
    assert await storage.sessions.take_expired_sessions(100, 10) == [record]
    assert await _active(storage, "t") is None
    fresh = session("fresh")
    assert await storage.sessions.start_session(fresh, replace=False) == SessionStart(
        session=fresh, replaced=None
    )


async def test_touched_sessions_expire_by_their_new_deadline(storage: Storage) -> None:
    later = session("later", ALICE, "D1", expires_at_ms=100)
    sooner = session("sooner", ALICE, "D2", expires_at_ms=1_000)
    for record in (later, sooner):
        await storage.sessions.start_session(record, replace=False)
    assert await storage.sessions.touch_session("later", 50, 2_000)
    assert await storage.sessions.touch_session("sooner", 60, 200)
    assert await storage.sessions.next_session_deadline() == 200
    # The old deadline of "later" (100) has passed: it must not be taken.
    assert await storage.sessions.take_expired_sessions(150, 10) == []
    assert await storage.sessions.take_expired_sessions(1_999, 10) == [
        dataclasses.replace(sooner, last_active_ts=60, expires_at_ms=200)
    ]
    assert await storage.sessions.next_session_deadline() == 2_000
    assert await storage.sessions.take_expired_sessions(2_000, 10) == [
        dataclasses.replace(later, last_active_ts=50, expires_at_ms=2_000)
    ]


async def test_concurrent_takers_take_each_session_once(storage: Storage) -> None:
    count = 40
    records = [
        session(f"s{i:02}", ALICE, f"D{i:02}", expires_at_ms=100 + i % 7) for i in range(count)
    ]
    await gather(*[partial(storage.sessions.start_session, r, replace=False) for r in records])
    taken: list[list[SessionRecord]] = []

    async def taker() -> None:
        while batch := await storage.sessions.take_expired_sessions(1_000, 3):
            assert len(batch) <= 3
            deadlines = [s.expires_at_ms for s in batch]
            assert deadlines == sorted(deadlines)
            taken.append(batch)
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        for _ in range(6):
            nursery.start_soon(taker)
    ids = [s.session_id for batch in taken for s in batch]
    assert sorted(ids) == sorted(r.session_id for r in records)
    assert await storage.sessions.next_session_deadline() is None


async def test_end_session_racing_takers_is_exactly_once(storage: Storage) -> None:
    records = [session(f"s{i:02}", ALICE, f"D{i:02}", expires_at_ms=100) for i in range(20)]
    for record in records:
        await storage.sessions.start_session(record, replace=False)
    jobs = [partial(storage.sessions.take_expired_sessions, 100, 4) for _ in range(5)]
    ends = [partial(storage.sessions.end_session, r.session_id) for r in records]
    results = await gather(*jobs, *ends)
    got: list[str] = []
    for result in results:
        if isinstance(result, list):
            got.extend(s.session_id for s in result)
        elif isinstance(result, SessionRecord):
            got.append(result.session_id)
    assert sorted(got) == [r.session_id for r in records]


async def test_many_live_sessions_none_due(storage: Storage) -> None:
    count = 1_000
    records = [
        session(f"s{i:04}", f"@u{i % 50}:example.org", f"D{i}", expires_at_ms=10_000 + i)
        for i in range(count)
    ]
    for start in range(0, count, 100):
        await gather(
            *[
                partial(storage.sessions.start_session, r, replace=False)
                for r in records[start : start + 100]
            ]
        )
    assert await storage.sessions.take_expired_sessions(9_999, 100) == []
    assert await storage.sessions.next_session_deadline() == 10_000
    assert await storage.sessions.take_expired_sessions(10_002, 100) == records[:3]
    assert await storage.sessions.next_session_deadline() == 10_003


async def test_next_session_deadline_follows_starts_touches_and_ends(storage: Storage) -> None:
    assert await storage.sessions.next_session_deadline() is None
    await storage.sessions.start_session(
        session("a", ALICE, "D1", expires_at_ms=500), replace=False
    )
    assert await storage.sessions.next_session_deadline() == 500
    await storage.sessions.start_session(
        session("b", ALICE, "D2", expires_at_ms=300), replace=False
    )
    assert await storage.sessions.next_session_deadline() == 300
    # An implicit start that finds an active session stores nothing.
    await storage.sessions.start_session(session("c", ALICE, "D1", expires_at_ms=1), replace=False)
    assert await storage.sessions.next_session_deadline() == 300
    await storage.sessions.touch_session("b", 0, 700)
    assert await storage.sessions.next_session_deadline() == 500
    await storage.sessions.touch_session("a", 0, 100)
    assert await storage.sessions.next_session_deadline() == 100
    await storage.sessions.end_session("a")
    assert await storage.sessions.next_session_deadline() == 700
    await storage.sessions.end_device_sessions(ALICE, "D2")
    assert await storage.sessions.next_session_deadline() is None
