"""Rooms through the API: createRoom, membership, moderation, send, state, history."""

from __future__ import annotations

import re
from typing import Any

import pytest

from homeserver.engine import Engine
from homeserver.types import RoomRecord
from tests.helpers import Api, Reply, User, q

SERVER = "test.local"
EVENT_ID_RE = re.compile(r"^\$[A-Za-z0-9_-]{43}$")
ROOM_ID_RE = re.compile(r"^![A-Za-z0-9_-]{16,}:test\.local$")


# -- helpers ---------------------------------------------------------------------------


def room_path(room_id: str, *parts: str) -> str:
    return "/".join(("rooms", q(room_id), *parts))


async def post(api: Api, user: User, room_id: str, action: str, body: Any = None) -> Reply:
    return await api.call("POST", room_path(room_id, action), token=user, body=body)


async def join(api: Api, user: User, room_id: str) -> None:
    reply = await post(api, user, room_id, "join", {})
    assert reply.status == 200, reply.body
    assert reply.body == {"room_id": room_id}


async def invite(api: Api, inviter: User, room_id: str, invitee: User) -> None:
    reply = await post(api, inviter, room_id, "invite", {"user_id": invitee.user_id})
    assert reply.status == 200, reply.body
    assert reply.body == {}


async def put_state(
    api: Api, user: User, room_id: str, event_type: str, content: Any, state_key: str = ""
) -> Reply:
    path = room_path(room_id, "state", q(event_type))
    if state_key:
        path += "/" + q(state_key)
    return await api.call("PUT", path, token=user, body=content)


async def get_state(
    api: Api, user: User, room_id: str, event_type: str, state_key: str = ""
) -> Reply:
    path = room_path(room_id, "state", q(event_type))
    if state_key:
        path += "/" + q(state_key)
    return await api.call("GET", path, token=user)


async def state_content(api: Api, user: User, room_id: str, event_type: str, key: str = "") -> Any:
    reply = await get_state(api, user, room_id, event_type, key)
    assert reply.status == 200, reply.body
    return reply.body


async def send(
    api: Api,
    user: User,
    room_id: str,
    content: Any,
    txn_id: str,
    event_type: str = "m.room.message",
) -> Reply:
    return await api.call(
        "PUT", room_path(room_id, "send", q(event_type), q(txn_id)), token=user, body=content
    )


async def messages(api: Api, user: User, room_id: str, **query: str) -> Reply:
    return await api.call("GET", room_path(room_id, "messages"), token=user, query=query)


async def login(api: Api, user: User) -> User:
    """A second device (and access token) for the same user."""
    reply = await api.call(
        "POST",
        "login",
        body={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user.user_id},
            "password": user.password,
        },
    )
    assert reply.status == 200, reply.body
    assert reply.body["device_id"] != user.device_id
    return User(user.user_id, reply.body["access_token"], reply.body["device_id"], user.password)


def assert_error(reply: Reply, status: int, errcode: str) -> None:
    assert reply.status == status, reply.body
    assert reply.errcode == errcode, reply.body
    assert isinstance(reply.body["error"], str) and reply.body["error"]
    assert reply.headers["content-type"] == "application/json"


async def all_messages(api: Api, user: User, room_id: str) -> list[dict[str, Any]]:
    """The whole visible history, oldest first."""
    reply = await messages(api, user, room_id, dir="f", limit="1000")
    assert reply.status == 200, reply.body
    events: list[dict[str, Any]] = reply.body["chunk"]
    return events


async def texts(api: Api, user: User, room_id: str) -> list[str]:
    return [
        e["content"]["body"]
        for e in await all_messages(api, user, room_id)
        if e["type"] == "m.room.message"
    ]


@pytest.fixture
async def alice(api: Api) -> User:
    return await api.register("alice")


@pytest.fixture
async def bob(api: Api) -> User:
    return await api.register("bob")


@pytest.fixture
async def carol(api: Api) -> User:
    return await api.register("carol")


# -- createRoom ------------------------------------------------------------------------


