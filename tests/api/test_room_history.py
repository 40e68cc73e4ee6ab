"""Reading rooms through the API: full state, members, history pages, single events."""

from __future__ import annotations

from tests.api.rooms_helpers import (
    EVENT_ID_RE,
    all_messages,
    get_state,
    invite,
    join,
    make_moderated_room,
    messages,
    post,
    room_path,
    texts,
)
from tests.helpers import Api, User, assert_error, q

# -- state -----------------------------------------------------------------------------


async def test_get_full_state(api: Api, alice: User, bob: User) -> None:
    room_id = await api.create_room(alice, preset="public_chat", name="Room", topic="T")
    await join(api, bob, room_id)
    reply = await api.call("GET", room_path(room_id, "state"), token=bob)
    assert reply.status == 200, reply.body
    assert isinstance(reply.body, list)
    keys = {(e["type"], e["state_key"]) for e in reply.body}
    assert keys == {
        ("m.room.create", ""),
        ("m.room.member", alice.user_id),
        ("m.room.member", bob.user_id),
        ("m.room.power_levels", ""),
        ("m.room.join_rules", ""),
        ("m.room.history_visibility", ""),
        ("m.room.name", ""),
        ("m.room.topic", ""),
    }
    for event in reply.body:
        assert event["room_id"] == room_id
        assert EVENT_ID_RE.match(event["event_id"])
        assert isinstance(event["origin_server_ts"], int)
        assert "user_id" not in event


# -- members ---------------------------------------------------------------------------


async def test_members_and_filters(api: Api, alice: User, bob: User, carol: User) -> None:
    dave = await api.register("dave")
    room_id = await make_moderated_room(api, alice, bob, dave)
    await invite(api, alice, room_id, carol)
    assert (await post(api, dave, room_id, "leave", {})).status == 200

    async def members(**query: str) -> dict[str, str]:
        reply = await api.call("GET", room_path(room_id, "members"), token=bob, query=query)
        assert reply.status == 200, reply.body
        for event in reply.body["chunk"]:
            assert event["type"] == "m.room.member"
            assert event["room_id"] == room_id
        return {e["state_key"]: e["content"]["membership"] for e in reply.body["chunk"]}

    assert await members() == {
        alice.user_id: "join",
        bob.user_id: "join",
        carol.user_id: "invite",
        dave.user_id: "leave",
    }
    assert await members(membership="join") == {alice.user_id: "join", bob.user_id: "join"}
    assert await members(membership="invite") == {carol.user_id: "invite"}
    assert await members(not_membership="leave") == {
        alice.user_id: "join",
        bob.user_id: "join",
        carol.user_id: "invite",
    }
    assert await members(membership="ban") == {}
    bad = await api.call(
        "GET", room_path(room_id, "members"), token=bob, query={"membership": "joined"}
    )
    assert_error(bad, 400, "M_INVALID_PARAM")
    outsider = await api.call("GET", room_path(room_id, "members"), token=carol)
    assert_error(outsider, 403, "M_FORBIDDEN")


async def test_joined_members_with_display_names(api: Api, alice: User, bob: User) -> None:
    reply = await api.call(
        "PUT",
        f"profile/{q(alice.user_id)}/displayname",
        token=alice,
        body={"displayname": "Alice A."},
    )
    assert reply.status == 200, reply.body
    reply = await api.call(
        "PUT",
        f"profile/{q(alice.user_id)}/avatar_url",
        token=alice,
        body={"avatar_url": "mxc://test.local/abc"},
    )
    assert reply.status == 200, reply.body
    room_id = await make_moderated_room(api, alice, bob)
    reply = await api.call("GET", room_path(room_id, "joined_members"), token=bob)
    assert reply.status == 200, reply.body
    assert reply.body == {
        "joined": {
            alice.user_id: {"display_name": "Alice A.", "avatar_url": "mxc://test.local/abc"},
            bob.user_id: {},
        }
    }
    # A later name change reaches the room's member events.
    reply = await api.call(
        "PUT", f"profile/{q(bob.user_id)}/displayname", token=bob, body={"displayname": "Bobby"}
    )
    assert reply.status == 200, reply.body
    reply = await api.call("GET", room_path(room_id, "joined_members"), token=alice)
    assert reply.body["joined"][bob.user_id] == {"display_name": "Bobby"}
    left = await api.register("eve")
    assert_error(
        await api.call("GET", room_path(room_id, "joined_members"), token=left), 403, "M_FORBIDDEN"
    )


# -- messages --------------------------------------------------------------------------


