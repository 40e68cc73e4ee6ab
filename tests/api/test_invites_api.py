"""Invites through the API: reasons, who may invite, whom, and inviting again.

Spam-policy plugins and invite state: tests/plugins/test_invites.py."""

from __future__ import annotations

from tests.api.rooms_helpers import get_state, invite, join, post, room_path, state_content
from tests.helpers import Api, User, assert_error, q

# -- invite ----------------------------------------------------------------------------


async def test_invite_with_reason(api: Api, alice: User, bob: User) -> None:
    room_id = await api.create_room(alice)
    reply = await post(api, alice, room_id, "invite", {"user_id": bob.user_id, "reason": "food"})
    assert reply.status == 200, reply.body
    reply = await get_state(api, alice, room_id, "m.room.member", bob.user_id)
    assert reply.body == {"membership": "invite", "reason": "food"}
    event = await api.call(
        "GET",
        room_path(room_id, "state", "m.room.member", q(bob.user_id)),
        token=alice,
        query={"format": "event"},
    )
    assert event.body["sender"] == alice.user_id
    assert event.body["state_key"] == bob.user_id


async def test_only_members_invite(api: Api, alice: User, bob: User, carol: User) -> None:
    room_id = await api.create_room(alice, preset="public_chat")
    reply = await post(api, bob, room_id, "invite", {"user_id": carol.user_id})
    assert_error(reply, 403, "M_FORBIDDEN")
    # An invited (not yet joined) user cannot invite either.
    await invite(api, alice, room_id, bob)
    reply = await post(api, bob, room_id, "invite", {"user_id": carol.user_id})
    assert_error(reply, 403, "M_FORBIDDEN")
    missing = await get_state(api, alice, room_id, "m.room.member", carol.user_id)
    assert_error(missing, 404, "M_NOT_FOUND")


async def test_invite_power_level(api: Api, alice: User, bob: User, carol: User) -> None:
    # private_chat: invite level 0, so plain members invite.
    private = await api.create_room(alice, invite=[bob.user_id])
    await join(api, bob, private)
    await invite(api, bob, private, carol)

    # public_chat: invite level 50, plain members cannot.
    public = await api.create_room(alice, preset="public_chat")
    await join(api, bob, public)
    reply = await post(api, bob, public, "invite", {"user_id": carol.user_id})
    assert_error(reply, 403, "M_FORBIDDEN")

    # Raised at creation via power_level_content_override.
    raised = await api.create_room(
        alice,
        preset="public_chat",
        power_level_content_override={
            "invite": 100,
            "users": {alice.user_id: 100, bob.user_id: 99},
        },
    )
    await join(api, bob, raised)
    reply = await post(api, bob, raised, "invite", {"user_id": carol.user_id})
    assert_error(reply, 403, "M_FORBIDDEN")
    await invite(api, alice, raised, carol)


async def test_cannot_invite_joined_or_banned(
    api: Api, alice: User, bob: User, carol: User
) -> None:
    room_id = await api.create_room(alice, preset="public_chat")
    await join(api, bob, room_id)
    reply = await post(api, alice, room_id, "invite", {"user_id": bob.user_id})
    assert_error(reply, 403, "M_FORBIDDEN")
    reply = await post(api, alice, room_id, "invite", {"user_id": alice.user_id})
    assert_error(reply, 403, "M_FORBIDDEN")
    reply = await post(api, alice, room_id, "ban", {"user_id": carol.user_id})
    assert reply.status == 200, reply.body
    reply = await post(api, alice, room_id, "invite", {"user_id": carol.user_id})
    assert_error(reply, 403, "M_FORBIDDEN")
    member = await state_content(api, alice, room_id, "m.room.member", carol.user_id)
    assert member == {"membership": "ban"}


async def test_invite_unknown_remote_and_malformed_users(api: Api, alice: User) -> None:
    room_id = await api.create_room(alice)
    reply = await post(api, alice, room_id, "invite", {"user_id": "@ghost:test.local"})
    assert_error(reply, 404, "M_NOT_FOUND")
    reply = await post(api, alice, room_id, "invite", {"user_id": "@bob:elsewhere.org"})
    assert_error(reply, 403, "M_FORBIDDEN")
    reply = await post(api, alice, room_id, "invite", {"user_id": "bob"})
    assert_error(reply, 400, "M_INVALID_PARAM")
    reply = await post(api, alice, room_id, "invite", {})
    assert_error(reply, 400, "M_MISSING_PARAM")
    reply = await post(api, alice, room_id, "invite", {"user_id": 7})
    assert_error(reply, 400, "M_BAD_JSON")


async def test_invite_again_after_leave(api: Api, alice: User, bob: User) -> None:
    room_id = await api.create_room(alice, invite=[bob.user_id])
    await join(api, bob, room_id)
    assert (await post(api, bob, room_id, "leave", {})).status == 200
    assert_error(await post(api, bob, room_id, "join", {}), 403, "M_FORBIDDEN")
    await invite(api, alice, room_id, bob)
    await join(api, bob, room_id)
