"""The invite rate limit through HTTP: 429 M_LIMIT_EXCEEDED with retry_after_ms, refill
over (mock) time, independent buckets per inviter / invitee / room, which buckets a
refusal costs, counters shared by engines over one storage, and config errors.

Time: the tests request pytest-trio's `mock_clock` (it stands still unless jumped) and
build the engine on a TrioClock, so the storage's bucket times follow the jumps exactly.
"""

from __future__ import annotations

from typing import Any

import pytest
from trio.testing import MockClock

from backends import Storage
from backends.memory import open_memory_storage
from homeserver.clock import TrioClock
from plugins.loader import PluginSpec
from tests.helpers import Api, Reply, User
from tests.plugins.test_builtin_common import (
    RATELIMIT,
    invite,
    invite_state,
    join,
    load_error,
    serve,
)


def limit(**buckets: dict[str, float]) -> tuple[str, dict[str, Any]]:
    return (RATELIMIT, buckets)


def assert_limited(reply: Reply, retry_after_ms: int) -> None:
    assert reply.status == 429, reply.body
    assert reply.errcode == "M_LIMIT_EXCEEDED"
    assert reply.body["retry_after_ms"] == retry_after_ms


async def users(api: Api, *names: str) -> list[User]:
    return [await api.register(name) for name in names]


async def test_inviter_bucket_refills_over_time(mock_clock: MockClock) -> None:
    async with serve(limit(inviter={"capacity": 2, "per_second": 0.5}), clock=TrioClock()) as api:
        alice, bob, carol, dan = await users(api, "alice", "bob", "carol", "dan")
        room = await api.create_room(alice)
        assert (await invite(api, alice, room, bob)).status == 200
        assert (await invite(api, alice, room, carol)).status == 200
        # The burst is spent: one token every 2 s.
        assert_limited(await invite(api, alice, room, dan), 2000)
        assert await invite_state(api, dan, room) is None

        mock_clock.jump(1.5)
        assert_limited(await invite(api, alice, room, dan), 500)
        mock_clock.jump(0.5)
        assert (await invite(api, alice, room, dan, reason="at last")).status == 200
        state = await invite_state(api, dan, room)
        assert state is not None
        # And the new token is spent again.
        assert_limited(await invite(api, alice, room, bob), 2000)
        # Long idle: refilled up to the capacity, not beyond.
        mock_clock.jump(3600)
        assert (await invite(api, alice, room, bob)).status == 200
        assert (await invite(api, alice, room, carol)).status == 200
        assert_limited(await invite(api, alice, room, dan), 2000)


async def test_inviter_buckets_are_per_inviter(mock_clock: MockClock) -> None:
    async with serve(limit(inviter={"capacity": 1, "per_second": 0.1}), clock=TrioClock()) as api:
        alice, bob, carol = await users(api, "alice", "bob", "carol")
        room = await api.create_room(alice)
        assert (await invite(api, alice, room, bob)).status == 200
        assert_limited(await invite(api, alice, room, carol), 10_000)
        # Bob joins and invites: his own bucket.
        await join(api, bob, room)
        assert (await invite(api, bob, room, carol)).status == 200
        assert await invite_state(api, carol, room) is not None


async def test_invitee_buckets_are_per_invitee(mock_clock: MockClock) -> None:
    async with serve(limit(invitee={"capacity": 1, "per_second": 0.001}), clock=TrioClock()) as api:
        alice, bob, carol, eve = await users(api, "alice", "bob", "carol", "eve")
        room1 = await api.create_room(alice)
        room2 = await api.create_room(alice)
        room3 = await api.create_room(eve)
        assert (await invite(api, alice, room1, bob)).status == 200
        # Bob's bucket is empty, whoever invites him and wherever.
        assert_limited(await invite(api, alice, room2, bob), 1_000_000)
        assert_limited(await invite(api, eve, room3, bob), 1_000_000)
        # Carol's is not.
        assert (await invite(api, alice, room2, carol)).status == 200
        assert (await invite(api, eve, room3, alice)).status == 200
        assert await invite_state(api, bob, room2) is None
        assert await invite_state(api, carol, room2) is not None


