"""Membership in the engine: the transitions join, leave, kick, ban, unban and forget
allow, the errors of those they refuse, and profile changes reaching joined rooms."""

from __future__ import annotations

import pytest
from trio.testing import MockClock

from backends.records import Membership
from homeserver.errors import Forbidden, InvalidParam, MatrixError, NotFoundError
from tests.engine.conftest import Client, Harness, MakeHarness
from tests.engine.rooms_helpers import create, membership, scripted, state

JOIN, INVITE, LEAVE, BAN = Membership.JOIN, Membership.INVITE, Membership.LEAVE, Membership.BAN
UNKNOWN_ROOM = "!unknown:test.local"


async def setup(h: Harness) -> tuple[Client, Client, str]:
    """alice's public room with bob in it."""
    alice, bob = await h.client("alice"), await h.client("bob")
    room_id = await h.room(alice, bob)
    return alice, bob, room_id


async def test_join_leave_and_join_again(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness()
    _alice, bob, room_id = await setup(h)
    members = h.engine.rooms.membership
    assert await membership(h, room_id, bob) == JOIN
    await members.leave(h.bare(bob), room_id, "bye")
    assert await membership(h, room_id, bob) == LEAVE
    assert await state(h, room_id, "m.room.member", bob.user_id) == {
        "membership": "leave",
        "reason": "bye",
    }
    await members.join(h.bare(bob), room_id, "back")
    assert await state(h, room_id, "m.room.member", bob.user_id) == {
        "membership": "join",
        "reason": "back",
    }
    assert await h.engine.rooms.core.joined_rooms(bob.user_id) == [room_id]
    # Joining again while joined is allowed (a repeated join).
    await members.join(h.bare(bob), room_id)
    assert await membership(h, room_id, bob) == JOIN


async def test_invite_only_rooms_need_an_invite(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness()
    alice, bob = await h.client("alice"), await h.client("bob")
    room_id = await create(h, alice, preset="private_chat")
    with pytest.raises(Forbidden):
        await h.engine.rooms.membership.join(h.bare(bob), room_id)
    await h.engine.rooms.invites.invite(h.bare(alice), room_id, bob.user_id, reason=None)
    await h.engine.rooms.membership.join(h.bare(bob), room_id)
    assert await membership(h, room_id, bob) == JOIN


async def test_rejecting_an_invite_is_a_leave(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness()
    alice, bob = await h.client("alice"), await h.client("bob")
    room_id = await create(h, alice, invite=(bob.user_id,))
    await h.engine.rooms.membership.leave(h.bare(bob), room_id)
    assert await membership(h, room_id, bob) == LEAVE
    with pytest.raises(Forbidden):
        await h.engine.rooms.membership.join(h.bare(bob), room_id)


async def test_join_and_leave_errors(make_harness: MakeHarness, autojump_clock: MockClock) -> None:
    h = await make_harness()
    _alice, bob, room_id = await setup(h)
    carol = await h.client("carol")
    members = h.engine.rooms.membership
    with pytest.raises(NotFoundError):
        await members.join(h.bare(carol), UNKNOWN_ROOM)
    with pytest.raises(NotFoundError):
        await members.leave(h.bare(carol), UNKNOWN_ROOM)
    with pytest.raises(Forbidden):
        await members.leave(h.bare(carol), room_id)
    await members.leave(h.bare(bob), room_id)
    with pytest.raises(Forbidden):
        await members.leave(h.bare(bob), room_id)


async def test_a_plugin_may_refuse_a_join(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(plugins=scripted(check_join="deny", only_user="@bob:test.local"))
    alice, bob, carol = await h.client("alice"), await h.client("bob"), await h.client("carol")
    room_id = await h.room(alice, carol)
    with pytest.raises(MatrixError) as info:
        await h.engine.rooms.membership.join(h.bare(bob), room_id)
    assert info.value.errcode == "M_FORBIDDEN"
    assert await membership(h, room_id, bob) is None
    assert await membership(h, room_id, carol) == JOIN


async def test_kick_ban_unban(make_harness: MakeHarness, autojump_clock: MockClock) -> None:
    h = await make_harness()
    alice, bob, room_id = await setup(h)
    members = h.engine.rooms.membership
    await members.kick(h.bare(alice), room_id, bob.user_id, "out")
    assert await state(h, room_id, "m.room.member", bob.user_id) == {
        "membership": "leave",
        "reason": "out",
    }
    event = await h.storage.rooms.get_state_event(room_id, "m.room.member", bob.user_id)
    assert event is not None and event.sender == alice.user_id
    await members.ban(h.bare(alice), room_id, bob.user_id, None)
    assert await membership(h, room_id, bob) == BAN
    with pytest.raises(Forbidden):
        await members.join(h.bare(bob), room_id)
    with pytest.raises(Forbidden):
        await members.leave(h.bare(bob), room_id)
    await members.unban(h.bare(alice), room_id, bob.user_id, None)
    assert await membership(h, room_id, bob) == LEAVE
    await members.join(h.bare(bob), room_id)
    assert await membership(h, room_id, bob) == JOIN


async def test_kicking_an_invitee_revokes_the_invite(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness()
    alice, bob = await h.client("alice"), await h.client("bob")
    room_id = await create(h, alice, invite=(bob.user_id,))
    await h.engine.rooms.membership.kick(h.bare(alice), room_id, bob.user_id, None)
    assert await membership(h, room_id, bob) == LEAVE
    with pytest.raises(Forbidden):
        await h.engine.rooms.membership.join(h.bare(bob), room_id)


async def test_moderation_errors(make_harness: MakeHarness, autojump_clock: MockClock) -> None:
    h = await make_harness()
    alice, bob, room_id = await setup(h)
    carol, dave = await h.client("carol"), await h.client("dave")
    members = h.engine.rooms.membership
    with pytest.raises(InvalidParam):
        await members.kick(h.bare(alice), room_id, "bob", None)
    # Not in the room / not banned.
    with pytest.raises(Forbidden, match="not in the room"):
        await members.kick(h.bare(alice), room_id, carol.user_id, None)
    with pytest.raises(Forbidden, match="not banned"):
        await members.unban(h.bare(alice), room_id, bob.user_id, None)
    # A plain member (level 0) may not kick or ban; a non-member may do nothing.
    for action in (members.kick, members.ban):
        with pytest.raises(Forbidden):
            await action(h.bare(bob), room_id, alice.user_id, None)
        with pytest.raises(Forbidden):
            await action(h.bare(dave), room_id, bob.user_id, None)
    # Nobody acts on an equal or higher level, oneself included; kicking oneself is
    # a plain leave (which still needs the kick level).
    with pytest.raises(Forbidden, match="equal or higher"):
        await members.ban(h.bare(alice), room_id, alice.user_id, None)
    with pytest.raises(Forbidden, match="permission"):
        await members.kick(h.bare(bob), room_id, bob.user_id, None)
    await members.kick(h.bare(alice), room_id, alice.user_id, None)
    assert await membership(h, room_id, alice) == LEAVE
    assert await membership(h, room_id, bob) == JOIN


async def test_unban_needs_the_kick_level_too(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness()
    alice, bob, carol = await h.client("alice"), await h.client("bob"), await h.client("carol")
    room_id = await create(
        h,
        alice,
        preset="public_chat",
        power_level_content_override={
            "users": {alice.user_id: 100, bob.user_id: 50},
            "ban": 50,
            "kick": 75,
        },
    )
    for client in (bob, carol):
        await h.engine.rooms.membership.join(h.bare(client), room_id)
    members = h.engine.rooms.membership
    await members.ban(h.bare(bob), room_id, carol.user_id, None)
    with pytest.raises(Forbidden):
        await members.unban(h.bare(bob), room_id, carol.user_id, None)
    await members.unban(h.bare(alice), room_id, carol.user_id, None)
    assert await membership(h, room_id, carol) == LEAVE


async def test_forget(make_harness: MakeHarness, autojump_clock: MockClock) -> None:
    h = await make_harness()
    _alice, bob, room_id = await setup(h)
    carol = await h.client("carol")
    members = h.engine.rooms.membership
    with pytest.raises(NotFoundError):
        await members.forget(h.bare(carol), room_id)
    with pytest.raises(MatrixError) as info:
        await members.forget(h.bare(bob), room_id)
    assert (info.value.status, info.value.errcode) == (400, "M_UNKNOWN")
    await members.leave(h.bare(bob), room_id)
    await members.forget(h.bare(bob), room_id)
    record = await h.storage.rooms.get_membership(room_id, bob.user_id)
    assert record is not None and record.forgotten
    with pytest.raises(Forbidden):
        await h.engine.rooms.history.get_event(h.bare(bob), room_id, record.event_id)


async def test_profile_changes_reach_joined_rooms_only(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness()
    alice, bob, joined = await setup(h)
    left = await h.room(alice, bob)
    await h.engine.rooms.membership.leave(h.bare(bob), left)
    await h.engine.rooms.membership.set_profile(h.bare(bob), "displayname", "Bob")
    await h.engine.rooms.membership.set_profile(h.bare(bob), "avatar_url", "mxc://x/y")
    assert await state(h, joined, "m.room.member", bob.user_id) == {
        "membership": "join",
        "displayname": "Bob",
        "avatar_url": "mxc://x/y",
    }
    assert await state(h, left, "m.room.member", bob.user_id) == {"membership": "leave"}
    user = await h.storage.users.get_user(bob.user_id)
    assert user is not None and (user.displayname, user.avatar_url) == ("Bob", "mxc://x/y")
    # Clearing a field drops it from the member event.
    await h.engine.rooms.membership.set_profile(h.bare(bob), "displayname", None)
    assert await state(h, joined, "m.room.member", bob.user_id) == {
        "membership": "join",
        "avatar_url": "mxc://x/y",
    }
    with pytest.raises(InvalidParam):
        await h.engine.rooms.membership.set_profile(h.bare(bob), "status", "x")