async def test_create_private_chat_defaults(api: Api, alice: User) -> None:
    room_id = await api.create_room(alice, preset="private_chat")
    assert ROOM_ID_RE.match(room_id), room_id

    assert await state_content(api, alice, room_id, "m.room.join_rules") == {"join_rule": "invite"}
    assert await state_content(api, alice, room_id, "m.room.history_visibility") == {
        "history_visibility": "shared"
    }
    assert await state_content(api, alice, room_id, "m.room.guest_access") == {
        "guest_access": "can_join"
    }
    create = await state_content(api, alice, room_id, "m.room.create")
    assert create == {"room_version": "10", "creator": alice.user_id}
    power = await state_content(api, alice, room_id, "m.room.power_levels")
    assert power["users"] == {alice.user_id: 100}
    assert power["users_default"] == 0
    assert power["invite"] == 0
    assert (power["kick"], power["ban"], power["redact"]) == (50, 50, 50)
    assert (power["events_default"], power["state_default"]) == (0, 50)
    assert power["events"]["m.room.power_levels"] == 100
    member = await state_content(api, alice, room_id, "m.room.member", alice.user_id)
    assert member == {"membership": "join"}

    joined = await api.call("GET", "joined_rooms", token=alice)
    assert joined.status == 200
    assert joined.body == {"joined_rooms": [room_id]}


async def test_create_with_empty_body_is_a_private_chat(api: Api, alice: User) -> None:
    reply = await api.call("POST", "createRoom", token=alice, raw=b"")
    assert reply.status == 200, reply.body
    room_id = reply.body["room_id"]
    assert await state_content(api, alice, room_id, "m.room.join_rules") == {"join_rule": "invite"}


async def test_create_public_chat(api: Api, alice: User) -> None:
    room_id = await api.create_room(alice, preset="public_chat")
    assert await state_content(api, alice, room_id, "m.room.join_rules") == {"join_rule": "public"}
    power = await state_content(api, alice, room_id, "m.room.power_levels")
    assert power["invite"] == 50
    assert power["users"] == {alice.user_id: 100}
    # public_chat leaves guest access at its default (forbidden).
    missing = await get_state(api, alice, room_id, "m.room.guest_access")
    assert_error(missing, 404, "M_NOT_FOUND")


async def test_visibility_public_without_preset_means_public_chat(api: Api, alice: User) -> None:
    room_id = await api.create_room(alice, visibility="public")
    assert await state_content(api, alice, room_id, "m.room.join_rules") == {"join_rule": "public"}


async def test_create_trusted_private_chat_gives_invitees_creator_power(
    api: Api, alice: User, bob: User, carol: User
) -> None:
    room_id = await api.create_room(
        alice, preset="trusted_private_chat", invite=[bob.user_id, carol.user_id]
    )
    assert await state_content(api, alice, room_id, "m.room.join_rules") == {"join_rule": "invite"}
    power = await state_content(api, alice, room_id, "m.room.power_levels")
    assert power["users"] == {alice.user_id: 100, bob.user_id: 100, carol.user_id: 100}
    for user in (bob, carol):
        member = await state_content(api, alice, room_id, "m.room.member", user.user_id)
        assert member == {"membership": "invite"}


async def test_private_chat_invitees_get_no_power(api: Api, alice: User, bob: User) -> None:
    room_id = await api.create_room(alice, preset="private_chat", invite=[bob.user_id])
    power = await state_content(api, alice, room_id, "m.room.power_levels")
    assert power["users"] == {alice.user_id: 100}


async def test_create_name_topic_and_invite(api: Api, alice: User, bob: User) -> None:
    room_id = await api.create_room(
        alice, name="Lunch", topic="Where to eat", invite=[bob.user_id], is_direct=True
    )
    assert await state_content(api, alice, room_id, "m.room.name") == {"name": "Lunch"}
    assert await state_content(api, alice, room_id, "m.room.topic") == {"topic": "Where to eat"}
    member = await state_content(api, alice, room_id, "m.room.member", bob.user_id)
    assert member == {"membership": "invite", "is_direct": True}
    # The invitee can join the invite-only room.
    await join(api, bob, room_id)


