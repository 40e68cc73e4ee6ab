"""Typing: per session, capped, stopped by its timeout, typing:false, or the end or
expiry of its session; every change reaches room members' /sync and wakes it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from backends.records import JsonDict, Presence
from homeserver.errors import Forbidden
from tests.engine.conftest import Client, Harness, MakeHarness, typing_users

T = 10_000


async def set_typing(
    h: Harness,
    client: Client,
    room_id: str,
    typing: bool,
    timeout_ms: int = 5000,
    *,
    user_id: str | None = None,
    session_id: str | None = None,
) -> None:
    async with h.request(client, session_id) as who:
        await h.engine.typing.set_typing(
            who, room_id, user_id or client.user_id, typing, timeout_ms
        )


async def typing_in(h: Harness, room_id: str) -> tuple[str, ...]:
    return h.engine.typing.typing_in(room_id)


class Watcher:
    """A member following a room through incremental /sync."""

    def __init__(self, h: Harness, client: Client, room_id: str) -> None:
        self.h, self.client, self.room_id = h, client, room_id
        self.since = ""

    async def begin(self) -> None:
        self.since = (await self.h.sync(self.client))["next_batch"]

    async def poll(self, timeout_ms: int = 0) -> list[list[str]] | None:
        body = await self.h.sync(self.client, since=self.since, timeout_ms=timeout_ms)
        self.since = body["next_batch"]
        return typing_users(body, self.room_id)

    async def wait_across(self, change: Callable[[], Awaitable[None]]) -> tuple[JsonDict, float]:
        """Long-poll; make `change` once it waits; the response and the trio time it took
        to return after the change."""
        result: dict[str, Any] = {}

        async def run() -> None:
            body = await self.h.sync(self.client, since=self.since, timeout_ms=60_000)
            result["body"], result["at"] = body, trio.current_time()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            await self.h.settle()
            assert "body" not in result
            changed_at = trio.current_time()
            await change()
        self.since = result["body"]["next_batch"]
        return result["body"], result["at"] - changed_at


async def setup(h: Harness) -> tuple[Client, Client, str, Watcher]:
    alice = await h.client("alice")
    bob = await h.client("bob")
    room_id = await h.room(alice, bob)
    watcher = Watcher(h, bob, room_id)
    await watcher.begin()
    return alice, bob, room_id, watcher


async def test_typing_reaches_members_and_typing_false_stops_it(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    alice, _bob, room_id, bob_sees = await setup(h)
    await bob_sees.poll()

    await set_typing(h, alice, room_id, True)
    assert await bob_sees.poll() == [[alice.user_id]]
    assert await bob_sees.poll() is None  # seen once
    await set_typing(h, alice, room_id, True)  # a refresh is no change
    assert await bob_sees.poll() is None
    await set_typing(h, alice, room_id, False)
    assert await bob_sees.poll() == [[]]
    await set_typing(h, alice, room_id, False)  # not typing: no change
    assert await bob_sees.poll() is None
    assert await typing_in(h, room_id) == ()


async def test_every_typing_change_wakes_waiting_members_at_once(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    alice, _bob, room_id, bob_sees = await setup(h)
    await bob_sees.poll()

    async def start() -> None:
        await set_typing(h, alice, room_id, True, 60_000)

    async def stop() -> None:
        await set_typing(h, alice, room_id, False)

    body, took = await bob_sees.wait_across(start)
    assert (took, typing_users(body, room_id)) == (0, [[alice.user_id]])
    body, took = await bob_sees.wait_across(stop)
    assert (took, typing_users(body, room_id)) == (0, [[]])


async def test_typing_stops_exactly_at_its_timeout(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=60_000)
    alice, _bob, room_id, bob_sees = await setup(h)
    await bob_sees.poll()
    await set_typing(h, alice, room_id, True, 5000)
    assert await bob_sees.poll() == [[alice.user_id]]
    await h.at(4999)
    assert await typing_in(h, room_id) == (alice.user_id,)
    # A member waiting across the deadline is woken at it.
    assert await bob_sees.poll(timeout_ms=30_000) == [[]]
    assert h.ms() == 5000
    await h.at(5001)
    assert await typing_in(h, room_id) == ()


async def test_a_refresh_moves_the_deadline(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=60_000)
    alice, _bob, room_id, _ = await setup(h)
    await set_typing(h, alice, room_id, True, 5000)
    await h.at(4000)
    await set_typing(h, alice, room_id, True, 5000)
    await h.at(8999)
    assert await typing_in(h, room_id) == (alice.user_id,)
    await h.at(9000)
    assert await typing_in(h, room_id) == ()


@pytest.mark.parametrize("asked_ms", [2000, 2001, 10**9])
async def test_the_timeout_is_capped_by_config(
    make_harness: MakeHarness, autojump_clock: MockClock, asked_ms: int
) -> None:
    h = await make_harness(session_timeout_ms=60_000, typing_timeout_cap_ms=2000)
    alice, _bob, room_id, _ = await setup(h)
    await set_typing(h, alice, room_id, True, asked_ms)
    await h.at(1999)
    assert await typing_in(h, room_id) == (alice.user_id,)
    await h.at(2000)
    assert await typing_in(h, room_id) == ()


async def test_the_default_cap_is_thirty_seconds(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=60_000)
    alice, _bob, room_id, _ = await setup(h)
    await set_typing(h, alice, room_id, True, 10**9)
    await h.at(29_999)
    assert await typing_in(h, room_id) == (alice.user_id,)
    await h.at(30_000)
    assert await typing_in(h, room_id) == ()


async def test_ending_the_session_stops_its_typing_in_every_room(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    alice, bob, room_id, bob_sees = await setup(h)
    other_room = await h.room(alice, bob)
    await bob_sees.poll()
    sid = await h.touch(alice)
    await set_typing(h, alice, room_id, True, 60_000, session_id=sid)
    await set_typing(h, alice, other_room, True, 60_000, session_id=sid)
    await bob_sees.poll()

    async def end() -> None:
        await h.engine.sessions.end(alice.user_id, sid)

    body, took = await bob_sees.wait_across(end)
    assert took == 0
    assert typing_users(body, room_id) == [[]]
    assert typing_users(body, other_room) == [[]]


async def test_session_expiry_stops_its_typing_at_the_deadline(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T, typing_timeout_cap_ms=600_000)
    alice, _bob, room_id, bob_sees = await setup(h)
    await set_typing(h, alice, room_id, True, 600_000)  # the request ends at 0
    await bob_sees.poll()
    await h.at(T - 1)
    assert await typing_in(h, room_id) == (alice.user_id,)
    assert await bob_sees.poll(timeout_ms=60_000) == [[]]
    assert h.ms() == T
    await h.settle()
    assert h.changes(alice.user_id) == [Presence.ONLINE, Presence.OFFLINE]


async def test_typing_of_a_replaced_session_stops_but_other_devices_type_on(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    alice, bob, room_id, _ = await setup(h)
    await set_typing(h, alice, room_id, True, 60_000)
    await set_typing(h, bob, room_id, True, 60_000)
    assert await typing_in(h, room_id) == (alice.user_id, bob.user_id)
    await h.engine.sessions.start(
        alice.user_id, alice.device_id, Presence.ONLINE, None, replace=True
    )
    assert await typing_in(h, room_id) == (bob.user_id,)


async def test_typing_for_another_user_or_outside_the_room_is_forbidden(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=T)
    alice, bob, room_id, _ = await setup(h)
    carol = await h.client("carol")
    for typing in (True, False):
        with pytest.raises(Forbidden) as info:
            await set_typing(h, alice, room_id, typing, user_id=bob.user_id)
        assert (info.value.status, info.value.errcode) == (403, "M_FORBIDDEN")
        with pytest.raises(Forbidden):
            await set_typing(h, carol, room_id, typing)
    await h.engine.rooms.membership.leave(h.bare(bob), room_id)
    with pytest.raises(Forbidden):
        await set_typing(h, bob, room_id, True)
    with pytest.raises(Forbidden):
        await set_typing(h, alice, "!nowhere:test.local", True)
    assert await typing_in(h, room_id) == ()


async def test_with_sessions_disabled_typing_lasts_until_its_timeout(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(session_timeout_ms=1000, sessions_enabled=False)
    alice, _bob, room_id, bob_sees = await setup(h)
    await bob_sees.poll()
    await set_typing(h, alice, room_id, True, 5000)
    assert await bob_sees.poll() == [[alice.user_id]]
    await h.at(4999)  # far past what would be the session timeout
    assert await typing_in(h, room_id) == (alice.user_id,)
    assert await bob_sees.poll(timeout_ms=30_000) == [[]]
    assert h.ms() == 5000
    await set_typing(h, alice, room_id, True, 5000)
    await set_typing(h, alice, room_id, False)
    assert await typing_in(h, room_id) == ()
