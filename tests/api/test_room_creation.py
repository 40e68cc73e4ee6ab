"""createRoom through the API: presets, power levels, initial state, room versions,
and refused requests."""

from __future__ import annotations

from typing import Any

import pytest

from backends.records import RoomRecord
from homeserver.engine import Engine
from tests.api.rooms_helpers import (
    EVENT_ID_RE,
    ROOM_ID_RE,
    all_messages,
    get_state,
    join,
    room_path,
    state_content,
)
from tests.helpers import Api, User, assert_error

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
