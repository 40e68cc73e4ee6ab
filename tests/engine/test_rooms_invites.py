"""Invites in the engine: who may invite whom, the invitee's invite permission config
and the plugins deciding, what is stored with an invite, and the invite_state the
invitee's /sync renders from it."""

from __future__ import annotations

import dataclasses

import pytest
from trio.testing import MockClock

from backends.records import Event, JsonDict, Membership
from homeserver.engine.events import INVITE_REASON_HIDDEN, INVITE_ROOM_STATE
from homeserver.engine.rooms import invite_state_events
from homeserver.engine.rooms.invites import (
    INVITE_PERMISSION_CONFIG,
    effective_types,
    invite_blocked,
    redact_state,
)
from homeserver.errors import Forbidden, InvalidParam, MatrixError, NotFoundError
from homeserver.namespace import INVITE_STATE_POLICY
from plugins.api import InviteRedaction
from tests.engine.conftest import Client, Harness, MakeHarness
from tests.engine.rooms_helpers import create, membership, scripted

STATE_TYPES = ("m.room.create", "m.room.name", "m.room.topic", "m.room.join_rules")


async def invite(
    h: Harness,
    inviter: Client,
    room_id: str,
    invitee: Client,
    *,
    reason: str | None = None,
    is_direct: bool = False,
) -> None:
    await h.engine.rooms.invites.invite(
        h.bare(inviter), room_id, invitee.user_id, reason=reason, is_direct=is_direct
    )


async def stored_invite(h: Harness, room_id: str, invitee: Client) -> Event:
    record = await h.storage.rooms.get_membership(room_id, invitee.user_id)
    assert record is not None and record.membership == Membership.INVITE
    event = await h.storage.rooms.get_event(record.event_id)
    assert event is not None
    return event


async def synced_invite_state(h: Harness, invitee: Client, room_id: str) -> list[JsonDict]:
    body = await h.sync(invitee)
    events: list[JsonDict] = body["rooms"]["invite"][room_id]["invite_state"]["events"]
    return events


def types_of(events: list[JsonDict]) -> list[str]:
    return [e["type"] for e in events]


# -- pure pieces -----------------------------------------------------------------------


def test_effective_types_are_narrowed_by_the_room_only() -> None:
    assert effective_types(STATE_TYPES, None) == list(STATE_TYPES)
    assert effective_types(STATE_TYPES, {"types": ["m.room.name", "org.extra"]}) == ["m.room.name"]
    assert effective_types(STATE_TYPES, {"types": "m.room.name"}) == list(STATE_TYPES)


def test_invite_blocked() -> None:
    alice = "@alice:test.local"
    assert not invite_blocked(None, alice)
    assert not invite_blocked({}, alice)
    assert invite_blocked({"block_all": True}, alice)
    assert not invite_blocked({"default_action": "allow"}, alice)
    assert invite_blocked({"default_action": "block"}, alice)
    assert not invite_blocked({"default_action": "block", "allow_users": [alice]}, alice)
    assert not invite_blocked({"default_action": "block", "allow_servers": ["test.*"]}, alice)
    assert invite_blocked({"default_action": "block", "allow_servers": ["other.*"]}, alice)


def test_redact_state_leaves_its_input_alone() -> None:
    shared: list[JsonDict] = [
        {"type": "m.room.name", "state_key": "", "sender": "@a:x", "content": {"name": "N"}},
        {"type": "m.room.topic", "state_key": "", "sender": "@a:x", "content": {"topic": "T"}},
    ]
    redaction = InviteRedaction(
        state_types=frozenset({"m.room.name"}), state_fields=frozenset({("m.room.topic", "topic")})
    )
    assert redact_state(shared, redaction) == [
        {"type": "m.room.topic", "state_key": "", "sender": "@a:x", "content": {}}
    ]
    assert shared[1]["content"] == {"topic": "T"}


def test_invite_state_events_render_the_stored_invite() -> None:
    shared = [{"type": "m.room.name", "state_key": "", "sender": "@a:x", "content": {"name": "N"}}]
    invite = Event(
        stream_pos=7,
        event_id="$e",
        room_id="!r:x",
        sender="@a:x",
        type="m.room.member",
        content={"membership": "invite", "reason": "why"},
        origin_server_ts=0,
        state_key="@b:x",
        unsigned={INVITE_ROOM_STATE: [*shared, "not an event"]},
    )
    member = {
        "type": "m.room.member",
        "state_key": "@b:x",
        "sender": "@a:x",
        "content": {"membership": "invite", "reason": "why"},
    }
    assert invite_state_events(invite) == [*shared, member]
    # A spam policy hid the reason from the invitee: the stored event keeps it.
    hidden = dataclasses.replace(invite, unsigned={**invite.unsigned, INVITE_REASON_HIDDEN: True})
    assert invite_state_events(hidden) == [*shared, {**member, "content": {"membership": "invite"}}]
    assert hidden.content["reason"] == "why"
    assert invite_state_events(None) == []


# -- the service -----------------------------------------------------------------------


