"""Membership through the API: join, leave, kick, ban, unban, forget, joined rooms."""

from __future__ import annotations

from tests.api.rooms_helpers import (
    invite,
    join,
    make_moderated_room,
    messages,
    post,
    room_path,
    set_levels,
    state_content,
    texts,
)
from tests.helpers import Api, User, assert_error, q

# -- join ------------------------------------------------------------------------------


async def test_anyone_joins_a_public_room(api: Api, alice: User, bob: User) -> None:
    room_id = await api.create_room(alice, preset="public_chat")
    await join(api, bob, room_id)
    member = await state_content(api, alice, room_id, "m.room.member", bob.user_id)
    assert member == {"membership": "join"}
    assert (await api.call("GET", "joined_rooms", token=bob)).body == {"joined_rooms": [room_id]}


async def test_join_carries_reason_and_displayname(api: Api, alice: User, bob: User) -> None:
    room_id = await api.create_room(alice, preset="public_chat")
    reply = await api.call(
        "PUT", f"profile/{q(bob.user_id)}/displayname", token=bob, body={"displayname": "Bob"}
    )
    assert reply.status == 200, reply.body
    reply = await post(api, bob, room_id, "join", {"reason": "hungry"})
    assert reply.status == 200, reply.body
    member = await state_content(api, alice, room_id, "m.room.member", bob.user_id)
    assert member == {"membership": "join", "displayname": "Bob", "reason": "hungry"}


async def test_join_alias_path(api: Api, alice: User, bob: User) -> None:
    room_id = await api.create_room(alice, preset="public_chat")
    reply = await api.call("POST", f"join/{q(room_id)}", token=bob, body={})
    assert reply.status == 200, reply.body
    assert reply.body == {"room_id": room_id}
    assert (await api.call("GET", "joined_rooms", token=bob)).body == {"joined_rooms": [room_id]}


async def test_join_by_alias_is_not_found(api: Api, bob: User) -> None:
    reply = await api.call("POST", f"join/{q('#lunch:test.local')}", token=bob, body={})
    assert_error(reply, 404, "M_NOT_FOUND")


async def test_join_invite_only_room(api: Api, alice: User, bob: User, carol: User) -> None:
    room_id = await api.create_room(alice, preset="private_chat")
    refused = await post(api, bob, room_id, "join", {})
    assert_error(refused, 403, "M_FORBIDDEN")
    await invite(api, alice, room_id, bob)
    refused = await post(api, carol, room_id, "join", {})
    assert_error(refused, 403, "M_FORBIDDEN")
    await join(api, bob, room_id)
    assert (await api.call("GET", "joined_rooms", token=carol)).body == {"joined_rooms": []}


async def test_join_unknown_room(api: Api, bob: User) -> None:
    reply = await post(api, bob, "!nowhere:test.local", "join", {})
    assert_error(reply, 404, "M_NOT_FOUND")
    reply = await api.call("POST", f"join/{q('!nowhere:test.local')}", token=bob, body={})
    assert_error(reply, 404, "M_NOT_FOUND")


async def test_join_malformed_room_id(api: Api, bob: User) -> None:
    reply = await post(api, bob, "not-a-room", "join", {})
    assert_error(reply, 400, "M_INVALID_PARAM")


# -- leave -----------------------------------------------------------------------------


async def test_leave_with_reason(api: Api, alice: User, bob: User) -> None:
    room_id = await api.create_room(alice, preset="public_chat")
    await join(api, bob, room_id)
    reply = await post(api, bob, room_id, "leave", {"reason": "full"})
    assert reply.status == 200, reply.body
    assert reply.body == {}
    member = await state_content(api, alice, room_id, "m.room.member", bob.user_id)
    assert member == {"membership": "leave", "reason": "full"}
    assert (await api.call("GET", "joined_rooms", token=bob)).body == {"joined_rooms": []}
    # Leaving twice is refused: there is nothing to leave.
    assert_error(await post(api, bob, room_id, "leave", {}), 403, "M_FORBIDDEN")


