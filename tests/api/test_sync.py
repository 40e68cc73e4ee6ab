"""/sync through the API: shape, incremental, limits, invites, leaves, long-polling."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing

from homeserver.engine import Engine
from tests.helpers import Api, Reply, User, assert_error, q

STRIPPED_KEYS = {"type", "state_key", "sender", "content"}


# -- helpers ---------------------------------------------------------------------------


def find_nulls(value: Any, path: str = "$") -> list[str]:
    """Every path in a JSON value that holds null."""
    if value is None:
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in find_nulls(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in find_nulls(v, f"{path}[{i}]")]
    return []


def test_find_nulls_finds_nested_nulls() -> None:
    assert find_nulls({"a": [1, {"b": None}], "c": {"d": None}, "e": 0}) == ["$.a[1].b", "$.c.d"]
    assert find_nulls({"a": [], "b": "", "c": False}) == []


async def sync(api: Api, user: User, **query: str) -> dict[str, Any]:
    body: dict[str, Any] = await api.sync(user, **query)
    assert find_nulls(body) == [], body
    assert isinstance(body["next_batch"], str) and body["next_batch"]
    return body


async def post(api: Api, user: User, room_id: str, action: str, body: Any = None) -> Reply:
    return await api.call("POST", f"rooms/{q(room_id)}/{action}", token=user, body=body)


async def join(api: Api, user: User, room_id: str) -> None:
    reply = await post(api, user, room_id, "join", {})
    assert reply.status == 200, reply.body


def timeline_texts(room: dict[str, Any]) -> list[str]:
    return [
        e["content"]["body"] for e in room["timeline"]["events"] if e["type"] == "m.room.message"
    ]


def state_keys(events: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(e["type"], e["state_key"]) for e in events if "state_key" in e}


@pytest.fixture
async def alice(api: Api) -> User:
    return await api.register("alice")


@pytest.fixture
async def bob(api: Api) -> User:
    return await api.register("bob")


@pytest.fixture
async def carol(api: Api) -> User:
    return await api.register("carol")


async def shared_room(api: Api, alice: User, *others: User, **create: Any) -> str:
    room_id = await api.create_room(alice, preset="public_chat", **create)
    for user in others:
        await join(api, user, room_id)
    return room_id


# -- initial sync ----------------------------------------------------------------------


async def test_initial_sync_of_a_new_user(api: Api, alice: User) -> None:
    body = await sync(api, alice)
    assert body["rooms"] == {"join": {}, "invite": {}, "leave": {}, "knock": {}}
    assert body["account_data"] == {"events": []}
    # The sync runs in the device's implicit session: the user is online, and sees it.
    (presence,) = body["presence"]["events"]
    assert presence["type"] == "m.presence" and presence["sender"] == alice.user_id
    assert presence["content"]["presence"] == "online"
    assert presence["content"]["currently_active"] is True
    assert body["to_device"] == {"events": []}
    assert body["device_lists"] == {"changed": [], "left": []}
    assert body["device_one_time_keys_count"] == {}


async def test_initial_sync_shape(api: Api, alice: User, bob: User) -> None:
    room_id = await shared_room(api, alice, bob, name="Lunch", topic="Food")
    event_id = await api.send_text(alice, room_id, "hello", "t1")
    body = await sync(api, alice)
    room = body["rooms"]["join"][room_id]
    assert set(room) >= {
        "timeline",
        "state",
        "ephemeral",
        "account_data",
        "summary",
        "unread_notifications",
    }
    timeline = room["timeline"]
    assert set(timeline) == {"events", "limited", "prev_batch"}
    assert isinstance(timeline["limited"], bool)
    assert isinstance(timeline["prev_batch"], str)
    assert room["ephemeral"] == {"events": []}
    assert room["account_data"] == {"events": []}
    last = timeline["events"][-1]
    assert last["event_id"] == event_id
    assert last["sender"] == alice.user_id
    assert last["type"] == "m.room.message"
    assert last["content"] == {"msgtype": "m.text", "body": "hello"}
    assert isinstance(last["origin_server_ts"], int)
    assert last["unsigned"]["transaction_id"] == "t1"
    for event in timeline["events"] + room["state"]["events"]:
        assert "room_id" not in event
        assert "user_id" not in event
        assert isinstance(event["origin_server_ts"], int)
    # Timeline and state together describe the whole room state.
    everything = timeline["events"] + room["state"]["events"]
    assert state_keys(everything) == {
        ("m.room.create", ""),
        ("m.room.member", alice.user_id),
        ("m.room.member", bob.user_id),
        ("m.room.power_levels", ""),
        ("m.room.join_rules", ""),
        ("m.room.history_visibility", ""),
        ("m.room.name", ""),
        ("m.room.topic", ""),
    }
    # No state event is in both.
    assert not state_keys(timeline["events"]) & state_keys(room["state"]["events"])
    # A named room has no heroes.
    assert room["summary"] == {"m.joined_member_count": 2, "m.invited_member_count": 0}
    # The sending device's own events carry their transaction id; bob's sync does not.
    bob_body = await sync(api, bob)
    bob_last = bob_body["rooms"]["join"][room_id]["timeline"]["events"][-1]
    assert bob_last["event_id"] == event_id
    assert "transaction_id" not in bob_last["unsigned"]


async def test_summary_heroes_for_unnamed_rooms(
    api: Api, alice: User, bob: User, carol: User
) -> None:
    room_id = await shared_room(api, alice, bob)
    reply = await post(api, alice, room_id, "invite", {"user_id": carol.user_id})
    assert reply.status == 200, reply.body
    summary = (await sync(api, alice))["rooms"]["join"][room_id]["summary"]
    assert summary["m.joined_member_count"] == 2
    assert summary["m.invited_member_count"] == 1
    assert sorted(summary["m.heroes"]) == sorted([bob.user_id, carol.user_id])
    lonely = await api.create_room(alice)
    summary = (await sync(api, alice))["rooms"]["join"][lonely]["summary"]
    assert summary == {"m.joined_member_count": 1, "m.invited_member_count": 0, "m.heroes": []}


async def test_sync_requires_auth(api: Api) -> None:
    assert_error(await api.call("GET", "sync"), 401, "M_MISSING_TOKEN")
    assert_error(await api.call("GET", "sync", token="nope"), 401, "M_UNKNOWN_TOKEN")


# -- incremental sync ------------------------------------------------------------------


async def test_incremental_sync_returns_only_new_events(api: Api, alice: User, bob: User) -> None:
    room_id = await shared_room(api, alice, bob)
    await api.send_text(alice, room_id, "old", "t1")
    first = await sync(api, bob)
    assert timeline_texts(first["rooms"]["join"][room_id]) == ["old"]

    await api.send_text(alice, room_id, "new1", "t2")
    await api.send_text(alice, room_id, "new2", "t3")
    second = await sync(api, bob, since=first["next_batch"])
    assert second["next_batch"] != first["next_batch"]
    room = second["rooms"]["join"][room_id]
    assert timeline_texts(room) == ["new1", "new2"]
    assert len(room["timeline"]["events"]) == 2
    assert room["timeline"]["limited"] is False
    assert room["state"] == {"events": []}

    third = await sync(api, bob, since=second["next_batch"])
    assert third["rooms"] == {"join": {}, "invite": {}, "leave": {}, "knock": {}}
    assert third["next_batch"] == second["next_batch"]


async def test_incremental_sync_leaves_out_quiet_rooms(api: Api, alice: User, bob: User) -> None:
    busy = await shared_room(api, alice, bob)
    quiet = await shared_room(api, alice, bob)
    first = await sync(api, bob)
    assert set(first["rooms"]["join"]) == {busy, quiet}
    await api.send_text(alice, busy, "hi", "t1")
    second = await sync(api, bob, since=first["next_batch"])
    assert set(second["rooms"]["join"]) == {busy}


async def test_own_profile_change_is_not_a_new_join(api: Api, alice: User, bob: User) -> None:
    room_id = await shared_room(api, alice, bob)
    for i in range(12):
        await api.send_text(alice, room_id, f"m{i}", f"t{i}")
    first = await sync(api, bob)
    reply = await api.call(
        "PUT", f"profile/{q(bob.user_id)}/displayname", token=bob, body={"displayname": "Bobby"}
    )
    assert reply.status == 200, reply.body
    second = await sync(api, bob, since=first["next_batch"])
    room = second["rooms"]["join"][room_id]
    # Only the new member event: no repeated history, no full state.
    events = room["timeline"]["events"]
    assert [(e["type"], e["state_key"]) for e in events] == [("m.room.member", bob.user_id)]
    assert events[0]["content"] == {"membership": "join", "displayname": "Bobby"}
    assert events[0]["unsigned"]["prev_content"] == {"membership": "join"}
    assert room["timeline"]["limited"] is False
    assert room["state"] == {"events": []}


async def test_rejoin_within_one_sync_is_a_new_join(api: Api, alice: User, bob: User) -> None:
    room_id = await shared_room(api, alice, bob)
    first = await sync(api, bob)
    assert (await post(api, bob, room_id, "leave", {})).status == 200
    await api.send_text(alice, room_id, "while away", "t1")
    await join(api, bob, room_id)
    second = await sync(api, bob, since=first["next_batch"])
    room = second["rooms"]["join"][room_id]
    everything = room["timeline"]["events"] + room["state"]["events"]
    assert ("m.room.create", "") in state_keys(everything)
    assert room_id not in second["rooms"]["leave"]


async def test_timeline_limit_limited_and_prev_batch(api: Api, alice: User, bob: User) -> None:
    room_id = await shared_room(api, alice, bob)
    for i in range(8):
        await api.send_text(alice, room_id, f"m{i}", f"t{i}")
    first = await sync(api, bob, filter=json.dumps({"room": {"timeline": {"limit": 3}}}))
    room = first["rooms"]["join"][room_id]
    assert timeline_texts(room) == ["m5", "m6", "m7"]
    assert room["timeline"]["limited"] is True
    # Everything before the timeline arrives as state.
    assert ("m.room.member", bob.user_id) in state_keys(room["state"]["events"])
    assert ("m.room.create", "") in state_keys(room["state"]["events"])

    # /messages from prev_batch continues right before the timeline's first event.
    page = await api.call(
        "GET",
        f"rooms/{q(room_id)}/messages",
        token=bob,
        query={"from": room["timeline"]["prev_batch"], "dir": "b", "limit": "2"},
    )
    assert page.status == 200, page.body
    assert [e["content"]["body"] for e in page.body["chunk"]] == ["m4", "m3"]

    # Incremental and limited: state covers the gap between since and the timeline.
    await api.send_text(alice, room_id, "x0", "u0")
    reply = await api.call(
        "PUT",
        f"rooms/{q(room_id)}/state/m.room.topic",
        token=alice,
        body={"topic": "in the gap"},
    )
    assert reply.status == 200
    for i in range(1, 5):
        await api.send_text(alice, room_id, f"x{i}", f"u{i}")
    second = await sync(
        api,
        bob,
        since=first["next_batch"],
        filter=json.dumps({"room": {"timeline": {"limit": 3}}}),
    )
    room = second["rooms"]["join"][room_id]
    assert timeline_texts(room) == ["x2", "x3", "x4"]
    assert room["timeline"]["limited"] is True
    assert [e["content"] for e in room["state"]["events"]] == [{"topic": "in the gap"}]
    page = await api.call(
        "GET",
        f"rooms/{q(room_id)}/messages",
        token=bob,
        query={"from": room["timeline"]["prev_batch"], "dir": "b", "limit": "3"},
    )
    assert [e["content"].get("body") for e in page.body["chunk"]] == ["x1", None, "x0"]


async def test_not_limited_when_everything_fits(api: Api, alice: User) -> None:
    room_id = await api.create_room(alice)
    room = (await sync(api, alice, filter='{"room":{"timeline":{"limit":50}}}'))["rooms"]["join"][
        room_id
    ]
    assert room["timeline"]["limited"] is False
    assert room["timeline"]["events"][0]["type"] == "m.room.create"
    assert room["state"] == {"events": []}


async def test_timeline_limit_zero(api: Api, alice: User) -> None:
    room_id = await api.create_room(alice, name="N")
    room = (await sync(api, alice, filter='{"room":{"timeline":{"limit":0}}}'))["rooms"]["join"][
        room_id
    ]
    assert room["timeline"]["events"] == []
    assert room["timeline"]["limited"] is True
    assert ("m.room.name", "") in state_keys(room["state"]["events"])


async def test_stored_filter(api: Api, alice: User) -> None:
    room_id = await api.create_room(alice)
    for i in range(4):
        await api.send_text(alice, room_id, f"m{i}", f"t{i}")
    reply = await api.call(
        "POST",
        f"user/{q(alice.user_id)}/filter",
        token=alice,
        body={"room": {"timeline": {"limit": 2}}},
    )
    assert reply.status == 200, reply.body
    filter_id = reply.body["filter_id"]
    assert isinstance(filter_id, str)
    got = await api.call("GET", f"user/{q(alice.user_id)}/filter/{filter_id}", token=alice)
    assert got.status == 200
    assert got.body == {"room": {"timeline": {"limit": 2}}}
    room = (await sync(api, alice, filter=filter_id))["rooms"]["join"][room_id]
    assert timeline_texts(room) == ["m2", "m3"]


async def test_filter_rooms_and_not_rooms(api: Api, alice: User) -> None:
    room_a = await api.create_room(alice)
    room_b = await api.create_room(alice)
    body = await sync(api, alice, filter=json.dumps({"room": {"rooms": [room_a]}}))
    assert set(body["rooms"]["join"]) == {room_a}
    body = await sync(api, alice, filter=json.dumps({"room": {"not_rooms": [room_a]}}))
    assert set(body["rooms"]["join"]) == {room_b}


async def test_filter_of_another_user_is_not_found(api: Api, alice: User, bob: User) -> None:
    reply = await api.call(
        "POST", f"user/{q(alice.user_id)}/filter", token=alice, body={"room": {}}
    )
    filter_id = reply.body["filter_id"]
    assert_error(
        await api.call("GET", "sync", token=bob, query={"filter": filter_id}), 404, "M_NOT_FOUND"
    )
    assert_error(
        await api.call("GET", f"user/{q(bob.user_id)}/filter/{filter_id}", token=bob),
        404,
        "M_NOT_FOUND",
    )
    # Nor can bob read or write filters under alice's name.
    assert_error(
        await api.call("GET", f"user/{q(alice.user_id)}/filter/{filter_id}", token=bob),
        403,
        "M_FORBIDDEN",
    )
    assert_error(
        await api.call("POST", f"user/{q(alice.user_id)}/filter", token=bob, body={}),
        403,
        "M_FORBIDDEN",
    )


@pytest.mark.parametrize(
    "bad",
    [
        "{not json",
        '{"room": []}',
        '{"room": {"timeline": {"limit": -1}}}',
        '{"room": {"timeline": {"limit": "5"}}}',
        '{"room": {"rooms": "!a:test.local"}}',
        '{"room": {"include_leave": "yes"}}',
    ],
)
async def test_bad_inline_filters(api: Api, alice: User, bad: str) -> None:
    assert_error(
        await api.call("GET", "sync", token=alice, query={"filter": bad}), 400, "M_BAD_JSON"
    )


@pytest.mark.parametrize("since", ["garbage", "s", "s-1", "12", "sabc", "s\u0661\u0662"])
async def test_invalid_since_token(api: Api, alice: User, since: str) -> None:
    reply = await api.call("GET", "sync", token=alice, query={"since": since})
    assert_error(reply, 400, "M_INVALID_PARAM")


async def test_full_state(api: Api, alice: User, bob: User) -> None:
    room_id = await shared_room(api, alice, bob, name="Full")
    quiet = await shared_room(api, alice, bob)
    first = await sync(api, bob)
    await api.send_text(alice, room_id, "new", "t1")
    body = await sync(api, bob, since=first["next_batch"], full_state="true")
    # full_state returns every room with all of its state...
    assert set(body["rooms"]["join"]) == {room_id, quiet}
    room = body["rooms"]["join"][room_id]
    everything = room["timeline"]["events"] + room["state"]["events"]
    assert {("m.room.create", ""), ("m.room.name", ""), ("m.room.member", bob.user_id)} <= (
        state_keys(everything)
    )
    # ...but the timeline is still limited by `since`.
    assert [e["type"] for e in room["timeline"]["events"]] == ["m.room.message"]
    quiet_room = body["rooms"]["join"][quiet]
    assert quiet_room["timeline"]["events"] == []
    assert ("m.room.create", "") in state_keys(quiet_room["state"]["events"])


# -- invites ---------------------------------------------------------------------------


async def test_invite_state_is_stripped(api: Api, alice: User, bob: User) -> None:
    room_id = await api.create_room(alice, name="Lunch", topic="Where to eat")
    first = await sync(api, bob)
    reply = await post(api, alice, room_id, "invite", {"user_id": bob.user_id, "reason": "food"})
    assert reply.status == 200, reply.body
    body = await sync(api, bob, since=first["next_batch"])
    assert body["rooms"]["join"] == {}
    assert set(body["rooms"]["invite"][room_id]) == {"invite_state"}
    events = body["rooms"]["invite"][room_id]["invite_state"]["events"]
    for event in events:
        assert set(event) == STRIPPED_KEYS, event
    by_type = {e["type"]: e for e in events}
    assert by_type["m.room.name"]["content"] == {"name": "Lunch"}
    assert by_type["m.room.topic"]["content"] == {"topic": "Where to eat"}
    assert by_type["m.room.create"]["content"]["room_version"] == "10"
    assert by_type["m.room.join_rules"]["content"] == {"join_rule": "invite"}
    member = by_type["m.room.member"]
    assert member["state_key"] == bob.user_id
    assert member["sender"] == alice.user_id
    assert member["content"] == {"membership": "invite", "reason": "food"}
    # Nothing beyond the shared slice: no power levels, no other members.
    assert set(by_type) == {
        "m.room.create",
        "m.room.join_rules",
        "m.room.name",
        "m.room.topic",
        "m.room.member",
    }
    assert len(events) == 5
    # The invite is reported once, not on every sync.
    later = await sync(api, bob, since=body["next_batch"])
    assert later["rooms"]["invite"] == {}
    # An initial sync reports it again.
    assert room_id in (await sync(api, bob))["rooms"]["invite"]


async def test_invite_then_join_moves_room_to_join(api: Api, alice: User, bob: User) -> None:
    room_id = await api.create_room(alice, invite=[bob.user_id])
    first = await sync(api, bob)
    assert set(first["rooms"]["invite"]) == {room_id}
    await join(api, bob, room_id)
    second = await sync(api, bob, since=first["next_batch"])
    assert second["rooms"]["invite"] == {}
    room = second["rooms"]["join"][room_id]
    everything = room["timeline"]["events"] + room["state"]["events"]
    assert ("m.room.power_levels", "") in state_keys(everything)
    assert room["summary"]["m.joined_member_count"] == 2


# -- leaving ---------------------------------------------------------------------------


async def test_leave_appears_in_incremental_sync(api: Api, alice: User, bob: User) -> None:
    room_id = await shared_room(api, alice, bob)
    first = await sync(api, bob)
    await api.send_text(alice, room_id, "bye bob", "t1")
    assert (await post(api, bob, room_id, "leave", {"reason": "done"})).status == 200
    await api.send_text(alice, room_id, "bob is gone", "t2")
    body = await sync(api, bob, since=first["next_batch"])
    assert body["rooms"]["join"] == {}
    room = body["rooms"]["leave"][room_id]
    assert set(room) >= {"timeline", "state", "account_data"}
    events = room["timeline"]["events"]
    assert timeline_texts(room) == ["bye bob"]
    assert events[-1]["type"] == "m.room.member"
    assert events[-1]["state_key"] == bob.user_id
    assert events[-1]["content"] == {"membership": "leave", "reason": "done"}
    assert isinstance(room["timeline"]["prev_batch"], str)
    # Reported once.
    later = await sync(api, bob, since=body["next_batch"])
    assert later["rooms"]["leave"] == {}
    # An initial sync leaves it out unless asked.
    assert (await sync(api, bob))["rooms"]["leave"] == {}
    with_leave = await sync(api, bob, filter='{"room":{"include_leave":true}}')
    assert set(with_leave["rooms"]["leave"]) == {room_id}
    assert timeline_texts(with_leave["rooms"]["leave"][room_id]) == ["bye bob"]


async def test_kick_appears_in_leave_with_reason(api: Api, alice: User, bob: User) -> None:
    room_id = await shared_room(api, alice, bob)
    first = await sync(api, bob)
    reply = await post(api, alice, room_id, "kick", {"user_id": bob.user_id, "reason": "spam"})
    assert reply.status == 200
    body = await sync(api, bob, since=first["next_batch"])
    last = body["rooms"]["leave"][room_id]["timeline"]["events"][-1]
    assert last["type"] == "m.room.member"
    assert last["sender"] == alice.user_id
    assert last["state_key"] == bob.user_id
    assert last["content"] == {"membership": "leave", "reason": "spam"}
    assert room_id not in body["rooms"]["join"]


async def test_ban_appears_in_leave(api: Api, alice: User, bob: User) -> None:
    room_id = await shared_room(api, alice, bob)
    first = await sync(api, bob)
    reply = await post(api, alice, room_id, "ban", {"user_id": bob.user_id, "reason": "rude"})
    assert reply.status == 200
    body = await sync(api, bob, since=first["next_batch"])
    last = body["rooms"]["leave"][room_id]["timeline"]["events"][-1]
    assert last["content"] == {"membership": "ban", "reason": "rude"}
    assert last["sender"] == alice.user_id


async def test_rejected_invite_appears_in_leave(api: Api, alice: User, bob: User) -> None:
    room_id = await api.create_room(alice, invite=[bob.user_id])
    first = await sync(api, bob)
    await api.send_text(alice, room_id, "private talk", "t1")
    assert (await post(api, bob, room_id, "leave", {"reason": "no"})).status == 200
    body = await sync(api, bob, since=first["next_batch"])
    assert body["rooms"]["invite"] == {}
    room = body["rooms"]["leave"][room_id]
    # Only the rejection: bob never joined, so the room's messages are not his to see.
    events = room["timeline"]["events"]
    assert [(e["type"], e["state_key"], e["content"]) for e in events] == [
        ("m.room.member", bob.user_id, {"membership": "leave", "reason": "no"})
    ]


async def test_invite_and_reject_between_syncs(api: Api, alice: User, bob: User) -> None:
    room_id = await api.create_room(alice)
    first = await sync(api, bob)
    reply = await post(api, alice, room_id, "invite", {"user_id": bob.user_id})
    assert reply.status == 200
    assert (await post(api, bob, room_id, "leave", {})).status == 200
    body = await sync(api, bob, since=first["next_batch"])
    assert body["rooms"]["invite"] == {}
    assert set(body["rooms"]["leave"]) == {room_id}


async def test_newly_joined_room_has_full_state(api: Api, alice: User, bob: User) -> None:
    room_id = await api.create_room(alice, preset="public_chat", name="Big", topic="T")
    for i in range(15):
        await api.send_text(alice, room_id, f"m{i}", f"t{i}")
    first = await sync(api, bob)
    assert first["rooms"]["join"] == {}
    await join(api, bob, room_id)
    body = await sync(api, bob, since=first["next_batch"])
    room = body["rooms"]["join"][room_id]
    assert room["timeline"]["limited"] is True
    assert room["timeline"]["events"][-1]["state_key"] == bob.user_id
    everything = room["timeline"]["events"] + room["state"]["events"]
    assert state_keys(everything) == {
        ("m.room.create", ""),
        ("m.room.member", alice.user_id),
        ("m.room.member", bob.user_id),
        ("m.room.power_levels", ""),
        ("m.room.join_rules", ""),
        ("m.room.history_visibility", ""),
        ("m.room.name", ""),
        ("m.room.topic", ""),
    }
    assert room["summary"]["m.joined_member_count"] == 2


async def test_account_data_in_sync(api: Api, alice: User) -> None:
    room_id = await api.create_room(alice)
    first = await sync(api, alice)
    reply = await api.call(
        "PUT", f"user/{q(alice.user_id)}/account_data/org.example.x", token=alice, body={"a": 1}
    )
    assert reply.status == 200
    reply = await api.call(
        "PUT",
        f"user/{q(alice.user_id)}/rooms/{q(room_id)}/account_data/m.tag",
        token=alice,
        body={"tags": {"u.work": {}}},
    )
    assert reply.status == 200
    body = await sync(api, alice, since=first["next_batch"])
    assert body["account_data"] == {"events": [{"type": "org.example.x", "content": {"a": 1}}]}
    room = body["rooms"]["join"][room_id]
    assert room["account_data"] == {
        "events": [{"type": "m.tag", "content": {"tags": {"u.work": {}}}}]
    }
    assert room["timeline"]["events"] == []


# -- long-polling ----------------------------------------------------------------------


async def test_long_poll_wakes_on_message(
    api: Api, alice: User, bob: User, autojump_clock: trio.testing.MockClock
) -> None:
    room_id = await shared_room(api, alice, bob)
    since = (await sync(api, bob))["next_batch"]
    result: dict[str, Any] = {}

    async def wait_for_news() -> None:
        result["body"] = await sync(api, bob, since=since, timeout="30000")
        result["at"] = trio.current_time()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_for_news)
        # Once every task is blocked, the sync is waiting (this wakes before the
        # autojump clock would move time).
        await trio.testing.wait_all_tasks_blocked()
        assert "body" not in result
        started = trio.current_time()
        event_id = await api.send_text(alice, room_id, "wake up", "t1")

    assert result["at"] - started < 1
    events = result["body"]["rooms"]["join"][room_id]["timeline"]["events"]
    assert [e["event_id"] for e in events] == [event_id]
    assert result["body"]["next_batch"] != since


async def test_long_poll_wakes_on_invite(
    api: Api, alice: User, bob: User, autojump_clock: trio.testing.MockClock
) -> None:
    room_id = await api.create_room(alice)
    since = (await sync(api, bob))["next_batch"]
    result: dict[str, Any] = {}

    async def wait_for_news() -> None:
        result["body"] = await sync(api, bob, since=since, timeout="30000")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_for_news)
        await trio.testing.wait_all_tasks_blocked()
        started = trio.current_time()
        reply = await post(api, alice, room_id, "invite", {"user_id": bob.user_id})
        assert reply.status == 200
    assert trio.current_time() - started < 1
    assert set(result["body"]["rooms"]["invite"]) == {room_id}


async def test_long_poll_wakes_the_kicked_user(
    api: Api, alice: User, bob: User, autojump_clock: trio.testing.MockClock
) -> None:
    room_id = await shared_room(api, alice, bob)
    since = (await sync(api, bob))["next_batch"]
    result: dict[str, Any] = {}

    async def wait_for_news() -> None:
        result["body"] = await sync(api, bob, since=since, timeout="30000")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_for_news)
        await trio.testing.wait_all_tasks_blocked()
        started = trio.current_time()
        reply = await post(api, alice, room_id, "kick", {"user_id": bob.user_id, "reason": "x"})
        assert reply.status == 200
    assert trio.current_time() - started < 1
    last = result["body"]["rooms"]["leave"][room_id]["timeline"]["events"][-1]
    assert last["content"] == {"membership": "leave", "reason": "x"}


async def test_long_poll_ignores_unrelated_rooms(
    api: Api, alice: User, bob: User, carol: User, autojump_clock: trio.testing.MockClock
) -> None:
    shared = await shared_room(api, alice, bob)
    elsewhere = await shared_room(api, alice, carol)
    since = (await sync(api, bob))["next_batch"]
    result: dict[str, Any] = {}

    async def wait_for_news() -> None:
        result["body"] = await sync(api, bob, since=since, timeout="30000")

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_for_news)
        await trio.testing.wait_all_tasks_blocked()
        await api.send_text(carol, elsewhere, "not for bob", "t1")
        await trio.testing.wait_all_tasks_blocked()
        assert "body" not in result
        await trio.sleep(10)
        assert "body" not in result
        await api.send_text(alice, shared, "for bob", "t2")
    assert 10 <= trio.current_time() - start < 11
    assert set(result["body"]["rooms"]["join"]) == {shared}


async def test_long_poll_times_out_empty(
    api: Api, alice: User, autojump_clock: trio.testing.MockClock
) -> None:
    await api.create_room(alice)
    since = (await sync(api, alice))["next_batch"]
    start = trio.current_time()
    body = await sync(api, alice, since=since, timeout="30000")
    waited = trio.current_time() - start
    assert 30 <= waited < 31
    assert body["next_batch"] == since
    assert body["rooms"] == {"join": {}, "invite": {}, "leave": {}, "knock": {}}
    assert body["account_data"] == {"events": []}


async def test_initial_sync_does_not_wait(
    api: Api, alice: User, autojump_clock: trio.testing.MockClock
) -> None:
    start = trio.current_time()
    await sync(api, alice, timeout="30000")
    assert trio.current_time() - start < 1


async def test_long_poll_timeout_is_capped(
    api: Api, engine: Engine, alice: User, autojump_clock: trio.testing.MockClock
) -> None:
    since = (await sync(api, alice))["next_batch"]
    start = trio.current_time()
    await sync(api, alice, since=since, timeout=str(10**9))
    waited = trio.current_time() - start
    cap_s = engine.config.sync_timeout_cap_ms / 1000
    assert cap_s <= waited < cap_s + 1


async def test_invite_room_state_stays_out_of_timelines(api: Api) -> None:
    """The stripped state shared with an invitee is theirs: other members' timelines
    show the invite event without it."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await api.create_room(alice, name="Private plans")
    reply = await api.call(
        "POST", f"rooms/{q(room_id)}/invite", token=alice, body={"user_id": bob.user_id}
    )
    assert reply.status == 200
    timeline = (await api.sync(alice))["rooms"]["join"][room_id]["timeline"]["events"]
    invite = [e for e in timeline if e["type"] == "m.room.member" and e["state_key"] == bob.user_id]
    assert len(invite) == 1
    assert "invite_room_state" not in invite[0]["unsigned"]
    shared = (await api.sync(bob))["rooms"]["invite"][room_id]["invite_state"]["events"]
    assert {
        "type": "m.room.name",
        "state_key": "",
        "sender": alice.user_id,
        "content": {"name": "Private plans"},
    } in shared