async def test_messages_pagination_both_ways_without_gaps(api: Api, alice: User, bob: User) -> None:
    room_id = await make_moderated_room(api, alice, bob)
    sent = [await api.send_text(alice, room_id, f"m{i}", f"t{i}") for i in range(25)]

    # Backwards from the end.
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        query = {"dir": "b", "limit": "7"}
        if token is not None:
            query["from"] = token
        reply = await messages(api, bob, room_id, **query)
        assert reply.status == 200, reply.body
        pages += 1
        chunk = reply.body["chunk"]
        assert len(chunk) <= 7
        seen.extend(e["event_id"] for e in chunk)
        if token is not None:
            assert reply.body["start"] == token
        if "end" not in reply.body:
            break
        token = reply.body["end"]
        assert pages < 20
    messages_back = [e for e in seen if e in set(sent)]
    assert messages_back == sent[::-1]
    assert len(seen) == len(set(seen))
    # The oldest event of the room is the create event.
    first = await api.call("GET", room_path(room_id, "event", q(seen[-1])), token=bob)
    assert first.body["type"] == "m.room.create"

    # Forwards from the start.
    forward: list[str] = []
    token = None
    pages = 0
    while True:
        query = {"dir": "f", "limit": "7"}
        if token is not None:
            query["from"] = token
        reply = await messages(api, bob, room_id, **query)
        assert reply.status == 200, reply.body
        pages += 1
        forward.extend(e["event_id"] for e in reply.body["chunk"])
        if "end" not in reply.body:
            break
        token = reply.body["end"]
        assert pages < 20
    assert forward == seen[::-1]


async def test_messages_event_format_and_order(api: Api, alice: User) -> None:
    room_id = await api.create_room(alice)
    await api.send_text(alice, room_id, "one", "t1")
    await api.send_text(alice, room_id, "two", "t2")
    reply = await messages(api, alice, room_id, dir="b", limit="2")
    assert reply.status == 200
    chunk = reply.body["chunk"]
    assert [e["content"]["body"] for e in chunk] == ["two", "one"]
    for event in chunk:
        assert event["sender"] == alice.user_id
        assert "user_id" not in event
        assert event["room_id"] == room_id
        assert isinstance(event["origin_server_ts"], int)
    assert isinstance(reply.body["start"], str) and isinstance(reply.body["end"], str)


async def test_messages_to_bound(api: Api, alice: User) -> None:
    room_id = await api.create_room(alice)
    await api.send_text(alice, room_id, "before", "t0")
    mark = await messages(api, alice, room_id, dir="b", limit="1")
    # Its `start` is the point right after "before", the current end of the room.
    token = mark.body["start"]
    assert [e["content"]["body"] for e in mark.body["chunk"]] == ["before"]
    for i in range(3):
        await api.send_text(alice, room_id, f"after{i}", f"t{i + 1}")

    back = await messages(api, alice, room_id, dir="b", to=token, limit="50")
    assert back.status == 200, back.body
    assert [e["content"]["body"] for e in back.body["chunk"]] == ["after2", "after1", "after0"]
    assert "end" not in back.body

    forward = await messages(api, alice, room_id, dir="f", limit="2", **{"from": token})
    assert [e["content"]["body"] for e in forward.body["chunk"]] == ["after0", "after1"]
    after1 = forward.body["end"]
    bounded = await messages(api, alice, room_id, dir="f", limit="50", to=after1, **{"from": token})
    assert [e["content"]["body"] for e in bounded.body["chunk"]] == ["after0", "after1"]
    assert "end" not in bounded.body
    newest = await messages(api, alice, room_id, dir="b", limit="50", to=after1)
    assert [e["content"]["body"] for e in newest.body["chunk"]] == ["after2"]
    empty = await messages(
        api, alice, room_id, dir="f", limit="50", **{"from": newest.body["start"]}
    )
    assert empty.status == 200
    assert empty.body["chunk"] == []
    assert "end" not in empty.body