async def test_room_buckets_are_per_room(mock_clock: MockClock) -> None:
    async with serve(limit(room={"capacity": 2, "per_second": 0.01}), clock=TrioClock()) as api:
        alice, bob, carol, dan = await users(api, "alice", "bob", "carol", "dan")
        room1 = await api.create_room(alice)
        room2 = await api.create_room(alice)
        assert (await invite(api, alice, room1, bob)).status == 200
        assert (await invite(api, alice, room1, carol)).status == 200
        assert_limited(await invite(api, alice, room1, dan), 100_000)
        # Another inviter in the same room shares the room's bucket.
        await join(api, bob, room1)
        assert_limited(await invite(api, bob, room1, dan), 100_000)
        # Another room has its own.
        assert (await invite(api, alice, room2, dan)).status == 200
        assert await invite_state(api, dan, room1) is None
        assert await invite_state(api, dan, room2) is not None


ALL_BUCKETS = limit(
    inviter={"capacity": 2, "per_second": 0.001},
    room={"capacity": 2, "per_second": 0.001},
    invitee={"capacity": 1, "per_second": 0.001},
)
NEVER_SOON = 1_000_000  # ms for one token at 0.001 per second


async def room_a(storage: Storage) -> tuple[dict[str, User], str]:
    """Set up before the plugin is configured: room A, which alice, eve and zoe have
    joined, and bob, carol, dan and fay outside it."""
    async with serve(storage=storage) as api:
        people = {
            name: await api.register(name)
            for name in ("alice", "eve", "zoe", "bob", "carol", "dan", "fay")
        }
        room = await api.create_room(people["alice"])
        for name in ("eve", "zoe"):
            assert (await invite(api, people["alice"], room, people[name])).status == 200
            await join(api, people[name], room)
        return people, room


async def test_refused_by_inviter_bucket_costs_no_other_bucket(mock_clock: MockClock) -> None:
    storage = open_memory_storage()
    u, room = await room_a(storage)
    async with serve(ALL_BUCKETS, storage=storage, clock=TrioClock()) as api:
        assert (await invite(api, u["alice"], room, u["bob"])).status == 200
        room_c = await api.create_room(u["alice"])
        assert_limited(await invite(api, u["alice"], room_c, u["bob"]), NEVER_SOON)  # Bob's
        # Alice's two tokens are spent: she is refused, again and again...
        for _ in range(3):
            assert_limited(await invite(api, u["alice"], room, u["carol"]), NEVER_SOON)
        # ...and that cost neither room A's bucket (one token left) nor Carol's.
        assert (await invite(api, u["eve"], room, u["carol"])).status == 200
        assert await invite_state(api, u["carol"], room) is not None


async def test_refused_by_room_bucket_costs_the_inviter_not_the_invitee(
    mock_clock: MockClock,
) -> None:
    storage = open_memory_storage()
    u, room = await room_a(storage)
    async with serve(ALL_BUCKETS, storage=storage, clock=TrioClock()) as api:
        assert (await invite(api, u["eve"], room, u["bob"])).status == 200
        assert (await invite(api, u["zoe"], room, u["carol"])).status == 200
        # Room A's bucket is empty.
        assert_limited(await invite(api, u["alice"], room, u["dan"]), NEVER_SOON)
        # Dan's is intact: his one token is there for Eve's invite elsewhere.
        room_c = await api.create_room(u["eve"])
        assert (await invite(api, u["eve"], room_c, u["dan"])).status == 200
        # Alice paid for her refused attempt: one token left of two.
        room_d = await api.create_room(u["alice"])
        assert (await invite(api, u["alice"], room_d, u["eve"])).status == 200
        assert_limited(await invite(api, u["alice"], room_d, u["zoe"]), NEVER_SOON)


