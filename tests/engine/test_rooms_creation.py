"""Room creation in the engine: what each preset sets up, the power levels a room
starts with, overrides, initial state, room versions, and refused requests leaving
nothing behind."""

from __future__ import annotations

from typing import Any

import pytest
from trio.testing import MockClock

from backends.records import Membership
from homeserver.engine.rooms import CreateRoomRequest
from homeserver.errors import BadJson, InvalidParam, MatrixError, NotFoundError
from tests.engine.conftest import MakeHarness
from tests.engine.rooms_helpers import (
    create,
    membership,
    record_created_rooms,
    scripted,
    state,
)

# What each preset must give (written out, not read from PRESETS: this checks the data).
EXPECTED = {
    # preset: (join_rule, invite level, guest_access, invitee's level)
    "private_chat": ("invite", 0, "can_join", 0),
    "trusted_private_chat": ("invite", 0, "can_join", 100),
    "public_chat": ("public", 50, None, 0),
}


@pytest.mark.parametrize("preset", sorted(EXPECTED))
async def test_each_preset_sets_up_its_room(
    make_harness: MakeHarness, autojump_clock: MockClock, preset: str
) -> None:
    h = await make_harness()
    alice, bob = await h.client("alice"), await h.client("bob")
    room_id = await create(h, alice, preset=preset, invite=(bob.user_id,))
    join_rule, invite_level, guest_access, invitee_level = EXPECTED[preset]
    assert await state(h, room_id, "m.room.join_rules") == {"join_rule": join_rule}
    guest = await state(h, room_id, "m.room.guest_access")
    assert guest == (None if guest_access is None else {"guest_access": guest_access})
    assert await state(h, room_id, "m.room.history_visibility") == {"history_visibility": "shared"}
    power = await state(h, room_id, "m.room.power_levels")
    assert power is not None
    assert power["invite"] == invite_level
    assert power["users"].get(bob.user_id, power["users_default"]) == invitee_level
    assert power["users"][alice.user_id] == 100
    assert await membership(h, room_id, bob) == Membership.INVITE


async def test_default_power_levels(make_harness: MakeHarness, autojump_clock: MockClock) -> None:
    h = await make_harness()
    alice = await h.client("alice")
    room_id = await create(h, alice)
    assert await state(h, room_id, "m.room.power_levels") == {
        "users": {alice.user_id: 100},
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 0,
        "notifications": {"room": 50},
    }


