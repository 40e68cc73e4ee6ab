"""RoomStore.get_joined_members / get_joined_rooms: the "join" memberships, kept by
member events, equal to filtering get_room_members / get_user_memberships."""

from __future__ import annotations

import random

import pytest
import trio

from backends import Storage
from backends.records import MembershipRecord

from .records import (
    ALICE,
    BOB,
    CAROL,
    OTHER_ROOM,
    ROOM,
    SERVER,
    append_one,
    make_room,
    member,
    state,
)
from .support import gather


def _joined(records: list[MembershipRecord], *, by_room: bool) -> list[str]:
    return [r.user_id if by_room else r.room_id for r in records if r.membership == "join"]


async def _assert_consistent(storage: Storage, rooms: list[str], users: list[str]) -> None:
    """The joined queries agree with filtering the membership records."""
    for room_id in rooms:
        members = await storage.rooms.get_room_members(room_id)
        assert await storage.rooms.get_joined_members(room_id) == _joined(members, by_room=True)
    for user_id in users:
        memberships = await storage.rooms.get_user_memberships(user_id)
        assert await storage.rooms.get_joined_rooms(user_id) == _joined(memberships, by_room=False)


async def test_nothing_is_joined_at_first(storage: Storage) -> None:
    assert await storage.rooms.get_joined_members(ROOM) == []
    assert await storage.rooms.get_joined_rooms(ALICE) == []
    await make_room(storage)
    assert await storage.rooms.get_joined_members(ROOM) == []


async def test_a_join_adds_and_a_leave_removes(storage: Storage) -> None:
    await make_room(storage)
    await make_room(storage, OTHER_ROOM)
    await append_one(storage, member(ROOM, ALICE, "join"))
    await append_one(storage, member(OTHER_ROOM, ALICE, "join"))
    await append_one(storage, member(ROOM, BOB, "join"))
    assert await storage.rooms.get_joined_members(ROOM) == [ALICE, BOB]
    assert await storage.rooms.get_joined_rooms(ALICE) == sorted([ROOM, OTHER_ROOM])
    await append_one(storage, member(ROOM, ALICE, "leave"))
    assert await storage.rooms.get_joined_members(ROOM) == [BOB]
    assert await storage.rooms.get_joined_rooms(ALICE) == [OTHER_ROOM]
    assert await storage.rooms.get_joined_rooms(BOB) == [ROOM]
    # Joining again counts again.
    await append_one(storage, member(ROOM, ALICE, "join"))
    assert await storage.rooms.get_joined_members(ROOM) == [ALICE, BOB]


@pytest.mark.parametrize("membership", ["invite", "leave", "ban", "knock", "x.custom"])
async def test_only_join_counts(storage: Storage, membership: str) -> None:
    await make_room(storage)
    await append_one(storage, member(ROOM, BOB, membership))
    assert await storage.rooms.get_joined_members(ROOM) == []
    assert await storage.rooms.get_joined_rooms(BOB) == []
    await append_one(storage, member(ROOM, BOB, "join"))
    await append_one(storage, member(ROOM, BOB, membership))
    assert await storage.rooms.get_joined_members(ROOM) == []
    assert await storage.rooms.get_joined_rooms(BOB) == []


async def test_invite_then_join_then_ban(storage: Storage) -> None:
    await make_room(storage)
    await append_one(storage, member(ROOM, ALICE, "join"))
    await append_one(storage, member(ROOM, BOB, "invite"))
    assert await storage.rooms.get_joined_members(ROOM) == [ALICE]
    await append_one(storage, member(ROOM, BOB, "join"))
    assert await storage.rooms.get_joined_members(ROOM) == [ALICE, BOB]
    await append_one(storage, member(ROOM, BOB, "ban"))
    assert await storage.rooms.get_joined_members(ROOM) == [ALICE]
    assert await storage.rooms.get_joined_rooms(BOB) == []


