"""Sending through the API: messages, transaction ids, state events and their rules."""

from __future__ import annotations

from typing import Any

from tests.api.rooms_helpers import (
    EVENT_ID_RE,
    SERVER,
    get_state,
    invite,
    join,
    login,
    make_moderated_room,
    post,
    put_state,
    room_path,
    send,
    set_levels,
    state_content,
    texts,
)
from tests.helpers import Api, User, assert_error, q

# -- send ------------------------------------------------------------------------------


async def test_send_event_format(api: Api, alice: User) -> None:
    room_id = await api.create_room(alice)
    content = {"msgtype": "m.text", "body": "hello"}
    reply = await send(api, alice, room_id, content, "txn1")
    assert reply.status == 200, reply.body
    assert set(reply.body) == {"event_id"}
    event_id = reply.body["event_id"]
    assert EVENT_ID_RE.match(event_id)

    event = await api.call("GET", room_path(room_id, "event", q(event_id)), token=alice)
    assert event.status == 200, event.body
    body = event.body
    assert set(body) == {
        "event_id",
        "room_id",
        "sender",
        "type",
        "content",
        "origin_server_ts",
        "unsigned",
    }
    assert body["event_id"] == event_id
    assert body["room_id"] == room_id
    assert body["sender"] == alice.user_id
    assert body["type"] == "m.room.message"
    assert body["content"] == content
    assert isinstance(body["origin_server_ts"], int) and body["origin_server_ts"] > 1.6e12
    assert isinstance(body["unsigned"]["age"], int) and body["unsigned"]["age"] >= 0
    # The sending device sees its transaction id.
    assert body["unsigned"]["transaction_id"] == "txn1"


async def test_transaction_id_only_for_the_sending_device(api: Api, alice: User, bob: User) -> None:
    room_id = await make_moderated_room(api, alice, bob)
    event_id = await api.send_text(alice, room_id, "hi", "txnA")
    other_device = await login(api, alice)
    for user in (bob, other_device):
        event = await api.call("GET", room_path(room_id, "event", q(event_id)), token=user)
        assert event.status == 200, event.body
        assert "transaction_id" not in event.body["unsigned"]
        assert event.body["sender"] == alice.user_id


async def test_send_is_idempotent_per_device_and_txn(api: Api, alice: User, bob: User) -> None:
    room_id = await make_moderated_room(api, alice, bob)
    first = await send(api, alice, room_id, {"msgtype": "m.text", "body": "once"}, "same")
    again = await send(api, alice, room_id, {"msgtype": "m.text", "body": "once"}, "same")
    assert first.status == again.status == 200
    assert first.body["event_id"] == again.body["event_id"]
    assert await texts(api, alice, room_id) == ["once"]

    # Same txn id, other device of the same user: a new event.
    device2 = await login(api, alice)
    other = await send(api, device2, room_id, {"msgtype": "m.text", "body": "twice"}, "same")
    assert other.status == 200
    assert other.body["event_id"] != first.body["event_id"]
    # Same txn id, other user: a new event.
    bobs = await send(api, bob, room_id, {"msgtype": "m.text", "body": "bob"}, "same")
    assert bobs.status == 200
    assert bobs.body["event_id"] not in (first.body["event_id"], other.body["event_id"])
    # Same txn id, other event type: a different request, a new event.
    typed = await send(api, alice, room_id, {"x": 1}, "same", event_type="org.example.ping")
    assert typed.status == 200
    assert typed.body["event_id"] != first.body["event_id"]

    assert await texts(api, alice, room_id) == ["once", "twice", "bob"]


async def test_send_requires_membership(api: Api, alice: User, bob: User) -> None:
    room_id = await api.create_room(alice, preset="public_chat")
    reply = await send(api, bob, room_id, {"msgtype": "m.text", "body": "x"}, "t")
    assert_error(reply, 403, "M_FORBIDDEN")
    # Invited is not joined.
    await invite(api, alice, room_id, bob)
    reply = await send(api, bob, room_id, {"msgtype": "m.text", "body": "x"}, "t")
    assert_error(reply, 403, "M_FORBIDDEN")
    # Unknown room: the same answer (no probing for room existence).
    reply = await send(api, bob, "!nowhere:test.local", {"body": "x"}, "t")
    assert_error(reply, 403, "M_FORBIDDEN")
    assert await texts(api, alice, room_id) == []