async def test_leave_without_body(api: Api, alice: User, bob: User) -> None:
    room_id = await api.create_room(alice, preset="public_chat")
    await join(api, bob, room_id)
    reply = await api.call("POST", room_path(room_id, "leave"), token=bob)
    assert reply.status == 200, reply.body


async def test_reject_invite(api: Api, alice: User, bob: User) -> None:
    room_id = await api.create_room(alice, invite=[bob.user_id])
    reply = await post(api, bob, room_id, "leave", {"reason": "no thanks"})
    assert reply.status == 200, reply.body
    member = await state_content(api, alice, room_id, "m.room.member", bob.user_id)
    assert member == {"membership": "leave", "reason": "no thanks"}
    # The invite is gone: joining is refused again.
    assert_error(await post(api, bob, room_id, "join", {}), 403, "M_FORBIDDEN")


async def test_leave_unknown_or_never_joined_room(api: Api, alice: User, bob: User) -> None:
    assert_error(await post(api, bob, "!nowhere:test.local", "leave", {}), 404, "M_NOT_FOUND")
    room_id = await api.create_room(alice, preset="public_chat")
    assert_error(await post(api, bob, room_id, "leave", {}), 403, "M_FORBIDDEN")


async def test_banned_user_cannot_leave(api: Api, alice: User, bob: User) -> None:
    room_id = await api.create_room(alice, preset="public_chat")
    await join(api, bob, room_id)
    assert (await post(api, alice, room_id, "ban", {"user_id": bob.user_id})).status == 200
    assert_error(await post(api, bob, room_id, "leave", {}), 403, "M_FORBIDDEN")
    member = await state_content(api, alice, room_id, "m.room.member", bob.user_id)
    assert member == {"membership": "ban"}


# -- kick / ban / unban ----------------------------------------------------------------


async def test_kick_with_reason(api: Api, alice: User, bob: User) -> None:
    room_id = await make_moderated_room(api, alice, bob)
    reply = await post(api, alice, room_id, "kick", {"user_id": bob.user_id, "reason": "spam"})
    assert reply.status == 200, reply.body
    assert reply.body == {}
    event = await api.call(
        "GET",
        room_path(room_id, "state", "m.room.member", q(bob.user_id)),
        token=alice,
        query={"format": "event"},
    )
    assert event.body["content"] == {"membership": "leave", "reason": "spam"}
    assert event.body["sender"] == alice.user_id
    # A kicked user may come back to a public room.
    await join(api, bob, room_id)


async def test_plain_member_cannot_kick_or_ban(
    api: Api, alice: User, bob: User, carol: User
) -> None:
    room_id = await make_moderated_room(api, alice, bob, carol)
    for action in ("kick", "ban"):
        reply = await post(api, bob, room_id, action, {"user_id": carol.user_id})
        assert_error(reply, 403, "M_FORBIDDEN")
    member = await state_content(api, alice, room_id, "m.room.member", carol.user_id)
    assert member["membership"] == "join"


async def test_moderator_kicks_lower_but_not_equal_or_higher(
    api: Api, alice: User, bob: User, carol: User
) -> None:
    dave = await api.register("dave")
    room_id = await make_moderated_room(api, alice, bob, carol, dave)
    await set_levels(api, alice, room_id, {bob.user_id: 50, dave.user_id: 50})
    # bob (50) kicks carol (0).
    assert (await post(api, bob, room_id, "kick", {"user_id": carol.user_id})).status == 200
    # bob cannot kick dave (50) nor alice (100), nor ban them.
    for target in (dave, alice):
        for action in ("kick", "ban"):
            reply = await post(api, bob, room_id, action, {"user_id": target.user_id})
            assert_error(reply, 403, "M_FORBIDDEN")
        member = await state_content(api, alice, room_id, "m.room.member", target.user_id)
        assert member["membership"] == "join"


async def test_kick_needs_target_in_room(api: Api, alice: User, bob: User) -> None:
    room_id = await make_moderated_room(api, alice)
    reply = await post(api, alice, room_id, "kick", {"user_id": bob.user_id})
    assert_error(reply, 403, "M_FORBIDDEN")
    reply = await post(api, alice, room_id, "kick", {"user_id": "not-a-user"})
    assert_error(reply, 400, "M_INVALID_PARAM")
    reply = await post(api, alice, room_id, "kick", {})
    assert_error(reply, 400, "M_MISSING_PARAM")