async def test_forgetting_changes_nothing(storage: Storage) -> None:
    await make_room(storage)
    await append_one(storage, member(ROOM, ALICE, "join"))
    await append_one(storage, member(ROOM, BOB, "join"))
    await append_one(storage, member(ROOM, BOB, "leave"))
    await storage.rooms.forget_room(BOB, ROOM)
    await storage.rooms.forget_room(ALICE, ROOM)
    assert await storage.rooms.get_joined_members(ROOM) == [ALICE]
    assert await storage.rooms.get_joined_rooms(ALICE) == [ROOM]
    assert await storage.rooms.get_joined_rooms(BOB) == []
    await _assert_consistent(storage, [ROOM], [ALICE, BOB])


async def test_the_last_member_event_of_a_batch_wins(storage: Storage) -> None:
    await make_room(storage)
    await storage.rooms.append_events(
        [member(ROOM, BOB, "join"), member(ROOM, CAROL, "join"), member(ROOM, BOB, "leave")]
    )
    assert await storage.rooms.get_joined_members(ROOM) == [CAROL]
    assert await storage.rooms.get_joined_rooms(BOB) == []


async def test_a_non_member_state_event_does_not_join(storage: Storage) -> None:
    await make_room(storage)
    await append_one(storage, state(ROOM, "x.not_member", ALICE, {"membership": "join"}))
    assert await storage.rooms.get_joined_members(ROOM) == []
    assert await storage.rooms.get_joined_rooms(ALICE) == []


async def test_ordered_by_code_point(storage: Storage) -> None:
    """Code point order, not locale order: capitals before lower case, `_` between,
    and non-ASCII after ASCII."""
    users = [f"@{name}:{SERVER}" for name in ("zed", "Zed", "_x", "ärger", "a", "B", "é")]
    rooms = [f"!{name}:{SERVER}" for name in ("zed", "Zed", "_x", "ärger", "a", "B")]
    for room_id in rooms:
        await make_room(storage, room_id)
        await append_one(storage, member(room_id, ALICE, "join"))
    await make_room(storage)
    for user_id in users:
        await append_one(storage, member(ROOM, user_id, "join"))
    assert await storage.rooms.get_joined_members(ROOM) == sorted(users)
    assert await storage.rooms.get_joined_rooms(ALICE) == sorted(rooms)


async def test_concurrent_joins_and_leaves(storage: Storage) -> None:
    """Many writers at once: each user's last event decides, and the joined queries
    agree with the membership records throughout."""
    rooms = [f"!r{i}:{SERVER}" for i in range(3)]
    users = [f"@u{i}:{SERVER}" for i in range(8)]
    for room_id in rooms:
        await make_room(storage, room_id)
    rng = random.Random(7)
    plans = {
        (room_id, user_id): [rng.choice(["join", "leave", "invite", "ban"]) for _ in range(4)]
        for room_id in rooms
        for user_id in users
    }

    async def run(room_id: str, user_id: str) -> None:
        for membership in plans[(room_id, user_id)]:
            await append_one(storage, member(room_id, user_id, membership))
            await trio.lowlevel.checkpoint()

    await gather(*[lambda r=r, u=u: run(r, u) for (r, u) in plans])
    for room_id in rooms:
        expected = sorted(u for u in users if plans[(room_id, u)][-1] == "join")
        assert await storage.rooms.get_joined_members(room_id) == expected
    for user_id in users:
        expected = sorted(r for r in rooms if plans[(r, user_id)][-1] == "join")
        assert await storage.rooms.get_joined_rooms(user_id) == expected
    await _assert_consistent(storage, rooms, users)


async def test_concurrent_joins_of_one_room_are_all_kept(storage: Storage) -> None:
    await make_room(storage)
    users = [f"@j{i:02d}:{SERVER}" for i in range(20)]
    await gather(*[lambda u=u: append_one(storage, member(ROOM, u, "join")) for u in users])
    assert await storage.rooms.get_joined_members(ROOM) == users
    await gather(*[lambda u=u: append_one(storage, member(ROOM, u, "leave")) for u in users[::2]])
    assert await storage.rooms.get_joined_members(ROOM) == users[1::2]