async def test_send_after_leave_is_refused(api: Api, alice: User, bob: User) -> None:
    room_id = await make_moderated_room(api, alice, bob)
    assert (await post(api, bob, room_id, "leave", {})).status == 200
    reply = await send(api, bob, room_id, {"msgtype": "m.text", "body": "x"}, "t")
    assert_error(reply, 403, "M_FORBIDDEN")


async def test_events_default_blocks_members(api: Api, alice: User, bob: User) -> None:
    room_id = await api.create_room(
        alice, preset="public_chat", power_level_content_override={"events_default": 10}
    )
    await join(api, bob, room_id)
    reply = await send(api, bob, room_id, {"msgtype": "m.text", "body": "x"}, "t")
    assert_error(reply, 403, "M_FORBIDDEN")
    assert (await send(api, alice, room_id, {"msgtype": "m.text", "body": "y"}, "t")).status == 200
    await set_levels(api, alice, room_id, {bob.user_id: 10})
    assert (await send(api, bob, room_id, {"msgtype": "m.text", "body": "z"}, "t")).status == 200
    assert await texts(api, alice, room_id) == ["y", "z"]


async def test_event_type_level_blocks_members(api: Api, alice: User, bob: User) -> None:
    room_id = await api.create_room(
        alice,
        preset="public_chat",
        power_level_content_override={"events": {"org.example.alert": 50}},
    )
    await join(api, bob, room_id)
    reply = await send(api, bob, room_id, {}, "t", event_type="org.example.alert")
    assert_error(reply, 403, "M_FORBIDDEN")
    assert (await send(api, bob, room_id, {}, "t", event_type="org.example.other")).status == 200


async def test_send_bad_bodies(api: Api, alice: User) -> None:
    room_id = await api.create_room(alice)
    path = room_path(room_id, "send", "m.room.message", "t1")
    assert_error(await api.call("PUT", path, token=alice, raw=b"nope"), 400, "M_NOT_JSON")
    assert_error(await api.call("PUT", path, token=alice, body=[1]), 400, "M_BAD_JSON")
    big = {"body": "x" * 70000}
    assert_error(await send(api, alice, room_id, big, "t2"), 413, "M_TOO_LARGE")
    assert await texts(api, alice, room_id) == []


# -- state -----------------------------------------------------------------------------


async def test_state_put_get_empty_state_key_paths(api: Api, alice: User) -> None:
    room_id = await api.create_room(alice)
    reply = await api.call(
        "PUT", room_path(room_id, "state", "m.room.name"), token=alice, body={"name": "One"}
    )
    assert reply.status == 200, reply.body
    assert EVENT_ID_RE.match(reply.body["event_id"])
    first_id = reply.body["event_id"]
    for path in ("state/m.room.name", "state/m.room.name/"):
        got = await api.call("GET", room_path(room_id, path), token=alice)
        assert got.status == 200, got.body
        assert got.body == {"name": "One"}

    reply = await api.call(
        "PUT", room_path(room_id, "state", "m.room.name/"), token=alice, body={"name": "Two"}
    )
    assert reply.status == 200, reply.body
    assert reply.body["event_id"] != first_id
    assert await state_content(api, alice, room_id, "m.room.name") == {"name": "Two"}

    event = await api.call(
        "GET", room_path(room_id, "state", "m.room.name"), token=alice, query={"format": "event"}
    )
    assert event.status == 200
    assert event.body["event_id"] == reply.body["event_id"]
    assert event.body["state_key"] == ""
    assert event.body["type"] == "m.room.name"
    assert event.body["sender"] == alice.user_id
    assert event.body["room_id"] == room_id
    assert event.body["content"] == {"name": "Two"}
    assert event.body["unsigned"]["prev_content"] == {"name": "One"}
    assert isinstance(event.body["origin_server_ts"], int)


