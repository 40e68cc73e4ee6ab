"""The session engine: implicit and explicit sessions, ending, expiry at its exact
boundary, stale and foreign session ids, requests in flight, touch coalescing."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from trio.testing import MockClock

from backends.records import Presence
from homeserver.engine.sessions import SessionExpired
from homeserver.errors import Forbidden, InvalidParam, MatrixError, NotFoundError, UnknownToken
from tests.engine.conftest import Client, Harness, MakeHarness

T = 10_000  # session_timeout_ms of most tests


def assert_raised(exc: MatrixError, status: int, errcode: str) -> None:
    assert (exc.status, exc.errcode) == (status, errcode)
    assert exc.message


def assert_expired(exc: SessionExpired, session_id: str) -> None:
    assert_raised(exc, 409, "M_SESSION_EXPIRED")
    assert exc.to_json() == {
        "errcode": "M_SESSION_EXPIRED",
        "error": exc.message,
        "session_id": session_id,
    }
    assert exc.headers == {"Matrix-Session": session_id}


async def expired(h: Harness, client: Client, session_id: str) -> SessionExpired:
    with pytest.raises(SessionExpired) as info:
        await h.touch(client, session_id)
    return info.value


async def typing_in(h: Harness, room_id: str) -> tuple[str, ...]:
    return h.engine.typing.typing_in(room_id)


async def start_typing(h: Harness, client: Client, room_id: str, session_id: str) -> None:
    async with h.request(client, session_id) as who:
        await h.engine.typing.set_typing(who, room_id, client.user_id, True, 1_000_000)


# -- implicit sessions -------------------------------------------------------------------


async def test_first_request_starts_an_online_session_later_ones_reuse_it(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    alice = await h.client("alice")
    assert await h.live_sessions(alice) == []

    sid = await h.touch(alice)
    session = await h.storage.sessions.get_session(sid)
    assert session is not None
    assert (session.user_id, session.device_id) == (alice.user_id, alice.device_id)
    assert (session.presence, session.status_msg) == (Presence.ONLINE, None)
    assert h.changes(alice.user_id) == [Presence.ONLINE]

    await h.at(500)
    assert await h.touch(alice) == sid  # no id: the device's active session
    assert await h.touch(alice, sid) == sid  # the id named explicitly
    assert await h.live_sessions(alice) == [sid]
    assert h.changes(alice.user_id) == [Presence.ONLINE]


async def test_each_device_has_its_own_active_session(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    phone = await h.client("alice", "PHONE")
    laptop = await h.client("alice", "LAPTOP")
    on_phone = await h.touch(phone)
    on_laptop = await h.touch(laptop)
    assert on_phone != on_laptop
    assert await h.touch(phone) == on_phone
    assert await h.touch(laptop) == on_laptop
    assert h.changes(phone.user_id) == [Presence.ONLINE]


async def test_unknown_token_is_refused_before_any_session_work(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    for session_id in (None, "abc"):
        with pytest.raises(UnknownToken) as info:
            await h.engine.sessions.begin_request("no-such-token", session_id)
        assert_raised(info.value, 401, "M_UNKNOWN_TOKEN")
    assert h.published == []


# -- explicit start ------------------------------------------------------------------------


async def test_explicit_start_replaces_the_active_session_and_stops_its_typing(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    alice = await h.client("alice")
    bob = await h.client("bob")
    room_id = await h.room(alice, bob)
    old = await h.touch(alice)
    await start_typing(h, alice, room_id, old)
    assert await typing_in(h, room_id) == (alice.user_id,)

    new = await h.engine.sessions.start(
        alice.user_id, alice.device_id, Presence.UNAVAILABLE, "brb", replace=True
    )
    assert new.session_id != old
    assert (new.presence, new.status_msg) == (Presence.UNAVAILABLE, "brb")
    assert new.expires_at_ms == h.clock.now_ms() + T
    assert await h.live_sessions(alice) == [new.session_id]
    assert await typing_in(h, room_id) == ()
    # One change: online -> unavailable (no offline in between).
    assert [(p.presence, p.status_msg) for p in h.published] == [
        (Presence.ONLINE, None),
        (Presence.UNAVAILABLE, "brb"),
    ]
    # Requests without an id now run in the new session; the old id is stale.
    assert await h.touch(alice) == new.session_id
    assert_expired(await expired(h, alice, old), new.session_id)


async def test_implicit_start_returns_the_active_session(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    alice = await h.client("alice")
    sid = await h.touch(alice)
    again = await h.engine.sessions.start(
        alice.user_id, alice.device_id, Presence.OFFLINE, None, replace=False
    )
    assert (again.session_id, again.presence) == (sid, Presence.ONLINE)
    assert h.changes(alice.user_id) == [Presence.ONLINE]


# -- explicit end ---------------------------------------------------------------------------


async def test_end_stops_typing_and_recomputes_presence_at_once(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    alice = await h.client("alice")
    bob = await h.client("bob")
    room_id = await h.room(alice, bob)
    sid = await h.touch(alice)
    await start_typing(h, alice, room_id, sid)
    await h.at(1000)

    await h.engine.sessions.end(alice.user_id, sid)
    assert await h.live_sessions(alice) == []
    assert await typing_in(h, room_id) == ()
    assert [(p.presence, p.at_ms) for p in h.published] == [
        (Presence.ONLINE, 0),
        (Presence.OFFLINE, 1000),
    ]
    # Already ended.
    with pytest.raises(NotFoundError) as info:
        await h.engine.sessions.end(alice.user_id, sid)
    assert_raised(info.value, 404, "M_NOT_FOUND")


async def test_end_unknown_or_foreign_session(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    alice = await h.client("alice")
    bob = await h.client("bob")
    bobs = await h.touch(bob)
    with pytest.raises(NotFoundError) as not_found:
        await h.engine.sessions.end(alice.user_id, "no-such-session")
    assert_raised(not_found.value, 404, "M_NOT_FOUND")
    with pytest.raises(Forbidden) as forbidden:
        await h.engine.sessions.end(alice.user_id, bobs)
    assert_raised(forbidden.value, 403, "M_FORBIDDEN")
    assert await h.live_sessions(bob) == [bobs]
    assert h.changes(bob.user_id) == [Presence.ONLINE]


async def test_end_of_a_session_past_its_deadline_is_not_found(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    # Without the expiry loop (as when another process's loop has not reached it yet),
    # a session past its deadline is still stored, but it has ended all the same.
    h = await make_harness(session_timeout_ms=T, run_loops=False)
    alice = await h.client("alice")
    sid = await h.touch(alice)
    await h.at(T)
    assert await h.live_sessions(alice) == [sid]
    with pytest.raises(NotFoundError):
        await h.engine.sessions.end(alice.user_id, sid)
    assert await h.live_sessions(alice) == []
    assert h.changes(alice.user_id) == [Presence.ONLINE, Presence.OFFLINE]


async def test_end_device_ends_only_that_devices_sessions(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    phone = await h.client("alice", "PHONE")
    laptop = await h.client("alice", "LAPTOP")
    bob = await h.client("bob")
    room_id = await h.room(phone, bob)
    on_phone = await h.touch(phone)
    on_laptop = await h.touch(laptop)
    await h.touch(bob)
    await start_typing(h, phone, room_id, on_phone)

    await h.engine.sessions.end_device(phone.user_id, "PHONE")
    assert await h.live_sessions(phone) == []
    assert await h.live_sessions(laptop) == [on_laptop]
    assert await typing_in(h, room_id) == ()
    assert h.changes(phone.user_id) == [Presence.ONLINE]  # the laptop keeps it online

    await h.engine.sessions.end_device(phone.user_id, "LAPTOP")
    assert h.changes(phone.user_id) == [Presence.ONLINE, Presence.OFFLINE]
    assert len(await h.live_sessions(bob)) == 1


async def test_end_user_ends_every_session_with_one_presence_change(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    phone = await h.client("alice", "PHONE")
    laptop = await h.client("alice", "LAPTOP")
    bob = await h.client("bob")
    await h.engine.sessions.start(phone.user_id, "PHONE", Presence.ONLINE, None, replace=True)
    await h.at(1)  # sessions are ended oldest first: the online one, then the away one
    await h.engine.sessions.start(
        laptop.user_id, "LAPTOP", Presence.UNAVAILABLE, None, replace=True
    )
    bobs = await h.touch(bob)

    await h.engine.sessions.end_user(phone.user_id)
    assert await h.storage.sessions.list_user_sessions(phone.user_id) == []
    # Straight to offline: never "unavailable" on the way.
    assert h.changes(phone.user_id) == [Presence.ONLINE, Presence.OFFLINE]
    assert await h.live_sessions(bob) == [bobs]


# -- expiry ---------------------------------------------------------------------------------


@pytest.mark.parametrize("timeout_ms", [1000, T, 60_000])
async def test_session_expires_exactly_timeout_after_its_last_request(
    make_harness: MakeHarness, autojump_clock: MockClock, timeout_ms: int
) -> None:
    h = await make_harness(session_timeout_ms=timeout_ms)
    alice = await h.client("alice")
    sid = await h.touch(alice)

    await h.at(timeout_ms - 1)
    assert await h.live_sessions(alice) == [sid]
    assert await h.presence(alice.user_id) == Presence.ONLINE

    await h.at(timeout_ms)
    assert await h.live_sessions(alice) == []
    assert [(p.presence, p.at_ms) for p in h.published] == [
        (Presence.ONLINE, 0),
        (Presence.OFFLINE, timeout_ms),
    ]

    await h.at(timeout_ms + 1)
    error = await expired(h, alice, sid)
    [new] = await h.live_sessions(alice)
    assert new != sid
    assert_expired(error, new)


async def test_a_request_with_the_id_just_before_the_deadline_extends_it(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    alice = await h.client("alice")
    sid = await h.touch(alice)
    await h.at(T - 1)
    assert await h.touch(alice, sid) == sid
    await h.at(2 * T - 2)
    assert await h.live_sessions(alice) == [sid]
    await h.at(2 * T - 1)
    assert await h.live_sessions(alice) == []
    assert h.changes(alice.user_id) == [Presence.ONLINE, Presence.OFFLINE]


async def test_expiry_counts_from_the_end_of_the_last_request(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    alice = await h.client("alice")
    async with h.request(alice) as who:
        await h.at(5000)
    await h.at(5000 + T - 1)
    assert await h.live_sessions(alice) == [who.session_id]
    await h.at(5000 + T)
    assert await h.live_sessions(alice) == []


@pytest.mark.parametrize("run_loops", [True, False])
async def test_a_request_at_the_deadline_is_too_late(
    make_harness: MakeHarness, autojump_clock: MockClock, run_loops: bool
) -> None:
    # Whether or not the expiry loop has taken the session yet, at its deadline it is over.
    h = await make_harness(session_timeout_ms=T, run_loops=run_loops)
    alice = await h.client("alice")
    sid = await h.touch(alice)
    await h.at(T)
    error = await expired(h, alice, sid)
    [new] = await h.live_sessions(alice)
    assert new != sid
    assert_expired(error, new)
    assert h.changes(alice.user_id) == [Presence.ONLINE, Presence.OFFLINE, Presence.ONLINE]


async def test_a_request_without_id_after_expiry_runs_in_a_new_session(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    alice = await h.client("alice")
    sid = await h.touch(alice)
    await h.at(T + 5)
    new = await h.touch(alice)
    assert new != sid
    assert await h.live_sessions(alice) == [new]
    assert h.changes(alice.user_id) == [Presence.ONLINE, Presence.OFFLINE, Presence.ONLINE]


async def test_expired_session_id_with_no_active_session_starts_one_online_without_typing(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    alice = await h.client("alice")
    bob = await h.client("bob")
    room_id = await h.room(alice, bob)
    old = await h.engine.sessions.start(
        alice.user_id, alice.device_id, Presence.UNAVAILABLE, "away", replace=True
    )
    await start_typing(h, alice, room_id, old.session_id)
    await h.at(T)
    assert await typing_in(h, room_id) == ()  # expiry stopped it

    error = await expired(h, alice, old.session_id)
    [new_id] = await h.live_sessions(alice)
    assert_expired(error, new_id)
    new = await h.storage.sessions.get_session(new_id)
    assert new is not None
    assert (new.presence, new.status_msg) == (Presence.ONLINE, None)
    assert await typing_in(h, room_id) == ()
    assert await h.presence(alice.user_id) == Presence.ONLINE


async def test_a_stale_id_gets_the_active_session_and_never_ends_it(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    alice = await h.client("alice")
    bob = await h.client("bob")
    room_id = await h.room(alice, bob)
    stale = await h.touch(alice)
    newer = await h.engine.sessions.start(
        alice.user_id, alice.device_id, Presence.ONLINE, None, replace=True
    )
    await start_typing(h, alice, room_id, newer.session_id)
    published = list(h.published)

    await h.at(100)
    assert_expired(await expired(h, alice, stale), newer.session_id)
    assert_expired(await expired(h, alice, "never-existed"), newer.session_id)
    assert await h.live_sessions(alice) == [newer.session_id]
    assert await typing_in(h, room_id) == (alice.user_id,)
    assert h.published == published


async def test_a_session_id_of_another_device_or_user_is_forbidden(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    phone = await h.client("alice", "PHONE")
    laptop = await h.client("alice", "LAPTOP")
    bob = await h.client("bob")
    on_laptop = await h.touch(laptop)
    bobs = await h.touch(bob)
    before = await h.storage.sessions.get_session(on_laptop)
    await h.at(T - 1)
    for session_id in (on_laptop, bobs):
        with pytest.raises(Forbidden) as info:
            await h.touch(phone, session_id)
        assert_raised(info.value, 403, "M_FORBIDDEN")
    # Nothing happened: no session for the phone, the laptop's deadline did not move.
    assert await h.live_sessions(phone) == []
    assert await h.storage.sessions.get_session(on_laptop) == before
    await h.at(T)
    assert await h.live_sessions(laptop) == []


@pytest.mark.parametrize("session_id", ["", "has space", "a/b", "x" * 65, "sé", "a\nb"])
async def test_a_malformed_session_id_is_invalid(
    make_harness: MakeHarness, autojump_clock: MockClock, session_id: str
) -> None:
    h = await make_harness(session_timeout_ms=T)
    alice = await h.client("alice")
    with pytest.raises(InvalidParam) as info:
        await h.touch(alice, session_id)
    assert_raised(info.value, 400, "M_INVALID_PARAM")
    assert await h.live_sessions(alice) == []
    assert h.published == []


# -- requests in flight -------------------------------------------------------------------


async def test_a_long_poll_keeps_its_session_alive(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    alice = await h.client("alice")
    first = await h.sync(alice)
    sid = await h.touch(alice)
    await h.sync(alice, since=first["next_batch"], timeout_ms=3 * T, session_id=sid)
    assert h.ms() == 3 * T
    assert await h.live_sessions(alice) == [sid]
    assert h.changes(alice.user_id) == [Presence.ONLINE]
    await h.at(4 * T - 1)
    assert await h.live_sessions(alice) == [sid]
    await h.at(4 * T)
    assert await h.live_sessions(alice) == []


@pytest.mark.parametrize("idle_ms", [T // 3, T // 2, T - 100, T - 1])
async def test_a_request_started_near_the_deadline_keeps_its_session_alive(
    make_harness: MakeHarness, autojump_clock: MockClock, idle_ms: int
) -> None:
    h = await make_harness(session_timeout_ms=T)
    alice = await h.client("alice")
    sid = await h.touch(alice)
    await h.at(idle_ms)
    async with h.request(alice, sid):
        await h.at(idle_ms + 2 * T)
        assert await h.live_sessions(alice) == [sid]
    assert h.changes(alice.user_id) == [Presence.ONLINE]
    end = idle_ms + 2 * T
    await h.at(end + T - 1)
    assert await h.live_sessions(alice) == [sid]
    await h.at(end + T)
    assert await h.live_sessions(alice) == []


async def test_overlapping_requests_keep_the_session_until_the_last_ends(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    alice = await h.client("alice")
    sid = await h.touch(alice)
    ended: list[int] = []

    async def one_request(duration_ms: int) -> None:
        async with h.request(alice, sid):
            await trio.sleep(duration_ms / 1000)
        ended.append(h.ms())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one_request, 3 * T)
        nursery.start_soon(one_request, T)
    assert ended == [T, 3 * T]
    await h.at(4 * T - 1)
    assert await h.live_sessions(alice) == [sid]
    await h.at(4 * T)
    assert await h.live_sessions(alice) == []
    assert h.changes(alice.user_id) == [Presence.ONLINE, Presence.OFFLINE]


# -- touch coalescing ---------------------------------------------------------------------


async def test_touches_are_coalesced_yet_never_expire_a_session_early(
    make_harness: MakeHarness, autojump_clock: MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = await make_harness(session_timeout_ms=T, session_touch_coalesce_ms=1000)
    alice = await h.client("alice")
    writes: list[int] = []
    touch = h.storage.sessions.touch_session

    async def counting(*args: Any) -> bool:
        writes.append(h.ms())
        return await touch(*args)

    monkeypatch.setattr(h.storage.sessions, "touch_session", counting)
    sid = await h.touch(alice)  # starts the session: a start, not a touch
    # 100 requests a second for five seconds.
    for ms in range(0, 5000, 10):
        await h.at(ms)
        assert await h.touch(alice, sid) == sid
    last = 4990
    assert 1 <= len(writes) <= 5
    for second in range(5):
        assert len([w for w in writes if second * 1000 <= w < (second + 1) * 1000]) <= 1
    # Never earlier than the last request's end + the timeout...
    await h.at(last + T - 1)
    assert await h.live_sessions(alice) == [sid]
    assert h.changes(alice.user_id) == [Presence.ONLINE]
    # ...and at most the coalescing window later.
    await h.at(last + T + 1000)
    assert await h.live_sessions(alice) == []


async def test_without_coalescing_every_request_moves_the_deadline(
    make_harness: MakeHarness, autojump_clock: MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = await make_harness(session_timeout_ms=T)
    alice = await h.client("alice")
    writes: list[int] = []
    touch = h.storage.sessions.touch_session

    async def counting(*args: Any) -> bool:
        writes.append(h.ms())
        return await touch(*args)

    monkeypatch.setattr(h.storage.sessions, "touch_session", counting)
    await h.touch(alice)
    for ms in (1, 2, 3):
        await h.at(ms)
        await h.touch(alice)
    assert writes == [1, 2, 3]


# -- operator switch ----------------------------------------------------------------------


async def test_with_sessions_disabled_requests_run_in_no_session(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T, sessions_enabled=False)
    alice = await h.client("alice")
    lease = await h.engine.sessions.begin_request(alice.token, None)
    who, deadline = lease.requester, lease._stored_deadline
    assert (who.user_id, who.device_id, who.session_id, deadline) == (
        alice.user_id,
        alice.device_id,
        None,
        None,
    )
    # A session id sent anyway is ignored rather than refused.
    lease = await h.engine.sessions.begin_request(alice.token, "whatever id")
    assert lease.requester.session_id is None
    assert lease._stored_deadline is None
    await h.engine.sessions.finish_request(lease)
    assert await h.live_sessions(alice) == []
    assert h.published == []
    with pytest.raises(UnknownToken):
        await h.engine.sessions.begin_request("nope", None)


async def test_concurrent_requests_of_a_session_write_one_touch(
    make_harness: MakeHarness, autojump_clock: MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twenty requests that read the same stored deadline and end together, past the
    coalescing window, move it once (not once each: a write stampede on SQLite)."""
    h = await make_harness(session_timeout_ms=T, session_touch_coalesce_ms=1000)
    alice = await h.client("alice")
    sid = await h.touch(alice)
    writes: list[int] = []
    touch = h.storage.sessions.touch_session

    async def counting(*args: Any) -> bool:
        writes.append(h.ms())
        return await touch(*args)

    monkeypatch.setattr(h.storage.sessions, "touch_session", counting)
    sessions = h.engine.sessions
    started = []
    for _ in range(20):
        started.append(await sessions.begin_request(alice.token, sid))
    await h.at(5000)
    # While they run, the keepalive loop may move the deadline (once per pass).
    before = len(writes)
    assert before <= 2
    for lease in started:
        await sessions.finish_request(lease)
    assert writes[before:] == [5000]  # one write for all twenty, not one each
    assert sessions.in_flight_requests == 0
    # The one write still keeps the session alive for the timeout after the requests.
    await h.at(5000 + T - 1)
    assert await h.live_sessions(alice) == [sid]