async def test_initial_state_overrides_preset_and_is_overridden_by_name(
    api: Api, alice: User
) -> None:
    room_id = await api.create_room(
        alice,
        preset="private_chat",
        name="From name",
        initial_state=[
            {"type": "m.room.join_rules", "content": {"join_rule": "public"}},
            {"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}},
            {"type": "m.room.name", "state_key": "", "content": {"name": "From state"}},
            {"type": "org.example.custom", "state_key": "k", "content": {"x": 1}},
        ],
    )
    assert await state_content(api, alice, room_id, "m.room.join_rules") == {"join_rule": "public"}
    assert await state_content(api, alice, room_id, "m.room.history_visibility") == {
        "history_visibility": "joined"
    }
    assert await state_content(api, alice, room_id, "m.room.name") == {"name": "From name"}
    assert await state_content(api, alice, room_id, "org.example.custom", "k") == {"x": 1}
    # Each (type, state_key) is sent once: the preset's join rule was replaced, not shadowed.
    state = await api.call("GET", room_path(room_id, "state"), token=alice)
    keys = [(e["type"], e["state_key"]) for e in state.body]
    assert len(keys) == len(set(keys))
    history = await all_messages(api, alice, room_id)
    join_rules = [e for e in history if e["type"] == "m.room.join_rules"]
    assert [e["content"] for e in join_rules] == [{"join_rule": "public"}]


async def test_power_level_content_override(api: Api, alice: User) -> None:
    room_id = await api.create_room(
        alice, power_level_content_override={"invite": 100, "events": {"m.room.topic": 80}}
    )
    power = await state_content(api, alice, room_id, "m.room.power_levels")
    assert power["invite"] == 100
    assert power["events"] == {"m.room.topic": 80}
    assert power["users"] == {alice.user_id: 100}


@pytest.mark.parametrize("version", ["10", "11"])
async def test_room_versions(api: Api, alice: User, version: str) -> None:
    room_id = await api.create_room(alice, room_version=version)
    create = await state_content(api, alice, room_id, "m.room.create")
    assert create["room_version"] == version
    # Room version 11 dropped `creator` from the create event.
    assert ("creator" in create) is (version == "10")
    if version == "10":
        assert create["creator"] == alice.user_id


async def test_creation_content_is_kept(api: Api, alice: User) -> None:
    room_id = await api.create_room(alice, creation_content={"m.federate": False})
    create = await state_content(api, alice, room_id, "m.room.create")
    assert create == {"m.federate": False, "room_version": "10", "creator": alice.user_id}


async def test_unsupported_room_version(api: Api, alice: User) -> None:
    reply = await api.call("POST", "createRoom", token=alice, body={"room_version": "1"})
    assert_error(reply, 400, "M_UNSUPPORTED_ROOM_VERSION")
    reply = await api.call("POST", "createRoom", token=alice, body={"room_version": "12345"})
    assert_error(reply, 400, "M_UNSUPPORTED_ROOM_VERSION")
    assert (await api.call("GET", "joined_rooms", token=alice)).body == {"joined_rooms": []}


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({"preset": "party"}, "M_INVALID_PARAM"),
        ({"visibility": "hidden"}, "M_INVALID_PARAM"),
        ({"name": 5}, "M_BAD_JSON"),
        ({"topic": ["x"]}, "M_BAD_JSON"),
        ({"invite": "@bob:test.local"}, "M_BAD_JSON"),
        ({"invite": ["bob"]}, "M_BAD_JSON"),
        ({"initial_state": {}}, "M_BAD_JSON"),
        ({"initial_state": ["x"]}, "M_BAD_JSON"),
        ({"initial_state": [{"type": "m.room.topic"}]}, "M_BAD_JSON"),
        ({"initial_state": [{"content": {}}]}, "M_MISSING_PARAM"),
        (
            {"initial_state": [{"type": "m.room.create", "content": {}}]},
            "M_INVALID_PARAM",
        ),
        ({"is_direct": "yes"}, "M_BAD_JSON"),
        ({"creation_content": []}, "M_BAD_JSON"),
        ({"power_level_content_override": {"ban": "high"}}, "M_BAD_JSON"),
        ({"power_level_content_override": {"users": {"@a:test.local": True}}}, "M_BAD_JSON"),
        ({"room_version": 10}, "M_BAD_JSON"),
    ],
)
async def test_create_room_bad_bodies(
    api: Api, alice: User, body: dict[str, Any], errcode: str
) -> None:
    reply = await api.call("POST", "createRoom", token=alice, body=body)
    assert_error(reply, 400, errcode)
    assert (await api.call("GET", "joined_rooms", token=alice)).body == {"joined_rooms": []}