async def test_refused_by_invitee_bucket_costs_inviter_and_room(mock_clock: MockClock) -> None:
    storage = open_memory_storage()
    u, room = await room_a(storage)
    async with serve(ALL_BUCKETS, storage=storage, clock=TrioClock()) as api:
        room_c = await api.create_room(u["bob"])
        assert (await invite(api, u["bob"], room_c, u["carol"])).status == 200
        # Carol's bucket is empty: refused...
        assert_limited(await invite(api, u["alice"], room, u["carol"]), NEVER_SOON)
        # ...and it cost Alice a token (one left of two)...
        room_d = await api.create_room(u["alice"])
        assert (await invite(api, u["alice"], room_d, u["dan"])).status == 200
        assert_limited(await invite(api, u["alice"], room_d, u["bob"]), NEVER_SOON)
        # ...and room A a token (one left of two).
        assert (await invite(api, u["eve"], room, u["bob"])).status == 200
        assert_limited(await invite(api, u["zoe"], room, u["fay"]), NEVER_SOON)


async def test_invites_of_create_room_are_limited(mock_clock: MockClock) -> None:
    async with serve(limit(inviter={"capacity": 2, "per_second": 1}), clock=TrioClock()) as api:
        alice, bob, carol, dan = await users(api, "alice", "bob", "carol", "dan")
        reply = await api.call(
            "POST",
            "createRoom",
            token=alice,
            body={"invite": [bob.user_id, carol.user_id, dan.user_id]},
        )
        assert_limited(reply, 1000)


async def test_counters_live_in_storage(mock_clock: MockClock) -> None:
    """Two engines over one storage (two workers) share the buckets."""
    storage = open_memory_storage()
    plugin = limit(inviter={"capacity": 1, "per_second": 0.25})
    clock = TrioClock()  # one wall clock for both (each would anchor at its own ms)
    async with (
        serve(plugin, storage=storage, clock=clock) as worker1,
        serve(plugin, storage=storage, clock=clock) as worker2,
    ):
        alice, bob, carol = await users(worker1, "alice", "bob", "carol")
        room = await worker1.create_room(alice)
        assert (await invite(worker1, alice, room, bob)).status == 200
        assert_limited(await invite(worker2, alice, room, carol), 4000)
        mock_clock.jump(4)
        assert (await invite(worker2, alice, room, carol)).status == 200
        assert_limited(await invite(worker1, alice, room, carol), 4000)
        assert await invite_state(worker1, carol, room) is not None


@pytest.mark.parametrize(
    ("config", "key", "says"),
    [
        ({}, "inviter", "at least one of inviter, invitee, room"),
        ({"inviter": {"capacity": 0, "per_second": 1}}, "inviter.capacity", "number >= 1"),
        ({"room": {"capacity": "ten", "per_second": 1}}, "room.capacity", "number >= 1"),
        ({"room": {"capacity": True, "per_second": 1}}, "room.capacity", "number >= 1"),
        ({"invitee": {"capacity": 5, "per_second": 0}}, "invitee.per_second", "number > 0"),
        ({"invitee": {"capacity": 5}}, "invitee.per_second", "missing"),
        (
            {"invitee": {"capacity": 5, "per_second": 1, "burst": 2}},
            "invitee.burst",
            "unknown key",
        ),
        ({"inviter": 10}, "inviter", "expected a table"),
        ({"sender": {"capacity": 1, "per_second": 1}}, "sender", "unknown key"),
    ],
)
def test_config_errors(config: dict[str, Any], key: str, says: str) -> None:
    message = load_error(RATELIMIT, config)
    assert f"config key '{key}': " in message
    assert says in message


async def test_two_entries_of_the_class_keep_separate_counters() -> None:
    """A strict and a lenient rate limit configured side by side: the strict one's
    counter is not drained by the lenient one's takes (and the other way round)."""
    from backends.memory import open_memory
    from homeserver.engine import Engine
    from tests.helpers import make_config

    spec = "plugins.builtin.ratelimit:InviteRateLimit"
    config = make_config(
        plugins=(
            PluginSpec(spec, {"inviter": {"capacity": 1, "per_second": 0.001}}),
            PluginSpec(spec, {"inviter": {"capacity": 5, "per_second": 0.001}}),
        )
    )
    async with open_memory("memory://") as storage:
        engine = Engine(config, storage)
        facades = [p.instance._api for p in engine.plugins.plugins]  # type: ignore[attr-defined]
        first = await facades[0].take_token("inviter:@a:x", capacity=1, refill_per_s=0.001)
        second = await facades[1].take_token("inviter:@a:x", capacity=1, refill_per_s=0.001)
        assert (first, second) == (0, 0)
