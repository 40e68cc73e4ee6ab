"""Reading rooms in the engine: state and members for joined users, and history that
stops at the leave, kick or ban that ended a user's join (and is closed to anyone who
never joined)."""

from __future__ import annotations

import pytest
from trio.testing import MockClock

from backends.records import Event, Membership
from homeserver.engine.rooms import MessagesPage, ended_a_join
from homeserver.errors import Forbidden, NotFoundError
from tests.engine.conftest import Client, Harness, MakeHarness
from tests.engine.rooms_helpers import create


async def say(h: Harness, client: Client, room_id: str, body: str) -> str:
    return await h.engine.rooms.messages.send_event(
        h.bare(client), room_id, "m.room.message", {"msgtype": "m.text", "body": body}
    )


async def page(
    h: Harness,
    client: Client,
    room_id: str,
    *,
    backwards: bool,
    from_pos: int | None = None,
    to_pos: int | None = None,
    limit: int = 100,
) -> MessagesPage:
    return await h.engine.rooms.history.messages(
        h.bare(client),
        room_id,
        from_pos=from_pos,
        to_pos=to_pos,
        backwards=backwards,
        limit=limit,
    )


def bodies(events: list[Event]) -> list[str]:
    return [e.content["body"] for e in events if e.type == "m.room.message"]


async def readable(h: Harness, client: Client, room_id: str) -> list[str]:
    """The messages the client reads, oldest first (both directions must agree)."""
    forwards = bodies((await page(h, client, room_id, backwards=False)).chunk)
    backwards = bodies((await page(h, client, room_id, backwards=True)).chunk)
    assert backwards == forwards[::-1]
    return forwards


def member_event(prev: str | None, now: str) -> Event:
    return Event(
        stream_pos=2,
        event_id="$e",
        room_id="!r:x",
        sender="@a:x",
        type="m.room.member",
        content={"membership": now},
        origin_server_ts=0,
        state_key="@a:x",
        prev_content=None if prev is None else {"membership": prev},
    )


def test_ended_a_join() -> None:
    assert ended_a_join(member_event("join", "leave"))
    assert ended_a_join(member_event("join", "ban"))
    assert not ended_a_join(member_event("invite", "leave"))
    assert not ended_a_join(member_event("leave", "ban"))
    assert not ended_a_join(member_event(None, "ban"))
    assert not ended_a_join(None)


@pytest.mark.parametrize("how", ["leave", "kick", "ban"])
async def test_history_stops_where_the_join_ended(
    make_harness: MakeHarness, autojump_clock: MockClock, how: str
) -> None:
    h = await make_harness()
    alice, bob = await h.client("alice"), await h.client("bob")
    room_id = await h.room(alice, bob)
    await say(h, alice, room_id, "before")
    if how == "leave":
        await h.engine.rooms.membership.leave(h.bare(bob), room_id)
    elif how == "kick":
        await h.engine.rooms.membership.kick(h.bare(alice), room_id, bob.user_id, None)
    else:
        await h.engine.rooms.membership.ban(h.bare(alice), room_id, bob.user_id, None)
    after = await say(h, alice, room_id, "after")
    assert await readable(h, bob, room_id) == ["before"]
    assert await readable(h, alice, room_id) == ["before", "after"]
    # Not even by naming a later position or the event.
    now = await h.storage.rooms.current_stream_pos()
    forwards = await page(h, bob, room_id, backwards=False, to_pos=now)
    assert bodies(forwards.chunk) == ["before"]
    with pytest.raises(NotFoundError):
        await h.engine.rooms.history.get_event(h.bare(bob), room_id, after)
    # The room's own event that ended the join is the last one readable.
    backwards = await page(h, bob, room_id, backwards=True, from_pos=now)
    last = backwards.chunk[0]
    assert (last.type, last.state_key) == ("m.room.member", bob.user_id)
    # Current state and members are for joined users only.
    with pytest.raises(Forbidden):
        await h.engine.rooms.history.get_state(h.bare(bob), room_id)
    with pytest.raises(Forbidden):
        await h.engine.rooms.history.members(h.bare(bob), room_id)


async def test_history_is_closed_to_those_who_never_joined(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness()
    alice, bob, carol = await h.client("alice"), await h.client("bob"), await h.client("carol")
    room_id = await create(h, alice, invite=(bob.user_id, carol.user_id))
    event_id = await say(h, alice, room_id, "secret")
    await h.engine.rooms.membership.leave(h.bare(bob), room_id)  # a rejected invite
    await h.engine.rooms.membership.ban(h.bare(alice), room_id, carol.user_id, None)
    dave = await h.client("dave")
    for client in (bob, carol, dave):
        with pytest.raises(Forbidden):
            await page(h, client, room_id, backwards=True)
        with pytest.raises(Forbidden):
            await h.engine.rooms.history.get_event(h.bare(client), room_id, event_id)


async def test_pages_follow_on_without_gaps(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness()
    alice = await h.client("alice")
    room_id = await h.room(alice)
    sent = [f"m{i}" for i in range(7)]
    for body in sent:
        await say(h, alice, room_id, body)
    everything = (await page(h, alice, room_id, backwards=False)).chunk
    seen: list[Event] = []
    token: int | None = None
    while True:
        step = await page(h, alice, room_id, backwards=True, from_pos=token, limit=3)
        seen.extend(step.chunk)
        if step.end is None:
            break
        token = step.end
    assert [e.event_id for e in seen] == [e.event_id for e in everything][::-1]
    forwards: list[Event] = []
    token = 0
    while token is not None:
        step = await page(h, alice, room_id, backwards=False, from_pos=token, limit=3)
        forwards.extend(step.chunk)
        token = step.end
    assert bodies(forwards) == sent


async def test_state_members_and_joined_members(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness()
    alice, bob, carol = await h.client("alice"), await h.client("bob"), await h.client("carol")
    await h.storage.users.set_profile_field(bob.user_id, "displayname", "Bob")
    room_id = await h.room(alice, bob)
    await h.engine.rooms.invites.invite(h.bare(alice), room_id, carol.user_id, reason=None)
    history = h.engine.rooms.history
    state = await history.get_state(h.bare(bob), room_id)
    assert {(e.type, e.state_key) for e in state} >= {
        ("m.room.create", ""),
        ("m.room.power_levels", ""),
        ("m.room.member", bob.user_id),
        ("m.room.member", carol.user_id),
    }
    event = await history.get_state_event(h.bare(bob), room_id, "m.room.join_rules", "")
    assert event.content == {"join_rule": "public"}
    with pytest.raises(NotFoundError):
        await history.get_state_event(h.bare(bob), room_id, "m.room.topic", "")
    members = await history.members(h.bare(bob), room_id)
    assert {e.state_key for e in members} == {alice.user_id, bob.user_id, carol.user_id}
    invited = await history.members(h.bare(bob), room_id, membership=Membership.INVITE)
    assert [e.state_key for e in invited] == [carol.user_id]
    not_joined = await history.members(h.bare(bob), room_id, not_membership=Membership.JOIN)
    assert [e.state_key for e in not_joined] == [carol.user_id]
    assert await history.joined_members(h.bare(bob), room_id) == {
        alice.user_id: {},
        bob.user_id: {"display_name": "Bob"},
    }
    with pytest.raises(Forbidden):
        await history.get_state(h.bare(carol), room_id)
