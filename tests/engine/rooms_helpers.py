"""Helpers for the engine-level room tests (tests/engine/test_rooms_*.py)."""

from __future__ import annotations

from typing import Any

from backends.records import JsonDict, RoomRecord
from homeserver.engine.rooms import CreateRoomRequest
from plugins.loader import PluginSpec
from tests.engine.conftest import Client, Harness

SCRIPTED = "tests.plugins.sample_plugins:Scripted"


def scripted(**config: Any) -> tuple[PluginSpec, ...]:
    """The `plugins` config of one Scripted sample plugin answering as configured."""
    return (PluginSpec(SCRIPTED, config),)


async def create(h: Harness, creator: Client, **request: Any) -> str:
    """createRoom through the engine, as `creator`."""
    rooms = h.engine.rooms
    return await rooms.creation.create_room(h.bare(creator), CreateRoomRequest(**request))


async def state(h: Harness, room_id: str, event_type: str, state_key: str = "") -> JsonDict | None:
    """The content of the room's current state event, None if it has none."""
    event = await h.storage.rooms.get_state_event(room_id, event_type, state_key)
    return None if event is None else event.content


async def membership(h: Harness, room_id: str, client: Client) -> str | None:
    return await h.engine.rooms.core.membership_of(room_id, client.user_id)


def record_created_rooms(h: Harness) -> list[RoomRecord]:
    """Log every room record the engine stores (a wrapper around the store)."""
    log: list[RoomRecord] = []
    create_room = h.storage.rooms.create_room

    async def recording(room: RoomRecord) -> None:
        log.append(room)
        await create_room(room)

    setattr(h.storage.rooms, "create_room", recording)  # noqa: B010
    return log