async def test_refused_create_room_stores_no_room(
    api: Api, engine: Engine, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[str] = []
    store = engine.storage.rooms
    original = store.create_room

    async def recording_create_room(room: RoomRecord) -> None:
        created.append(room.room_id)
        await original(room)

    monkeypatch.setattr(store, "create_room", recording_create_room)
    for body in (
        {"power_level_content_override": {"kick": "x"}},
        {"initial_state": [{"type": "m.room.member", "state_key": "", "content": {}}]},
        {"name": "x" * 70000},
        {"topic": "x" * 5000},
        {"initial_state": [{"type": "org.example.big", "content": {"x": "y" * 70000}}]},
    ):
        reply = await api.call("POST", "createRoom", token=alice, body=body)
        assert reply.status in (400, 413), reply.body
    assert created == []
    room_id = await api.create_room(alice)
    assert created == [room_id]


async def test_create_room_not_json(api: Api, alice: User) -> None:
    reply = await api.call("POST", "createRoom", token=alice, raw=b"{nope")
    assert_error(reply, 400, "M_NOT_JSON")
    reply = await api.call("POST", "createRoom", token=alice, body=["private_chat"])
    assert_error(reply, 400, "M_BAD_JSON")


async def test_create_room_requires_auth(api: Api) -> None:
    reply = await api.call("POST", "createRoom", body={})
    assert_error(reply, 401, "M_MISSING_TOKEN")


async def test_create_room_invite_unknown_or_remote_user(api: Api, alice: User) -> None:
    unknown = await api.call(
        "POST", "createRoom", token=alice, body={"invite": ["@nobody:test.local"]}
    )
    assert_error(unknown, 404, "M_NOT_FOUND")
    remote = await api.call(
        "POST", "createRoom", token=alice, body={"invite": ["@bob:elsewhere.org"]}
    )
    assert_error(remote, 403, "M_FORBIDDEN")
    # Nothing was half-created.
    assert (await api.call("GET", "joined_rooms", token=alice)).body == {"joined_rooms": []}


async def test_room_and_event_ids_are_unique_and_unguessable(api: Api, alice: User) -> None:
    room_ids = [await api.create_room(alice) for _ in range(5)]
    assert len(set(room_ids)) == 5
    for room_id in room_ids:
        assert ROOM_ID_RE.match(room_id), room_id
    event_ids = [await api.send_text(alice, room_ids[0], f"m{i}", f"txn{i}") for i in range(10)]
    assert len(set(event_ids)) == 10
    for event_id in event_ids:
        assert EVENT_ID_RE.match(event_id), event_id
    # Ids are random, not sequential: no two share a long common prefix.
    prefixes = {e[:8] for e in event_ids}
    assert len(prefixes) == 10


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


async def make_moderated_room(api: Api, admin: User, *members: User) -> str:
    room_id = await api.create_room(admin, preset="public_chat")
    for member in members:
        await join(api, member, room_id)
    return room_id


async def set_levels(api: Api, admin: User, room_id: str, users: dict[str, int]) -> None:
    power = await state_content(api, admin, room_id, "m.room.power_levels")
    power["users"].update(users)
    reply = await put_state(api, admin, room_id, "m.room.power_levels", power)
    assert reply.status == 200, reply.body


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


# -- single events and joined rooms ----------------------------------------------------


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