async def test_an_invite_stores_the_shared_state_and_reaches_sync(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(invite_state_types=STATE_TYPES)
    alice, bob = await h.client("alice"), await h.client("bob")
    room_id = await create(h, alice, name="Lunch", topic="Food")
    await invite(h, alice, room_id, bob, reason="join us", is_direct=True)
    event = await stored_invite(h, room_id, bob)
    assert event.content == {"membership": "invite", "reason": "join us", "is_direct": True}
    assert event.sender == alice.user_id
    shared = event.unsigned[INVITE_ROOM_STATE]
    assert types_of(shared) == ["m.room.create", "m.room.join_rules", "m.room.name", "m.room.topic"]
    assert INVITE_REASON_HIDDEN not in event.unsigned
    synced = await synced_invite_state(h, bob, room_id)
    assert synced[:-1] == shared
    assert synced[-1]["type"] == "m.room.member"
    assert synced[-1]["content"]["reason"] == "join us"


async def test_a_room_policy_narrows_the_shared_state(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(invite_state_types=STATE_TYPES)
    alice, bob, carol = await h.client("alice"), await h.client("bob"), await h.client("carol")
    room_id = await create(
        h,
        alice,
        name="Lunch",
        topic="Food",
        initial_state=((INVITE_STATE_POLICY, "", {"types": ["m.room.name"]}),),
        invite=(bob.user_id,),
    )
    # At creation (decided on the state the room will have) and later alike.
    await invite(h, alice, room_id, carol)
    for client in (bob, carol):
        event = await stored_invite(h, room_id, client)
        assert types_of(event.unsigned[INVITE_ROOM_STATE]) == ["m.room.name"]


async def test_who_may_invite_whom(make_harness: MakeHarness, autojump_clock: MockClock) -> None:
    h = await make_harness()
    alice, bob = await h.client("alice"), await h.client("bob")
    carol, dave = await h.client("carol"), await h.client("dave")
    room_id = await h.room(alice, bob)  # public: inviting needs level 50
    with pytest.raises(Forbidden, match="permission"):
        await invite(h, bob, room_id, carol)
    with pytest.raises(Forbidden, match="not in room"):
        await invite(h, dave, room_id, carol)
    with pytest.raises(Forbidden, match="already in the room"):
        await invite(h, alice, room_id, bob)
    await h.engine.rooms.membership.ban(h.bare(alice), room_id, carol.user_id, None)
    with pytest.raises(Forbidden, match="banned"):
        await invite(h, alice, room_id, carol)
    for user_id, error in (
        ("dave", InvalidParam),
        ("@dave:elsewhere.example", Forbidden),
        ("@nobody:test.local", NotFoundError),
    ):
        with pytest.raises(error):
            await h.engine.rooms.invites.invite(h.bare(alice), room_id, user_id, reason=None)
    await invite(h, alice, room_id, dave)
    assert await membership(h, room_id, dave) == Membership.INVITE


async def test_the_invitee_permission_config_decides(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness()
    alice, bob, carol = await h.client("alice"), await h.client("bob"), await h.client("carol")
    room_id = await create(h, alice)
    await h.storage.account_data.put_account_data(
        bob.user_id,
        None,
        INVITE_PERMISSION_CONFIG,
        {"default_action": "block", "allow_users": [carol.user_id]},
    )
    with pytest.raises(MatrixError) as info:
        await invite(h, alice, room_id, bob)
    assert (info.value.status, info.value.errcode) == (403, "M_INVITE_BLOCKED")
    assert await membership(h, room_id, bob) is None
    await invite(h, alice, room_id, carol)
    assert await membership(h, room_id, carol) == Membership.INVITE


async def test_a_plugin_denial_raises_and_stores_nothing(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(plugins=scripted(check_invite="deny", errcode="M_LIMIT_EXCEEDED"))
    alice, bob = await h.client("alice"), await h.client("bob")
    room_id = await create(h, alice)
    with pytest.raises(MatrixError) as info:
        await invite(h, alice, room_id, bob)
    assert info.value.errcode == "M_LIMIT_EXCEEDED"
    assert await membership(h, room_id, bob) is None


async def test_a_dropped_invite_succeeds_and_stores_nothing(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(plugins=scripted(check_invite="drop"))
    alice, bob = await h.client("alice"), await h.client("bob")
    room_id = await create(h, alice, invite=(bob.user_id,))
    await invite(h, alice, room_id, bob)
    assert await membership(h, room_id, bob) is None
    assert room_id not in (await h.sync(bob))["rooms"]["invite"]


async def test_a_redacted_invite_hides_what_the_plugin_says(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(
        invite_state_types=STATE_TYPES,
        plugins=scripted(
            redact_reason=True,
            redact_types=["m.room.name"],
            redact_fields=[["m.room.topic", "topic"]],
        ),
    )
    alice, bob = await h.client("alice"), await h.client("bob")
    room_id = await create(h, alice, name="Secret", topic="Hidden")
    await invite(h, alice, room_id, bob, reason="spammy")
    event = await stored_invite(h, room_id, bob)
    assert event.unsigned[INVITE_REASON_HIDDEN] is True
    # The room itself keeps everything.
    assert event.content["reason"] == "spammy"
    synced = await synced_invite_state(h, bob, room_id)
    assert types_of(synced) == [
        "m.room.create",
        "m.room.join_rules",
        "m.room.topic",
        "m.room.member",
    ]
    assert synced[2]["content"] == {}
    assert synced[-1]["content"] == {"membership": "invite"}
