"""Account data, filters, profiles, push rules and the discovery endpoints clients call
before their first sync (capabilities, versions, well-known, TURN, third-party ids)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from tests.helpers import Api, User, q


def account_data_path(user: User | str, data_type: str, room_id: str | None = None) -> str:
    user_id = user.user_id if isinstance(user, User) else user
    if room_id is None:
        return f"user/{q(user_id)}/account_data/{q(data_type)}"
    return f"user/{q(user_id)}/rooms/{q(room_id)}/account_data/{q(data_type)}"


def global_account_data(sync: Any) -> dict[str, Any]:
    return {e["type"]: e["content"] for e in sync["account_data"]["events"]}


def room_account_data(sync: Any, room_id: str) -> dict[str, Any]:
    events = sync["rooms"]["join"][room_id]["account_data"]["events"]
    return {e["type"]: e["content"] for e in events}


async def send_messages(api: Api, user: User, room_id: str, count: int) -> list[str]:
    return [await api.send_text(user, room_id, f"message {i}", f"txn{i}") for i in range(count)]


# -- account data -----------------------------------------------------------------------


async def test_global_account_data_round_trip(api: Api) -> None:
    alice = await api.register("alice")
    content = {"rooms": {"@bob:test.local": ["!a:test.local"]}, "n": 1, "ok": True, "x": None}
    put = await api.call("PUT", account_data_path(alice, "m.direct"), token=alice, body=content)
    assert (put.status, put.body) == (200, {})
    got = await api.call("GET", account_data_path(alice, "m.direct"), token=alice)
    assert (got.status, got.body) == (200, content)
    # Overwrite replaces the whole content.
    await api.call("PUT", account_data_path(alice, "m.direct"), token=alice, body={"b": 2})
    got = await api.call("GET", account_data_path(alice, "m.direct"), token=alice)
    assert got.body == {"b": 2}
    # An empty object is valid content.
    await api.call("PUT", account_data_path(alice, "org.example.empty"), token=alice, body={})
    empty = await api.call("GET", account_data_path(alice, "org.example.empty"), token=alice)
    assert (empty.status, empty.body) == (200, {})


async def test_account_data_is_per_user(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    await api.call("PUT", account_data_path(alice, "org.example"), token=alice, body={"a": 1})
    reply = await api.call("GET", account_data_path(bob, "org.example"), token=bob)
    assert (reply.status, reply.errcode) == (404, "M_NOT_FOUND")


async def test_account_data_missing_is_404(api: Api) -> None:
    alice = await api.register("alice")
    room_id = await api.create_room(alice)
    for path in (
        account_data_path(alice, "org.example.none"),
        account_data_path(alice, "org.example.none", room_id),
    ):
        reply = await api.call("GET", path, token=alice)
        assert (reply.status, reply.errcode) == (404, "M_NOT_FOUND")
        assert isinstance(reply.body["error"], str)


async def test_account_data_of_another_user_is_forbidden(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await api.create_room(bob)
    await api.call("PUT", account_data_path(bob, "org.example"), token=bob, body={"secret": 1})
    for room in (None, room_id):
        path = account_data_path(bob, "org.example", room)
        put = await api.call("PUT", path, token=alice, body={"evil": True})
        assert (put.status, put.errcode) == (403, "M_FORBIDDEN")
        get = await api.call("GET", path, token=alice)
        assert (get.status, get.errcode) == (403, "M_FORBIDDEN")
    # Bob's data is intact.
    mine = await api.call("GET", account_data_path(bob, "org.example"), token=bob)
    assert mine.body == {"secret": 1}


@pytest.mark.parametrize("data_type", ["m.fully_read", "m.push_rules"])
async def test_server_managed_account_data_is_refused(api: Api, data_type: str) -> None:
    alice = await api.register("alice")
    room_id = await api.create_room(alice)
    for room in (None, room_id):
        reply = await api.call(
            "PUT", account_data_path(alice, data_type, room), token=alice, body={"event_id": "$x"}
        )
        # The spec: 405 M_BAD_JSON for types the server controls.
        assert (reply.status, reply.errcode) == (405, "M_BAD_JSON")
        got = await api.call("GET", account_data_path(alice, data_type, room), token=alice)
        assert got.status == 404


async def test_account_data_type_length(api: Api) -> None:
    alice = await api.register("alice")
    ok = await api.call("PUT", account_data_path(alice, "t" * 255), token=alice, body={})
    assert ok.status == 200
    too_long = await api.call("PUT", account_data_path(alice, "t" * 256), token=alice, body={})
    assert (too_long.status, too_long.errcode) == (400, "M_INVALID_PARAM")


@pytest.mark.parametrize("raw", [b"[]", b'"text"', b"1", b"null", b"true"])
async def test_account_data_must_be_an_object(api: Api, raw: bytes) -> None:
    alice = await api.register("alice")
    reply = await api.call("PUT", account_data_path(alice, "org.example"), token=alice, raw=raw)
    assert (reply.status, reply.errcode) == (400, "M_BAD_JSON")


async def test_room_account_data_round_trip(api: Api) -> None:
    alice = await api.register("alice")
    room_id = await api.create_room(alice)
    path = account_data_path(alice, "m.tag", room_id)
    tags = {"tags": {"m.favourite": {"order": 0.5}}}
    put = await api.call("PUT", path, token=alice, body=tags)
    assert (put.status, put.body) == (200, {})
    got = await api.call("GET", path, token=alice)
    assert (got.status, got.body) == (200, tags)
    # Room and global account data are separate namespaces.
    global_reply = await api.call("GET", account_data_path(alice, "m.tag"), token=alice)
    assert global_reply.status == 404
    other_room = await api.create_room(alice)
    other = await api.call("GET", account_data_path(alice, "m.tag", other_room), token=alice)
    assert other.status == 404


async def test_room_account_data_needs_a_room_id(api: Api) -> None:
    alice = await api.register("alice")
    for room_id in ("not-a-room", "#alias:test.local", "!nocolon", "!a:test.local\n"):
        reply = await api.call(
            "PUT", account_data_path(alice, "m.tag", room_id), token=alice, body={}
        )
        assert (reply.status, reply.errcode) == (400, "M_INVALID_PARAM"), room_id


async def test_account_data_in_initial_and_incremental_sync(api: Api) -> None:
    alice = await api.register("alice")
    room_id = await api.create_room(alice)
    await api.call("PUT", account_data_path(alice, "org.example.a"), token=alice, body={"v": 1})
    await api.call(
        "PUT", account_data_path(alice, "org.example.r", room_id), token=alice, body={"r": 1}
    )
    first = await api.sync(alice)
    assert global_account_data(first) == {"org.example.a": {"v": 1}}
    assert room_account_data(first, room_id) == {"org.example.r": {"r": 1}}
    # Room account data does not leak into the global list.
    assert "org.example.r" not in global_account_data(first)

    # Nothing new: an incremental sync carries no account data.
    quiet = await api.sync(alice, since=first["next_batch"])
    assert quiet["account_data"]["events"] == []
    assert room_id not in quiet["rooms"]["join"]

    await api.call("PUT", account_data_path(alice, "org.example.b"), token=alice, body={"v": 2})
    await api.call(
        "PUT", account_data_path(alice, "org.example.r", room_id), token=alice, body={"r": 2}
    )
    later = await api.sync(alice, since=first["next_batch"])
    assert global_account_data(later) == {"org.example.b": {"v": 2}}
    assert room_account_data(later, room_id) == {"org.example.r": {"r": 2}}
    # A room with only account data changes still has a well-formed entry.
    room = later["rooms"]["join"][room_id]
    assert room["timeline"]["events"] == []
    assert room["state"] == {"events": []}


async def test_account_data_of_others_not_in_my_sync(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    await api.call("PUT", account_data_path(bob, "org.example"), token=bob, body={"b": 1})
    sync = await api.sync(alice)
    assert sync["account_data"]["events"] == []


async def test_account_data_wakes_a_waiting_sync(api: Api, autojump_clock: MockClock) -> None:
    alice = await api.register("alice")
    first = await api.sync(alice)
    result: dict[str, Any] = {}

    async def wait() -> None:
        result["sync"] = await api.sync(alice, since=first["next_batch"], timeout="30000")
        result["woke_at"] = trio.current_time()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await trio.sleep(5)
        await api.call("PUT", account_data_path(alice, "org.example"), token=alice, body={"x": 1})
    assert global_account_data(result["sync"]) == {"org.example": {"x": 1}}
    assert result["woke_at"] < 30


# -- filters ----------------------------------------------------------------------------


async def test_filter_create_and_read_back(api: Api) -> None:
    alice = await api.register("alice")
    definition = {
        "room": {"timeline": {"limit": 20}, "state": {"lazy_load_members": True}},
        "presence": {"types": ["m.presence"]},
        "event_fields": ["type", "content"],
    }
    created = await api.call(
        "POST", f"user/{q(alice.user_id)}/filter", token=alice, body=definition
    )
    assert created.status == 200, created.body
    filter_id = created.body["filter_id"]
    assert isinstance(filter_id, str) and filter_id
    assert not filter_id.startswith("{")  # would be mistaken for an inline filter
    got = await api.call("GET", f"user/{q(alice.user_id)}/filter/{q(filter_id)}", token=alice)
    assert (got.status, got.body) == (200, definition)
    second = await api.call("POST", f"user/{q(alice.user_id)}/filter", token=alice, body={})
    assert second.body["filter_id"] != filter_id


async def test_filter_of_another_user(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    created = await api.call("POST", f"user/{q(bob.user_id)}/filter", token=bob, body={})
    filter_id = created.body["filter_id"]
    # Through Bob's path: forbidden.
    get = await api.call("GET", f"user/{q(bob.user_id)}/filter/{filter_id}", token=alice)
    assert (get.status, get.errcode) == (403, "M_FORBIDDEN")
    post = await api.call("POST", f"user/{q(bob.user_id)}/filter", token=alice, body={})
    assert (post.status, post.errcode) == (403, "M_FORBIDDEN")
    # Through Alice's own path: Bob's filter id is not hers.
    mine = await api.call("GET", f"user/{q(alice.user_id)}/filter/{filter_id}", token=alice)
    assert (mine.status, mine.errcode) == (404, "M_NOT_FOUND")


async def test_unknown_filter(api: Api) -> None:
    alice = await api.register("alice")
    reply = await api.call("GET", f"user/{q(alice.user_id)}/filter/12345", token=alice)
    assert (reply.status, reply.errcode) == (404, "M_NOT_FOUND")
    sync = await api.call("GET", "sync", token=alice, query={"filter": "12345"})
    assert (sync.status, sync.errcode) == (404, "M_NOT_FOUND")


@pytest.mark.parametrize(
    "definition",
    [
        [],
        "filter",
        {"room": []},
        {"room": {"timeline": []}},
        {"room": {"timeline": {"limit": -1}}},
        {"room": {"timeline": {"limit": "5"}}},
        {"room": {"timeline": {"limit": 2.5}}},
        {"room": {"timeline": {"limit": True}}},
        {"room": {"include_leave": "yes"}},
        {"room": {"rooms": "!a:test.local"}},
        {"room": {"rooms": [1, 2]}},
        {"room": {"not_rooms": {"a": 1}}},
    ],
)
async def test_bad_filter(api: Api, definition: Any) -> None:
    alice = await api.register("alice")
    reply = await api.call("POST", f"user/{q(alice.user_id)}/filter", token=alice, body=definition)
    assert (reply.status, reply.errcode) == (400, "M_BAD_JSON"), reply.body
    if isinstance(definition, dict):
        inline = await api.call(
            "GET", "sync", token=alice, query={"filter": json.dumps(definition)}
        )
        assert (inline.status, inline.errcode) == (400, "M_BAD_JSON")


async def test_filter_timeline_limit_applies_to_sync(api: Api) -> None:
    alice = await api.register("alice")
    room_id = await api.create_room(alice)
    sent = await send_messages(api, alice, room_id, 5)
    created = await api.call(
        "POST",
        f"user/{q(alice.user_id)}/filter",
        token=alice,
        body={"room": {"timeline": {"limit": 2}}},
    )
    filter_id = created.body["filter_id"]
    sync = await api.sync(alice, filter=filter_id)
    timeline = sync["rooms"]["join"][room_id]["timeline"]
    assert [e["event_id"] for e in timeline["events"]] == sent[-2:]
    assert timeline["limited"] is True
    # State before the timeline still arrives (the room's creation state).
    state_types = {e["type"] for e in sync["rooms"]["join"][room_id]["state"]["events"]}
    assert {"m.room.create", "m.room.member", "m.room.power_levels"} <= state_types

    inline = await api.sync(alice, filter='{"room": {"timeline": {"limit": 3}}}')
    events = inline["rooms"]["join"][room_id]["timeline"]["events"]
    assert [e["event_id"] for e in events] == sent[-3:]

    # Without a filter, all 5 messages plus creation events fit in the default limit of 10.
    unfiltered = await api.sync(alice)
    ids = [e["event_id"] for e in unfiltered["rooms"]["join"][room_id]["timeline"]["events"]]
    assert ids[-5:] == sent


async def test_filter_rooms_applies_to_sync(api: Api) -> None:
    alice = await api.register("alice")
    wanted = await api.create_room(alice)
    other = await api.create_room(alice)
    sync = await api.sync(alice, filter=json.dumps({"room": {"rooms": [wanted]}}))
    assert set(sync["rooms"]["join"]) == {wanted}
    sync = await api.sync(alice, filter=json.dumps({"room": {"not_rooms": [wanted]}}))
    assert set(sync["rooms"]["join"]) == {other}


# -- profile ----------------------------------------------------------------------------


async def test_profile_of_a_new_user_is_empty(api: Api) -> None:
    alice = await api.register("alice")
    reply = await api.call("GET", f"profile/{q(alice.user_id)}")
    assert (reply.status, reply.body) == (200, {})
    for field in ("displayname", "avatar_url"):
        missing = await api.call("GET", f"profile/{q(alice.user_id)}/{field}")
        assert (missing.status, missing.errcode) == (404, "M_NOT_FOUND")


async def test_set_and_get_profile(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    base = f"profile/{q(alice.user_id)}"
    put = await api.call("PUT", f"{base}/displayname", token=alice, body={"displayname": "Alice"})
    assert (put.status, put.body) == (200, {})
    put = await api.call(
        "PUT", f"{base}/avatar_url", token=alice, body={"avatar_url": "mxc://test.local/abc"}
    )
    assert (put.status, put.body) == (200, {})
    # Readable by anyone, with or without a token.
    for token in (None, bob.access_token):
        full = await api.call("GET", base, token=token)
        assert (full.status, full.body) == (
            200,
            {"displayname": "Alice", "avatar_url": "mxc://test.local/abc"},
        )
        name = await api.call("GET", f"{base}/displayname", token=token)
        assert (name.status, name.body) == (200, {"displayname": "Alice"})
        avatar = await api.call("GET", f"{base}/avatar_url", token=token)
        assert (avatar.status, avatar.body) == (200, {"avatar_url": "mxc://test.local/abc"})
    # Bob's profile is unaffected.
    assert (await api.call("GET", f"profile/{q(bob.user_id)}")).body == {}


async def test_clear_profile_field_with_null(api: Api) -> None:
    alice = await api.register("alice")
    base = f"profile/{q(alice.user_id)}"
    await api.call("PUT", f"{base}/displayname", token=alice, body={"displayname": "Alice"})
    cleared = await api.call("PUT", f"{base}/displayname", token=alice, body={"displayname": None})
    assert cleared.status == 200
    assert (await api.call("GET", base)).body == {}
    missing = await api.call("GET", f"{base}/displayname")
    assert (missing.status, missing.errcode) == (404, "M_NOT_FOUND")


async def test_profile_put_without_the_field_changes_nothing(api: Api) -> None:
    alice = await api.register("alice")
    base = f"profile/{q(alice.user_id)}"
    await api.call("PUT", f"{base}/displayname", token=alice, body={"displayname": "Alice"})
    for body in ({}, {"avatar_url": "mxc://x/y"}):
        reply = await api.call("PUT", f"{base}/displayname", token=alice, body=body)
        assert (reply.status, reply.errcode) == (400, "M_MISSING_PARAM")
    assert (await api.call("GET", base)).body == {"displayname": "Alice"}


@pytest.mark.parametrize("value", [5, ["Alice"], {"n": "Alice"}, True, "x" * 1025])
async def test_profile_put_bad_value(api: Api, value: Any) -> None:
    alice = await api.register("alice")
    reply = await api.call(
        "PUT", f"profile/{q(alice.user_id)}/displayname", token=alice, body={"displayname": value}
    )
    assert (reply.status, reply.errcode) == (400, "M_BAD_JSON")
    assert (await api.call("GET", f"profile/{q(alice.user_id)}")).body == {}


async def test_profile_put_for_another_user_is_forbidden(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    for field in ("displayname", "avatar_url"):
        reply = await api.call(
            "PUT", f"profile/{q(bob.user_id)}/{field}", token=alice, body={field: "Mallory"}
        )
        assert (reply.status, reply.errcode) == (403, "M_FORBIDDEN")
    assert (await api.call("GET", f"profile/{q(bob.user_id)}")).body == {}


async def test_profile_put_needs_a_token(api: Api) -> None:
    alice = await api.register("alice")
    reply = await api.call(
        "PUT", f"profile/{q(alice.user_id)}/displayname", body={"displayname": "A"}
    )
    assert (reply.status, reply.errcode) == (401, "M_MISSING_TOKEN")


async def test_profile_unknown_field(api: Api) -> None:
    alice = await api.register("alice")
    put = await api.call(
        "PUT", f"profile/{q(alice.user_id)}/org.example.pronouns", token=alice, body={"x": "y"}
    )
    assert (put.status, put.errcode) == (404, "M_NOT_FOUND")
    get = await api.call("GET", f"profile/{q(alice.user_id)}/org.example.pronouns")
    assert (get.status, get.errcode) == (404, "M_NOT_FOUND")


@pytest.mark.parametrize("user_id", ["@nobody:test.local", "@alice:elsewhere.example", "alice"])
async def test_profile_of_unknown_user(api: Api, user_id: str) -> None:
    await api.register("alice")
    for path in (f"profile/{q(user_id)}", f"profile/{q(user_id)}/displayname"):
        reply = await api.call("GET", path)
        assert (reply.status, reply.errcode) == (404, "M_NOT_FOUND"), path


async def test_displayname_change_updates_member_events(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_a = await api.create_room(alice, preset="public_chat")
    room_b = await api.create_room(alice)
    joined = await api.call("POST", f"rooms/{q(room_a)}/join", token=bob)
    assert joined.status == 200, joined.body
    bob_first = await api.sync(bob)

    put = await api.call(
        "PUT",
        f"profile/{q(alice.user_id)}/displayname",
        token=alice,
        body={"displayname": "Alice A."},
    )
    assert put.status == 200
    for room_id in (room_a, room_b):
        state = await api.call(
            "GET", f"rooms/{q(room_id)}/state/m.room.member/{q(alice.user_id)}", token=alice
        )
        assert (state.status, state.body) == (
            200,
            {"membership": "join", "displayname": "Alice A."},
        )

    # Bob, in room A, sees the new member event, with what it replaced.
    bob_next = await api.sync(bob, since=bob_first["next_batch"])
    events = bob_next["rooms"]["join"][room_a]["timeline"]["events"]
    members = [e for e in events if e["type"] == "m.room.member"]
    assert len(members) == 1
    assert members[0]["state_key"] == alice.user_id
    assert members[0]["sender"] == alice.user_id
    assert members[0]["content"] == {"membership": "join", "displayname": "Alice A."}
    assert members[0]["unsigned"]["prev_content"] == {"membership": "join"}
    # Room B is not Bob's business.
    assert room_b not in bob_next["rooms"]["join"]

    joined_members = await api.call("GET", f"rooms/{q(room_a)}/joined_members", token=bob)
    assert joined_members.body["joined"][alice.user_id] == {"display_name": "Alice A."}


async def test_profile_is_carried_into_later_joins(api: Api) -> None:
    alice = await api.register("alice")
    await api.call(
        "PUT",
        f"profile/{q(alice.user_id)}/avatar_url",
        token=alice,
        body={"avatar_url": "mxc://test.local/face"},
    )
    room_id = await api.create_room(alice)
    state = await api.call(
        "GET", f"rooms/{q(room_id)}/state/m.room.member/{q(alice.user_id)}", token=alice
    )
    assert state.body == {"membership": "join", "avatar_url": "mxc://test.local/face"}


# -- push rules -------------------------------------------------------------------------


async def test_push_rules(api: Api) -> None:
    alice = await api.register("alice")
    for path in ("pushrules/", "pushrules"):
        reply = await api.call("GET", path, token=alice)
        assert reply.status == 200, path
        rules = reply.body["global"]
        assert set(rules) == {"override", "content", "room", "sender", "underride"}
        for kind, entries in rules.items():
            assert isinstance(entries, list), kind
            for rule in entries:
                assert isinstance(rule["rule_id"], str)
                assert rule["default"] is True
                assert isinstance(rule["enabled"], bool)
                assert isinstance(rule["actions"], list)
        override = {r["rule_id"]: r for r in rules["override"]}
        assert rules["override"][0]["rule_id"] == ".m.rule.master"
        assert override[".m.rule.master"]["enabled"] is False
        assert override[".m.rule.master"]["actions"] == []
        assert {".m.rule.suppress_notices", ".m.rule.invite_for_me", ".m.rule.member_event"} <= set(
            override
        )
        invite_for_me = override[".m.rule.invite_for_me"]["conditions"]
        assert {
            "kind": "event_match",
            "key": "state_key",
            "pattern": alice.user_id,
        } in invite_for_me
        content = {r["rule_id"]: r for r in rules["content"]}
        assert content[".m.rule.contains_user_name"]["pattern"] == "alice"
        underride = [r["rule_id"] for r in rules["underride"]]
        assert ".m.rule.message" in underride and ".m.rule.room_one_to_one" in underride
        assert underride.index(".m.rule.room_one_to_one") < underride.index(".m.rule.message")
        assert rules["room"] == [] and rules["sender"] == []


async def test_push_rules_global_scope(api: Api) -> None:
    alice = await api.register("alice")
    full = await api.call("GET", "pushrules/", token=alice)
    scoped = await api.call("GET", "pushrules/global/", token=alice)
    assert (scoped.status, scoped.body) == (200, full.body["global"])


async def test_push_rules_need_a_token(api: Api) -> None:
    reply = await api.call("GET", "pushrules/")
    assert (reply.status, reply.errcode) == (401, "M_MISSING_TOKEN")


# -- discovery --------------------------------------------------------------------------


async def test_versions(api: Api) -> None:
    reply = await api.call("GET", "/_matrix/client/versions")
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    versions = reply.body["versions"]
    assert {"r0.6.1", "v1.1", "v1.11"} <= set(versions)
    assert all(isinstance(v, str) for v in versions)
    assert isinstance(reply.body["unstable_features"], dict)


async def test_well_known(api: Api) -> None:
    reply = await api.call("GET", "/.well-known/matrix/client")
    assert (reply.status, reply.body) == (200, {"m.homeserver": {"base_url": "http://localhost"}})
    other = await api.call(
        "GET", "/.well-known/matrix/client", headers={"Host": "matrix.example.org:8448"}
    )
    assert other.body == {"m.homeserver": {"base_url": "http://matrix.example.org:8448"}}


async def test_capabilities(api: Api) -> None:
    alice = await api.register("alice")
    reply = await api.call("GET", "capabilities", token=alice)
    assert reply.status == 200
    caps = reply.body["capabilities"]
    assert caps["m.room_versions"] == {
        "default": "10",
        "available": {"10": "stable", "11": "stable"},
    }
    assert caps["m.change_password"] == {"enabled": False}
    assert caps["m.set_displayname"] == {"enabled": True}
    assert caps["m.set_avatar_url"] == {"enabled": True}
    assert caps["m.3pid_changes"] == {"enabled": False}


@pytest.mark.parametrize("path", ["capabilities", "voip/turnServer", "account/3pid"])
async def test_discovery_needs_a_token(api: Api, path: str) -> None:
    missing = await api.call("GET", path)
    assert (missing.status, missing.errcode) == (401, "M_MISSING_TOKEN")
    unknown = await api.call("GET", path, token="nope")
    assert (unknown.status, unknown.errcode) == (401, "M_UNKNOWN_TOKEN")


async def test_turn_server_is_empty_when_unconfigured(api: Api) -> None:
    alice = await api.register("alice")
    reply = await api.call("GET", "voip/turnServer", token=alice)
    assert (reply.status, reply.body) == (200, {})


async def test_third_party_ids(api: Api) -> None:
    alice = await api.register("alice")
    reply = await api.call("GET", "account/3pid", token=alice)
    assert (reply.status, reply.body) == (200, {"threepids": []})