async def test_kick_revokes_an_invite(api: Api, alice: User, bob: User) -> None:
    room_id = await api.create_room(alice, invite=[bob.user_id])
    assert (await post(api, alice, room_id, "kick", {"user_id": bob.user_id})).status == 200
    assert_error(await post(api, bob, room_id, "join", {}), 403, "M_FORBIDDEN")


async def test_ban_unban_rejoin(api: Api, alice: User, bob: User) -> None:
    room_id = await make_moderated_room(api, alice, bob)
    reply = await post(api, alice, room_id, "ban", {"user_id": bob.user_id, "reason": "rude"})
    assert reply.status == 200, reply.body
    member = await state_content(api, alice, room_id, "m.room.member", bob.user_id)
    assert member == {"membership": "ban", "reason": "rude"}
    assert_error(await post(api, bob, room_id, "join", {}), 403, "M_FORBIDDEN")
    assert_error(
        await api.call("POST", f"join/{q(room_id)}", token=bob, body={}), 403, "M_FORBIDDEN"
    )
    assert (await api.call("GET", "joined_rooms", token=bob)).body == {"joined_rooms": []}

    reply = await post(api, alice, room_id, "unban", {"user_id": bob.user_id, "reason": "sorry"})
    assert reply.status == 200, reply.body
    member = await state_content(api, alice, room_id, "m.room.member", bob.user_id)
    assert member == {"membership": "leave", "reason": "sorry"}
    await join(api, bob, room_id)


async def test_unban_needs_a_ban_and_power(api: Api, alice: User, bob: User, carol: User) -> None:
    room_id = await make_moderated_room(api, alice, bob)
    reply = await post(api, alice, room_id, "unban", {"user_id": carol.user_id})
    assert_error(reply, 403, "M_FORBIDDEN")
    assert (await post(api, alice, room_id, "ban", {"user_id": carol.user_id})).status == 200
    reply = await post(api, bob, room_id, "unban", {"user_id": carol.user_id})
    assert_error(reply, 403, "M_FORBIDDEN")
    member = await state_content(api, alice, room_id, "m.room.member", carol.user_id)
    assert member == {"membership": "ban"}


async def test_unban_needs_kick_level_too(api: Api, alice: User, bob: User, carol: User) -> None:
    # The auth rules: lifting a ban is a leave by another user, so it needs both the
    # ban level and the kick level.
    room_id = await api.create_room(
        alice,
        preset="public_chat",
        power_level_content_override={"kick": 80, "ban": 50},
    )
    await join(api, bob, room_id)
    await set_levels(api, alice, room_id, {bob.user_id: 60})
    assert (await post(api, bob, room_id, "ban", {"user_id": carol.user_id})).status == 200
    reply = await post(api, bob, room_id, "unban", {"user_id": carol.user_id})
    assert_error(reply, 403, "M_FORBIDDEN")
    assert (await post(api, alice, room_id, "unban", {"user_id": carol.user_id})).status == 200


async def test_ban_a_non_member_then_they_cannot_join(api: Api, alice: User, bob: User) -> None:
    room_id = await make_moderated_room(api, alice)
    assert (await post(api, alice, room_id, "ban", {"user_id": bob.user_id})).status == 200
    assert_error(await post(api, bob, room_id, "join", {}), 403, "M_FORBIDDEN")


async def test_cannot_ban_oneself(api: Api, alice: User, bob: User) -> None:
    room_id = await make_moderated_room(api, alice, bob)
    reply = await post(api, alice, room_id, "ban", {"user_id": alice.user_id})
    assert_error(reply, 403, "M_FORBIDDEN")
    member = await state_content(api, alice, room_id, "m.room.member", alice.user_id)
    assert member["membership"] == "join"
    # Kicking oneself is just leaving.
    assert (await post(api, alice, room_id, "kick", {"user_id": alice.user_id})).status == 200
    member = await state_content(api, bob, room_id, "m.room.member", alice.user_id)
    assert member == {"membership": "leave"}


