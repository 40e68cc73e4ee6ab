"""The first-contact policy through HTTP: invites from users who share no room with the
invitee are redacted (no reason, no avatar) or dropped; invites between users who
share a room are untouched; config errors."""

from __future__ import annotations

from typing import Any

import pytest

from backends.records import JsonDict
from tests.helpers import Api, User
from tests.plugins.test_builtin_common import (
    FIRST_CONTACT,
    invite,
    invite_state,
    join,
    load_error,
    serve,
    shared,
)

AVATAR = {"type": "m.room.avatar", "state_key": "", "content": {"url": "mxc://test.local/a"}}


async def room_with_avatar(api: Api, user: User) -> str:
    return await api.create_room(user, name="Chat", topic="Talk", initial_state=[AVATAR])


async def acquaintances(api: Api, a: User, b: User) -> None:
    """a and b both join a public room."""
    room_id = await api.create_room(a, preset="public_chat")
    await join(api, b, room_id)


async def delivered(api: Api, user: User, room_id: str) -> list[JsonDict]:
    events = await invite_state(api, user, room_id)
    assert events is not None, "the invite is not delivered"
    return events


@pytest.mark.parametrize("config", [{}, {"action": "redact"}])
async def test_stranger_invite_is_redacted(config: dict[str, Any]) -> None:
    async with serve((FIRST_CONTACT, config)) as api:
        stranger, bob = await api.register("stranger"), await api.register("bob")
        room_id = await room_with_avatar(api, stranger)
        reply = await invite(api, stranger, room_id, bob, reason="click my avatar")
        assert (reply.status, reply.body) == (200, {})
        events = await delivered(api, bob, room_id)
        assert shared(events, "m.room.member", bob.user_id) == {"membership": "invite"}
        assert shared(events, "m.room.avatar") is None
        assert shared(events, "m.room.name") == {"name": "Chat"}
        assert shared(events, "m.room.topic") == {"topic": "Talk"}
        # Bob can still accept; the room's members see the invite's reason as sent.
        await join(api, bob, room_id)


async def test_acquaintance_invite_is_untouched() -> None:
    async with serve((FIRST_CONTACT, {"action": "drop"})) as api:
        alice, bob = await api.register("alice"), await api.register("bob")
        await acquaintances(api, alice, bob)
        room_id = await room_with_avatar(api, alice)
        assert (await invite(api, alice, room_id, bob, reason="our new room")).status == 200
        events = await delivered(api, bob, room_id)
        assert shared(events, "m.room.member", bob.user_id) == {
            "membership": "invite",
            "reason": "our new room",
        }
        assert shared(events, "m.room.avatar") == AVATAR["content"]


async def test_stranger_invite_is_dropped() -> None:
    async with serve((FIRST_CONTACT, {"action": "drop"})) as api:
        stranger, bob = await api.register("stranger"), await api.register("bob")
        room_id = await room_with_avatar(api, stranger)
        reply = await invite(api, stranger, room_id, bob, reason="hi")
        assert (reply.status, reply.body) == (200, {})
        assert await invite_state(api, bob, room_id) is None
        # Once they share a room, the invite goes through.
        await acquaintances(api, bob, stranger)
        assert (await invite(api, stranger, room_id, bob, reason="hi")).status == 200
        assert await invite_state(api, bob, room_id) is not None


async def test_pending_invite_is_not_a_shared_room() -> None:
    """Only joined rooms count: an invite (even a delivered one) is not contact."""
    async with serve((FIRST_CONTACT, {})) as api:
        stranger, bob = await api.register("stranger"), await api.register("bob")
        first = await room_with_avatar(api, stranger)
        second = await room_with_avatar(api, stranger)
        assert (await invite(api, stranger, first, bob, reason="one")).status == 200
        assert (await invite(api, stranger, second, bob, reason="two")).status == 200
        events = await delivered(api, bob, second)
        assert shared(events, "m.room.member", bob.user_id) == {"membership": "invite"}


@pytest.mark.parametrize(
    ("config", "key", "says"),
    [
        ({"action": "deny"}, "action", "expected one of 'redact', 'drop'"),
        ({"action": None}, "action", "expected one of"),
        ({"actions": "drop"}, "actions", "unknown key"),
    ],
)
def test_config_errors(config: dict[str, Any], key: str, says: str) -> None:
    message = load_error(FIRST_CONTACT, config)
    assert f"config key '{key}': " in message
    assert says in message