async def test_rooms_do_not_share_their_power_levels(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    """The defaults are data: a room's override must not leak into the next room."""
    h = await make_harness()
    alice, bob = await h.client("alice"), await h.client("bob")
    first = await create(
        h,
        alice,
        preset="trusted_private_chat",
        invite=(bob.user_id,),
        power_level_content_override={"events": {"m.room.topic": 100}},
    )
    second = await create(h, alice)
    first_power = await state(h, first, "m.room.power_levels")
    second_power = await state(h, second, "m.room.power_levels")
    assert first_power is not None and second_power is not None
    assert first_power["events"] == {"m.room.topic": 100}
    assert second_power["users"] == {alice.user_id: 100}
    assert "m.room.topic" not in second_power["events"]


async def test_visibility_decides_without_a_preset(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness()
    alice = await h.client("alice")
    public = await create(h, alice, visibility="public")
    private = await create(h, alice)
    assert await state(h, public, "m.room.join_rules") == {"join_rule": "public"}
    assert await state(h, private, "m.room.join_rules") == {"join_rule": "invite"}


async def test_an_unknown_preset_is_refused(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness()
    alice = await h.client("alice")
    created = record_created_rooms(h)
    with pytest.raises(InvalidParam):
        await create(h, alice, preset="secret_chat")
    assert created == []


async def test_override_is_applied_and_validated(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness()
    alice = await h.client("alice")
    room_id = await create(h, alice, power_level_content_override={"events_default": 100})
    power = await state(h, room_id, "m.room.power_levels")
    assert power is not None and power["events_default"] == 100
    created = record_created_rooms(h)
    with pytest.raises(BadJson):
        await create(h, alice, power_level_content_override={"ban": "high"})
    assert created == []


@pytest.mark.parametrize(("version", "has_creator"), [("10", True), ("11", False)])
async def test_room_versions(
    make_harness: MakeHarness, autojump_clock: MockClock, version: str, has_creator: bool
) -> None:
    h = await make_harness()
    alice = await h.client("alice")
    room_id = await create(h, alice, room_version=version, creation_content={"m.federate": False})
    content = await state(h, room_id, "m.room.create")
    assert content is not None
    assert content["room_version"] == version
    assert content["m.federate"] is False
    assert ("creator" in content) is has_creator
    room = await h.storage.rooms.get_room(room_id)
    assert room is not None and (room.creator, room.room_version) == (alice.user_id, version)


async def test_the_default_room_version_is_the_configured_one(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness(default_room_version="11")
    alice = await h.client("alice")
    room_id = await create(h, alice)
    assert (await state(h, room_id, "m.room.create")) == {"room_version": "11"}


async def test_unsupported_room_version_stores_nothing(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness()
    alice = await h.client("alice")
    created = record_created_rooms(h)
    with pytest.raises(MatrixError) as info:
        await create(h, alice, room_version="9")
    assert (info.value.status, info.value.errcode) == (400, "M_UNSUPPORTED_ROOM_VERSION")
    assert created == []


async def test_initial_state_replaces_the_preset_and_name_wins(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness()
    alice = await h.client("alice")
    room_id = await create(
        h,
        alice,
        name="Named",
        initial_state=(
            ("m.room.join_rules", "", {"join_rule": "public"}),
            ("m.room.name", "", {"name": "From initial_state"}),
            ("org.example.custom", "k", {"x": 1}),
        ),
    )
    assert await state(h, room_id, "m.room.join_rules") == {"join_rule": "public"}
    assert await state(h, room_id, "m.room.name") == {"name": "Named"}
    assert await state(h, room_id, "org.example.custom", "k") == {"x": 1}
    # One join_rules event only: the preset's was replaced, not followed.
    events = await h.storage.rooms.get_room_events(
        room_id, after=None, before=None, limit=100, newest_first=False
    )
    assert [e.type for e in events].count("m.room.join_rules") == 1
    assert events[0].type == "m.room.create"


@pytest.mark.parametrize("event_type", ["m.room.create", "m.room.member", "m.room.power_levels"])
async def test_initial_state_may_not_set_what_creation_owns(
    make_harness: MakeHarness, autojump_clock: MockClock, event_type: str
) -> None:
    h = await make_harness()
    alice = await h.client("alice")
    created = record_created_rooms(h)
    with pytest.raises(InvalidParam):
        await create(h, alice, initial_state=((event_type, "", {}),))
    assert created == []


async def test_the_creator_joins_with_their_profile(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness()
    alice = await h.client("alice")
    await h.storage.users.set_profile_field(alice.user_id, "displayname", "Alice")
    room_id = await create(h, alice)
    assert await state(h, room_id, "m.room.member", alice.user_id) == {
        "membership": "join",
        "displayname": "Alice",
    }
    assert await h.engine.rooms.core.joined_rooms(alice.user_id) == [room_id]


@pytest.mark.parametrize(
    ("invitee", "error"),
    [
        ("not-a-user", InvalidParam),
        ("@carol:elsewhere.example", MatrixError),
        ("@nobody:test.local", NotFoundError),
    ],
)
async def test_a_bad_invitee_stores_no_room(
    make_harness: MakeHarness, autojump_clock: MockClock, invitee: str, error: type[Exception]
) -> None:
    h = await make_harness()
    alice, bob = await h.client("alice"), await h.client("bob")
    created = record_created_rooms(h)
    with pytest.raises(error):
        await create(h, alice, invite=(bob.user_id, invitee))
    assert created == []
    assert await h.storage.rooms.get_user_memberships(bob.user_id) == []


async def test_an_invitee_refusing_invites_stores_no_room_unless_trusted(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness()
    alice, bob = await h.client("alice"), await h.client("bob")
    await h.storage.account_data.put_account_data(
        bob.user_id, None, "m.invite_permission_config", {"block_all": True}
    )
    created = record_created_rooms(h)
    with pytest.raises(MatrixError) as info:
        await create(h, alice, invite=(bob.user_id,))
    assert (info.value.status, info.value.errcode) == (403, "M_INVITE_BLOCKED")
    assert created == []
    # The server's own rooms (server notices) are not refused.
    room_id = await h.engine.rooms.creation.create_room(
        h.bare(alice), CreateRoomRequest(invite=(bob.user_id,)), trusted=True
    )
    assert [r.room_id for r in created] == [room_id]
    member = await state(h, room_id, "m.room.member", bob.user_id)
    assert member == {"membership": "invite"}


@pytest.mark.parametrize(
    ("plugin", "errcode"),
    [({"check_room_creation": "deny"}, "M_FORBIDDEN"), ({"check_invite": "deny"}, "M_FORBIDDEN")],
)
async def test_a_plugin_refusal_stores_no_room_unless_trusted(
    make_harness: MakeHarness, autojump_clock: MockClock, plugin: dict[str, Any], errcode: str
) -> None:
    h = await make_harness(plugins=scripted(**plugin))
    alice, bob = await h.client("alice"), await h.client("bob")
    created = record_created_rooms(h)
    with pytest.raises(MatrixError) as info:
        await create(h, alice, invite=(bob.user_id,))
    assert info.value.errcode == errcode
    assert created == []
    room_id = await h.engine.rooms.creation.create_room(
        h.bare(alice), CreateRoomRequest(invite=(bob.user_id,)), trusted=True
    )
    assert [r.room_id for r in created] == [room_id]


async def test_too_large_a_first_event_stores_no_room(
    make_harness: MakeHarness, autojump_clock: MockClock
) -> None:
    h = await make_harness()
    alice = await h.client("alice")
    created = record_created_rooms(h)
    with pytest.raises(MatrixError) as info:
        await create(h, alice, topic="x" * 70_000)
    assert (info.value.status, info.value.errcode) == (413, "M_TOO_LARGE")
    assert created == []