async def test_non_member_cannot_moderate(api: Api, alice: User, bob: User, carol: User) -> None:
    room_id = await make_moderated_room(api, alice, bob)
    for action in ("kick", "ban", "unban"):
        reply = await post(api, carol, room_id, action, {"user_id": bob.user_id})
        assert_error(reply, 403, "M_FORBIDDEN")


# -- forget ----------------------------------------------------------------------------


async def test_forget(api: Api, alice: User, bob: User) -> None:
    room_id = await make_moderated_room(api, alice, bob)
    await api.send_text(alice, room_id, "hello", "t1")

    reply = await post(api, bob, room_id, "forget", {})
    assert_error(reply, 400, "M_UNKNOWN")

    assert (await post(api, bob, room_id, "leave", {})).status == 200
    # Before forgetting, the history up to the leave is still readable.
    assert await texts(api, bob, room_id) == ["hello"]
    reply = await post(api, bob, room_id, "forget", {})
    assert reply.status == 200, reply.body
    assert reply.body == {}

    sync = await api.sync(bob, filter='{"room":{"include_leave":true}}')
    for section in ("join", "invite", "leave"):
        assert room_id not in sync["rooms"][section]
    assert_error(await messages(api, bob, room_id), 403, "M_FORBIDDEN")

    # Rejoining brings the room back.
    await join(api, bob, room_id)
    assert room_id in (await api.sync(bob))["rooms"]["join"]


async def test_forget_invited_or_unknown(api: Api, alice: User, bob: User) -> None:
    room_id = await api.create_room(alice, invite=[bob.user_id])
    assert_error(await post(api, bob, room_id, "forget", {}), 400, "M_UNKNOWN")
    assert_error(await post(api, bob, "!nowhere:test.local", "forget", {}), 404, "M_NOT_FOUND")


# -- joined rooms and acting for oneself -----------------------------------------------


async def test_joined_rooms_tracks_membership(api: Api, alice: User, bob: User) -> None:
    room_a = await api.create_room(alice, preset="public_chat")
    room_b = await api.create_room(alice, preset="public_chat")
    assert (await api.call("GET", "joined_rooms", token=bob)).body == {"joined_rooms": []}
    await join(api, bob, room_a)
    await join(api, bob, room_b)
    rooms = (await api.call("GET", "joined_rooms", token=bob)).body["joined_rooms"]
    assert sorted(rooms) == sorted([room_a, room_b])
    assert (await post(api, bob, room_a, "leave", {})).status == 200
    assert (await api.call("GET", "joined_rooms", token=bob)).body == {"joined_rooms": [room_b]}
    assert_error(await api.call("GET", "joined_rooms"), 401, "M_MISSING_TOKEN")


async def test_nobody_acts_as_another_user(api: Api, alice: User, bob: User) -> None:
    room_id = await make_moderated_room(api, alice, bob)
    # Paths that name a user refuse a requester who is someone else.
    reply = await api.call("POST", f"user/{q(alice.user_id)}/filter", token=bob, body={"room": {}})
    assert_error(reply, 403, "M_FORBIDDEN")
    reply = await api.call(
        "PUT",
        f"user/{q(alice.user_id)}/rooms/{q(room_id)}/account_data/m.tag",
        token=bob,
        body={"tags": {}},
    )
    assert_error(reply, 403, "M_FORBIDDEN")
    reply = await api.call(
        "PUT", f"profile/{q(alice.user_id)}/displayname", token=bob, body={"displayname": "x"}
    )
    assert_error(reply, 403, "M_FORBIDDEN")
    # Membership endpoints act for the requester only: bob's leave never touches alice.
    reply = await post(api, bob, room_id, "leave", {"user_id": alice.user_id})
    assert reply.status == 200
    member = await state_content(api, alice, room_id, "m.room.member", alice.user_id)
    assert member["membership"] == "join"
    member = await state_content(api, alice, room_id, "m.room.member", bob.user_id)
    assert member["membership"] == "leave"
    # Events are always sent as the requester.
    event_id = await api.send_text(alice, room_id, "mine", "t1")
    event = await api.call("GET", room_path(room_id, "event", q(event_id)), token=alice)
    assert event.body["sender"] == alice.user_id
