"""Published presence, positioned in the server-wide stream."""

from __future__ import annotations

import itertools
from functools import partial

from backends import Storage
from backends.records import PresenceRecord

from .records import ALICE, BOB, CAROL, ROOM, append_one, make_room, message
from .support import gather


async def test_unpublished_presence_is_none(storage: Storage) -> None:
    assert await storage.presence.get_presence(ALICE) is None
    assert await storage.presence.get_presence_since([ALICE], 0) == []


async def test_put_and_get_presence(storage: Storage) -> None:
    before = await storage.rooms.current_stream_pos()
    record = await storage.presence.put_presence(ALICE, "unavailable", "lunch", 1_234)
    assert record == PresenceRecord(
        user_id=ALICE,
        presence="unavailable",
        status_msg="lunch",
        last_active_ts=1_234,
        stream_pos=record.stream_pos,
    )
    assert record.stream_pos > before
    assert await storage.rooms.current_stream_pos() == record.stream_pos
    assert await storage.presence.get_presence(ALICE) == record
    assert await storage.presence.get_presence(BOB) is None


async def test_put_presence_replaces_at_a_new_position(storage: Storage) -> None:
    first = await storage.presence.put_presence(ALICE, "online", "hi", 1)
    second = await storage.presence.put_presence(ALICE, "offline", None, 2)
    assert second.stream_pos > first.stream_pos
    assert second == PresenceRecord(ALICE, "offline", None, 2, second.stream_pos)
    assert await storage.presence.get_presence(ALICE) == second
    assert await storage.presence.get_presence_since([ALICE], 0) == [second]
    # Publishing the same value again is still a change with its own position.
    third = await storage.presence.put_presence(ALICE, "offline", None, 2)
    assert third.stream_pos > second.stream_pos


async def test_presence_shares_the_stream(storage: Storage) -> None:
    await make_room(storage)
    positions: list[int] = []
    for i in range(3):
        positions.append((await storage.presence.put_presence(ALICE, "online", None, i)).stream_pos)
        positions.append((await append_one(storage, message(ROOM))).stream_pos)
        positions.append(await storage.account_data.put_account_data(BOB, None, "m.x", {}))
    assert positions[0] > 0
    assert all(a < b for a, b in itertools.pairwise(positions))
    assert await storage.rooms.current_stream_pos() == positions[-1]


async def test_get_presence_since_filters_by_user_and_position(storage: Storage) -> None:
    alice = await storage.presence.put_presence(ALICE, "online", None, 1)
    bob = await storage.presence.put_presence(BOB, "unavailable", None, 2)
    carol = await storage.presence.put_presence(CAROL, "offline", None, 3)
    alice_again = await storage.presence.put_presence(ALICE, "unavailable", "away", 4)
    since = storage.presence.get_presence_since
    assert await since([ALICE, BOB, CAROL], 0) == [bob, carol, alice_again]
    assert await since([CAROL, ALICE], 0) == [carol, alice_again]
    assert await since([ALICE, BOB, CAROL], bob.stream_pos) == [carol, alice_again]
    assert await since([ALICE, BOB, CAROL], alice.stream_pos) == [bob, carol, alice_again]
    assert await since([BOB], bob.stream_pos) == []
    assert await since([ALICE, BOB, CAROL], alice_again.stream_pos) == []
    assert await since([], 0) == []
    assert await since(["@nobody:example.org"], 0) == []
    # A user named twice is reported once.
    assert await since([BOB, BOB], 0) == [bob]


async def test_get_presence_since_many_users(storage: Storage) -> None:
    users = [f"@u{i:04}:example.org" for i in range(1_200)]
    published = [
        await storage.presence.put_presence(user_id, "online", None, i)
        for i, user_id in enumerate(users[::97])
    ]
    assert await storage.presence.get_presence_since(users, 0) == published
    middle = published[len(published) // 2].stream_pos
    assert await storage.presence.get_presence_since(list(reversed(users)), middle) == [
        r for r in published if r.stream_pos > middle
    ]


async def test_concurrent_presence_puts_get_distinct_positions(storage: Storage) -> None:
    jobs = [
        partial(storage.presence.put_presence, user_id, "online", None, i)
        for i, user_id in enumerate([ALICE, BOB, CAROL] * 5)
    ]
    records = await gather(*jobs)
    positions = [r.stream_pos for r in records]
    assert len(set(positions)) == len(positions)
    assert await storage.rooms.current_stream_pos() == max(positions)
    # The put with the highest position is the one that stays.
    for user_id in (ALICE, BOB, CAROL):
        latest = max((r for r in records if r.user_id == user_id), key=lambda r: r.stream_pos)
        assert await storage.presence.get_presence(user_id) == latest