async def test_custom_state_keys(api: Api, alice: User) -> None:
    room_id = await api.create_room(alice)
    for key, value in (("a", 1), ("b/c", 2), (alice.user_id, 3)):
        reply = await put_state(api, alice, room_id, "org.example.thing", {"v": value}, key)
        assert reply.status == 200, reply.body
    assert await state_content(api, alice, room_id, "org.example.thing", "a") == {"v": 1}
    assert await state_content(api, alice, room_id, "org.example.thing", "b/c") == {"v": 2}
    assert await state_content(api, alice, room_id, "org.example.thing", alice.user_id) == {"v": 3}
    missing = await get_state(api, alice, room_id, "org.example.thing")
    assert_error(missing, 404, "M_NOT_FOUND")
    missing = await get_state(api, alice, room_id, "org.example.thing", "zzz")
    assert_error(missing, 404, "M_NOT_FOUND")


async def test_raw_ids_in_paths(api: Api, alice: User) -> None:
    room_id = await api.create_room(alice, name="Raw")
    # Clients send room and user ids both percent-encoded and raw.
    reply = await api.call("GET", f"rooms/{room_id}/state/m.room.name", token=alice)
    assert reply.status == 200, reply.body
    assert reply.body == {"name": "Raw"}
    reply = await api.call(
        "GET", f"rooms/{room_id}/state/m.room.member/{alice.user_id}", token=alice
    )
    assert reply.status == 200, reply.body
    assert reply.body == {"membership": "join"}
    reply = await api.call(
        "PUT", f"rooms/{room_id}/send/m.room.message/raw1", token=alice, body={"body": "x"}
    )
    assert reply.status == 200, reply.body


async def test_state_missing_type(api: Api, alice: User) -> None:
    room_id = await api.create_room(alice)
    assert_error(await get_state(api, alice, room_id, "m.room.topic"), 404, "M_NOT_FOUND")


async def test_state_default_blocks_plain_members(api: Api, alice: User, bob: User) -> None:
    room_id = await make_moderated_room(api, alice, bob)
    reply = await put_state(api, bob, room_id, "org.example.thing", {"v": 1})
    assert_error(reply, 403, "M_FORBIDDEN")
    reply = await put_state(api, bob, room_id, "m.room.topic", {"topic": "mine"})
    assert_error(reply, 403, "M_FORBIDDEN")
    assert_error(await get_state(api, alice, room_id, "m.room.topic"), 404, "M_NOT_FOUND")
    # The creator may.
    assert (await put_state(api, alice, room_id, "m.room.topic", {"topic": "ok"})).status == 200


async def test_state_forbidden_types_and_keys(api: Api, alice: User, bob: User) -> None:
    room_id = await make_moderated_room(api, alice, bob)
    reply = await put_state(api, alice, room_id, "m.room.create", {"room_version": "11"})
    assert_error(reply, 403, "M_FORBIDDEN")
    reply = await put_state(
        api, alice, room_id, "m.room.member", {"membership": "leave"}, bob.user_id
    )
    assert_error(reply, 403, "M_FORBIDDEN")
    reply = await put_state(
        api, alice, room_id, "m.room.member", {"membership": "join"}, alice.user_id
    )
    assert_error(reply, 403, "M_FORBIDDEN")
    # A state key that is another user's id belongs to that user, whatever one's power.
    reply = await put_state(api, alice, room_id, "org.example.thing", {"v": 1}, bob.user_id)
    assert_error(reply, 403, "M_FORBIDDEN")
    assert (await state_content(api, alice, room_id, "m.room.create"))["room_version"] == "10"
    member = await state_content(api, alice, room_id, "m.room.member", bob.user_id)
    assert member["membership"] == "join"


async def test_state_needs_membership(api: Api, alice: User, bob: User) -> None:
    room_id = await api.create_room(alice, preset="public_chat", name="Secret")
    assert_error(await get_state(api, bob, room_id, "m.room.name"), 403, "M_FORBIDDEN")
    assert_error(await api.call("GET", room_path(room_id, "state"), token=bob), 403, "M_FORBIDDEN")
    reply = await put_state(api, bob, room_id, "m.room.name", {"name": "x"})
    assert_error(reply, 403, "M_FORBIDDEN")


async def test_join_rules_content_is_checked(api: Api, alice: User) -> None:
    room_id = await api.create_room(alice)
    reply = await put_state(api, alice, room_id, "m.room.join_rules", {"join_rule": 1})
    assert_error(reply, 400, "M_BAD_JSON")
    assert await state_content(api, alice, room_id, "m.room.join_rules") == {"join_rule": "invite"}


