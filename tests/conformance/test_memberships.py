"""RoomStore: memberships set by m.room.member events, and forgetting rooms."""

from __future__ import annotations

import pytest

from backends import NotFound, Storage
from backends.records import MembershipRecord

from .records import ALICE, BOB, CAROL, OTHER_ROOM, ROOM, append_one, make_room, member, state


def _record(
    event_room: str, user_id: str, membership: str, event_id: str, pos: int
) -> MembershipRecord:
    return MembershipRecord(
        room_id=event_room,
        user_id=user_id,
        membership=membership,
        event_id=event_id,
        stream_pos=pos,
    )


async def test_member_event_sets_membership(storage: Storage) -> None:
    await make_room(storage)
    join = await append_one(storage, member(ROOM, ALICE, "join"))
    assert await storage.rooms.get_membership(ROOM, ALICE) == _record(
        ROOM, ALICE, "join", join.event_id, join.stream_pos
    )
    assert await storage.rooms.get_membership(ROOM, BOB) is None
    assert await storage.rooms.get_membership(OTHER_ROOM, ALICE) is None


@pytest.mark.parametrize("membership", ["invite", "join", "leave", "ban", "knock"])
async def test_every_membership_kind_is_recorded(storage: Storage, membership: str) -> None:
    await make_room(storage)
    event = await append_one(storage, member(ROOM, BOB, membership))
    record = await storage.rooms.get_membership(ROOM, BOB)
    assert record == _record(ROOM, BOB, membership, event.event_id, event.stream_pos)


async def test_later_member_event_replaces_membership(storage: Storage) -> None:
    await make_room(storage)
    invite = await append_one(storage, member(ROOM, BOB, "invite"))
    join = await append_one(storage, member(ROOM, BOB, "join"))
    assert join.prev_content == invite.content
    leave = await append_one(storage, member(ROOM, BOB, "leave"))
    assert await storage.rooms.get_membership(ROOM, BOB) == _record(
        ROOM, BOB, "leave", leave.event_id, leave.stream_pos
    )
    assert await storage.rooms.get_room_members(ROOM) == [
        _record(ROOM, BOB, "leave", leave.event_id, leave.stream_pos)
    ]


async def test_last_member_event_in_a_batch_wins(storage: Storage) -> None:
    await make_room(storage)
    stored = await storage.rooms.append_events(
        [member(ROOM, BOB, "invite"), member(ROOM, CAROL, "join"), member(ROOM, BOB, "join")]
    )
    assert await storage.rooms.get_membership(ROOM, BOB) == _record(
        ROOM, BOB, "join", stored[2].event_id, stored[2].stream_pos
    )
    assert await storage.rooms.get_membership(ROOM, CAROL) == _record(
        ROOM, CAROL, "join", stored[1].event_id, stored[1].stream_pos
    )


async def test_other_state_events_do_not_touch_memberships(storage: Storage) -> None:
    await make_room(storage)
    await append_one(storage, state(ROOM, "m.room.power_levels", ALICE, {"users": {}}))
    await append_one(storage, state(ROOM, "m.room.name", "", {"name": "x"}))
    assert await storage.rooms.get_membership(ROOM, ALICE) is None
    assert await storage.rooms.get_room_members(ROOM) == []


async def test_room_members_are_ordered_by_user_id(storage: Storage) -> None:
    await make_room(storage)
    user_ids = [
        "@zed:example.org",
        "@Bob:example.org",
        "@bob:example.org",
        "@_x:example.org",
        "@a.b:example.org",
        "@a:example.org",
        "@a-c:example.org",
        "@1:example.org",
    ]
    for user_id in user_ids:
        await append_one(storage, member(ROOM, user_id))
    members = await storage.rooms.get_room_members(ROOM)
    assert [m.user_id for m in members] == sorted(user_ids)
    assert {m.room_id for m in members} == {ROOM}