async def test_messages_for_left_user_stop_at_leave(api: Api, alice: User, bob: User) -> None:
    room_id = await make_moderated_room(api, alice, bob)
    before = await api.send_text(alice, room_id, "before", "t1")
    assert (await post(api, bob, room_id, "leave", {})).status == 200
    after = await api.send_text(alice, room_id, "after", "t2")

    assert await texts(api, bob, room_id) == ["before"]
    back = await messages(api, bob, room_id, dir="b", limit="3")
    assert back.status == 200
    assert back.body["chunk"][0]["type"] == "m.room.member"
    assert back.body["chunk"][0]["state_key"] == bob.user_id
    assert back.body["chunk"][0]["content"]["membership"] == "leave"
    assert back.body["chunk"][1]["event_id"] == before
    # Events after the leave are out of reach, one by one too.
    ok = await api.call("GET", room_path(room_id, "event", q(before)), token=bob)
    assert ok.status == 200
    hidden = await api.call("GET", room_path(room_id, "event", q(after)), token=bob)
    assert_error(hidden, 404, "M_NOT_FOUND")
    # State of the room is for members only.
    assert_error(await get_state(api, bob, room_id, "m.room.name"), 403, "M_FORBIDDEN")


async def test_messages_for_kicked_and_banned_users(
    api: Api, alice: User, bob: User, carol: User
) -> None:
    room_id = await make_moderated_room(api, alice, bob, carol)
    await api.send_text(alice, room_id, "one", "t1")
    assert (await post(api, alice, room_id, "kick", {"user_id": bob.user_id})).status == 200
    assert (await post(api, alice, room_id, "ban", {"user_id": carol.user_id})).status == 200
    await api.send_text(alice, room_id, "two", "t2")
    assert await texts(api, bob, room_id) == ["one"]
    assert await texts(api, carol, room_id) == ["one"]
    assert await texts(api, alice, room_id) == ["one", "two"]


async def test_messages_hidden_from_never_joined_users(
    api: Api, alice: User, bob: User, carol: User
) -> None:
    room_id = await api.create_room(alice, invite=[bob.user_id])
    await api.send_text(alice, room_id, "secret", "t1")
    # Invited: not yet.
    assert_error(await messages(api, bob, room_id), 403, "M_FORBIDDEN")
    # Rejecting the invite does not open the history.
    assert (await post(api, bob, room_id, "leave", {})).status == 200
    assert_error(await messages(api, bob, room_id), 403, "M_FORBIDDEN")
    # Nor does being banned without ever having joined.
    assert (await post(api, alice, room_id, "ban", {"user_id": carol.user_id})).status == 200
    assert_error(await messages(api, carol, room_id), 403, "M_FORBIDDEN")
    events = await all_messages(api, alice, room_id)
    secret = next(e for e in events if e["type"] == "m.room.message")
    for user in (bob, carol):
        reply = await api.call(
            "GET", room_path(room_id, "event", q(secret["event_id"])), token=user
        )
        assert_error(reply, 403, "M_FORBIDDEN")


async def test_messages_non_member(api: Api, alice: User, bob: User) -> None:
    room_id = await api.create_room(alice, preset="public_chat")
    await api.send_text(alice, room_id, "x", "t1")
    assert_error(await messages(api, bob, room_id), 403, "M_FORBIDDEN")
    assert_error(await messages(api, bob, "!nowhere:test.local"), 403, "M_FORBIDDEN")


async def test_messages_bad_params(api: Api, alice: User) -> None:
    room_id = await api.create_room(alice)
    assert_error(await messages(api, alice, room_id, dir="x"), 400, "M_INVALID_PARAM")
    assert_error(await messages(api, alice, room_id, **{"from": "garbage"}), 400, "M_INVALID_PARAM")
    assert_error(await messages(api, alice, room_id, to="s-1"), 400, "M_INVALID_PARAM")
    assert_error(await messages(api, alice, room_id, limit="ten"), 400, "M_INVALID_PARAM")


# -- single events ---------------------------------------------------------------------


async def test_get_event_of_another_room(api: Api, alice: User) -> None:
    room_a = await api.create_room(alice)
    room_b = await api.create_room(alice)
    event_id = await api.send_text(alice, room_a, "in a", "t1")
    assert (
        await api.call("GET", room_path(room_a, "event", q(event_id)), token=alice)
    ).status == 200
    reply = await api.call("GET", room_path(room_b, "event", q(event_id)), token=alice)
    assert_error(reply, 404, "M_NOT_FOUND")
    reply = await api.call("GET", room_path(room_a, "event", q("$" + "A" * 43)), token=alice)
    assert_error(reply, 404, "M_NOT_FOUND")


async def test_get_event_needs_membership(api: Api, alice: User, bob: User) -> None:
    room_id = await api.create_room(alice, preset="public_chat")
    event_id = await api.send_text(alice, room_id, "x", "t1")
    reply = await api.call("GET", room_path(room_id, "event", q(event_id)), token=bob)
    assert_error(reply, 403, "M_FORBIDDEN")