async def test_state_change_opens_room(api: Api, alice: User, bob: User) -> None:
    room_id = await api.create_room(alice)
    assert_error(await post(api, bob, room_id, "join", {}), 403, "M_FORBIDDEN")
    reply = await put_state(api, alice, room_id, "m.room.join_rules", {"join_rule": "public"})
    assert reply.status == 200
    await join(api, bob, room_id)


async def test_power_levels_change_rules(api: Api, alice: User, bob: User, carol: User) -> None:
    dave = await api.register("dave")
    room_id = await api.create_room(
        alice,
        preset="public_chat",
        power_level_content_override={"events": {"m.room.power_levels": 50}},
    )
    for user in (bob, carol, dave):
        await join(api, user, room_id)
    await set_levels(api, alice, room_id, {bob.user_id: 50, dave.user_id: 50})
    base = await state_content(api, alice, room_id, "m.room.power_levels")

    def with_users(**changes: int) -> dict[str, Any]:
        users = dict(base["users"])
        users.update({f"@{k}:{SERVER}": v for k, v in changes.items()})
        return {**base, "users": users}

    # bob (50) cannot raise carol above himself, nor himself above 50.
    for content in (with_users(carol=51), with_users(bob=100)):
        reply = await put_state(api, bob, room_id, "m.room.power_levels", content)
        assert_error(reply, 403, "M_FORBIDDEN")
    # He cannot demote an equal (dave, 50) nor a higher user (alice, 100).
    for content in (with_users(dave=0), with_users(alice=0)):
        reply = await put_state(api, bob, room_id, "m.room.power_levels", content)
        assert_error(reply, 403, "M_FORBIDDEN")
    # He cannot lift a level above his own.
    reply = await put_state(api, bob, room_id, "m.room.power_levels", {**base, "kick": 75})
    assert_error(reply, 403, "M_FORBIDDEN")
    assert await state_content(api, alice, room_id, "m.room.power_levels") == base

    # He can raise carol up to his own level...
    reply = await put_state(api, bob, room_id, "m.room.power_levels", with_users(carol=50))
    assert reply.status == 200, reply.body
    power = await state_content(api, alice, room_id, "m.room.power_levels")
    assert power["users"][carol.user_id] == 50
    # ...and lower himself.
    reply = await put_state(
        api,
        bob,
        room_id,
        "m.room.power_levels",
        {**power, "users": {**power["users"], bob.user_id: 10}},
    )
    assert reply.status == 200, reply.body
    # alice (100) demotes dave.
    power = await state_content(api, alice, room_id, "m.room.power_levels")
    reply = await put_state(
        api,
        alice,
        room_id,
        "m.room.power_levels",
        {**power, "users": {**power["users"], dave.user_id: 0}},
    )
    assert reply.status == 200, reply.body
    assert (await state_content(api, alice, room_id, "m.room.power_levels"))["users"] == {
        alice.user_id: 100,
        bob.user_id: 10,
        carol.user_id: 50,
        dave.user_id: 0,
    }


async def test_power_levels_need_their_level(api: Api, alice: User, bob: User) -> None:
    room_id = await make_moderated_room(api, alice, bob)
    await set_levels(api, alice, room_id, {bob.user_id: 50})
    power = await state_content(api, alice, room_id, "m.room.power_levels")
    # m.room.power_levels needs 100 by default.
    reply = await put_state(api, bob, room_id, "m.room.power_levels", power)
    assert_error(reply, 403, "M_FORBIDDEN")


async def test_power_levels_content_is_validated(api: Api, alice: User) -> None:
    room_id = await api.create_room(alice)
    power = await state_content(api, alice, room_id, "m.room.power_levels")
    for bad in (
        {**power, "ban": "50"},
        {**power, "users": {alice.user_id: 1.5}},
        {**power, "events": []},
    ):
        reply = await put_state(api, alice, room_id, "m.room.power_levels", bad)
        assert_error(reply, 400, "M_BAD_JSON")
    assert await state_content(api, alice, room_id, "m.room.power_levels") == power