async def test_room_members_are_per_room(storage: Storage) -> None:
    await make_room(storage)
    await make_room(storage, OTHER_ROOM)
    await append_one(storage, member(ROOM, ALICE))
    await append_one(storage, member(OTHER_ROOM, BOB))
    assert [m.user_id for m in await storage.rooms.get_room_members(ROOM)] == [ALICE]
    assert [m.user_id for m in await storage.rooms.get_room_members(OTHER_ROOM)] == [BOB]
    assert await storage.rooms.get_room_members("!unknown:example.org") == []


async def test_user_memberships_are_ordered_by_room_id(storage: Storage) -> None:
    room_ids = [
        "!b:example.org",
        "!B:example.org",
        "!a:example.org",
        "!_:example.org",
        "!a-b:example.org",
        "!ab:example.org",
        "!9:example.org",
    ]
    for room_id in room_ids:
        await make_room(storage, room_id)
        await append_one(storage, member(room_id, ALICE, "join"))
    await append_one(storage, member("!a:example.org", BOB, "invite"))
    records = await storage.rooms.get_user_memberships(ALICE)
    assert [r.room_id for r in records] == sorted(room_ids)
    assert {(r.user_id, r.membership) for r in records} == {(ALICE, "join")}
    assert [r.room_id for r in await storage.rooms.get_user_memberships(BOB)] == ["!a:example.org"]
    assert await storage.rooms.get_user_memberships(CAROL) == []


async def test_forget_marks_membership_forgotten(storage: Storage) -> None:
    await make_room(storage)
    await make_room(storage, OTHER_ROOM)
    await append_one(storage, member(ROOM, BOB, "join"))
    leave = await append_one(storage, member(ROOM, BOB, "leave"))
    await append_one(storage, member(OTHER_ROOM, BOB, "join"))
    await append_one(storage, member(ROOM, CAROL, "join"))

    await storage.rooms.forget_room(BOB, ROOM)

    forgotten = MembershipRecord(
        room_id=ROOM,
        user_id=BOB,
        membership="leave",
        event_id=leave.event_id,
        stream_pos=leave.stream_pos,
        forgotten=True,
    )
    assert await storage.rooms.get_membership(ROOM, BOB) == forgotten
    records = await storage.rooms.get_user_memberships(BOB)
    assert forgotten in records
    assert [r.forgotten for r in records if r.room_id == OTHER_ROOM] == [False]
    members = await storage.rooms.get_room_members(ROOM)
    assert [(m.user_id, m.forgotten) for m in members] == [(BOB, True), (CAROL, False)]


async def test_forget_is_idempotent(storage: Storage) -> None:
    await make_room(storage)
    await append_one(storage, member(ROOM, BOB, "leave"))
    await storage.rooms.forget_room(BOB, ROOM)
    await storage.rooms.forget_room(BOB, ROOM)
    record = await storage.rooms.get_membership(ROOM, BOB)
    assert record is not None and record.forgotten


async def test_forget_without_membership_is_not_found(storage: Storage) -> None:
    await make_room(storage)
    await append_one(storage, member(ROOM, ALICE))
    with pytest.raises(NotFound):
        await storage.rooms.forget_room(BOB, ROOM)
    with pytest.raises(NotFound):
        await storage.rooms.forget_room(ALICE, OTHER_ROOM)
    assert await storage.rooms.get_membership(ROOM, BOB) is None
    assert await storage.rooms.get_user_memberships(BOB) == []


async def test_new_member_event_clears_forgotten(storage: Storage) -> None:
    await make_room(storage)
    await append_one(storage, member(ROOM, BOB, "leave"))
    await storage.rooms.forget_room(BOB, ROOM)
    rejoin = await append_one(storage, member(ROOM, BOB, "join"))
    assert await storage.rooms.get_membership(ROOM, BOB) == _record(
        ROOM, BOB, "join", rejoin.event_id, rejoin.stream_pos
    )
