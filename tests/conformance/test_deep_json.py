"""Client JSON as deep as the API accepts (homeserver.client_json.MAX_DEPTH) is stored
and read back intact by every backend: nothing in a storage codec (SQL JSON columns,
Redis' Lua cjson) gives out before the parser's limit does."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from backends import Storage
from homeserver.client_json import MAX_DEPTH, loads

from .records import ALICE, ROOM, append_one, make_room, message, server_event, state


def deep(levels: int) -> dict[str, Any]:
    """An object `levels` deep, lists and objects alternating."""
    value: Any = "leaf"
    for level in range(levels - 1):
        value = [value] if level % 2 else {"k": value}
    return {"body": "deep", "deep": value}


async def test_content_as_deep_as_accepted_round_trips(storage: Storage) -> None:
    content = deep(MAX_DEPTH)
    assert loads(json.dumps(content)) == content  # the API accepts it
    await make_room(storage)
    sent = await append_one(storage, replace(message(ROOM), content=content))
    stored = await storage.rooms.get_event(sent.event_id)
    assert stored is not None and stored.content == content
    await append_one(storage, state(ROOM, "org.example.deep", "", content))
    current = await storage.rooms.get_state_event(ROOM, "org.example.deep", "")
    assert current is not None and current.content == content
    await storage.account_data.put_account_data(ALICE, None, "org.example.deep", content)
    assert await storage.account_data.get_account_data(ALICE, None, "org.example.deep") == content
    filter_id = await storage.filters.create_filter(ALICE, content)
    assert await storage.filters.get_filter(ALICE, filter_id) == content
    added = await storage.server_events.add_server_event(server_event(content=content))
    (delivered,) = await storage.server_events.get_server_events(
        ALICE, [], after=0, upto=added.stream_pos, limit=10
    )
    assert delivered.content == content
