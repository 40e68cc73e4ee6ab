"""Deeply nested JSON (issue 9, finding 2): bodies nested ~500 levels deep used to give
HTTP 500 (RecursionError downstream of the parser) on send, state, account data,
filters, createRoom and the admin routes. Nesting is limited at parse time."""

from __future__ import annotations

import json
from typing import Any

import pytest

from homeserver.client_json import MAX_DEPTH
from homeserver.config import Config
from tests.helpers import Api, User, make_config, q


@pytest.fixture
def config() -> Config:
    return make_config(admins=["@alice:test.local"])


def nested_list(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels - 1):
        value = [value]
    return [value]


def nested_object(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"k": value}
    return value


def with_content(levels: int, shape: str) -> dict[str, Any]:
    """An object `levels` deep in all (the outer object counts)."""
    inner = nested_list(levels - 1) if shape == "list" else nested_object(levels - 1)
    return {"msgtype": "m.text", "body": "deep", "deep": inner}


def depth(value: Any) -> int:
    """Levels of arrays/objects (iterative: the values here are deeper than Python's
    recursion limit allows to walk recursively)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, level + 1) for child in children)
    return deepest


def routes(alice: User, room_id: str, levels: int, shape: str) -> list[tuple[str, str, Any]]:
    """Every route that stores client JSON, each with a body exactly `levels` deep."""
    user = q(alice.user_id)
    room = q(room_id)

    def body(wrapping: int) -> dict[str, Any]:
        return with_content(levels - wrapping, shape)

    return [
        ("PUT", f"rooms/{room}/send/m.room.message/t-{levels}-{shape}", body(0)),
        ("PUT", f"rooms/{room}/state/org.example.deep/key", body(0)),
        ("PUT", f"user/{user}/account_data/org.example.deep", body(0)),
        ("PUT", f"user/{user}/rooms/{room}/account_data/org.example.deep", body(0)),
        ("POST", f"user/{user}/filter", {"room": {"timeline": {"limit": 5}}, "x": body(1)}),
        ("POST", "createRoom", {"creation_content": body(1)}),
        (
            "POST",
            "createRoom",
            {"initial_state": [{"type": "org.example", "state_key": "", "content": body(3)}]},
        ),
        ("PUT", f"profile/{user}/displayname", {"displayname": "a", "x": body(1)}),
        (
            "POST",
            "/_homeserver/admin/v1/server_events",
            {"type": "org.x", "content": body(1), "user_id": alice.user_id},
        ),
        (
            "POST",
            "/_synapse/admin/v1/send_server_notice",
            {"user_id": alice.user_id, "content": body(1)},
        ),
    ]


@pytest.mark.parametrize("shape", ["list", "object"])
@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 500, 900])
async def test_nesting_past_the_limit_is_bad_json_everywhere(
    api: Api, shape: str, levels: int
) -> None:
    alice = await api.register("alice")
    room_id = await api.create_room(alice)
    for method, path, payload in routes(alice, room_id, levels, shape):
        assert depth(payload) == levels
        reply = await api.call(method, path, token=alice, raw=json.dumps(payload).encode())
        assert reply.status == 400, (method, path, reply.status, reply.body)
        assert reply.errcode == "M_BAD_JSON", (path, reply.body)
        assert isinstance(reply.body["error"], str)
    # Nothing was stored, and the account still syncs.
    sync = await api.call("GET", "sync", token=alice)
    assert sync.status == 200, sync.body


async def test_nesting_at_the_limit_is_stored_and_synced(api: Api) -> None:
    alice = await api.register("alice")
    room_id = await api.create_room(alice)
    for shape in ("list", "object"):
        for method, path, payload in routes(alice, room_id, MAX_DEPTH, shape):
            assert depth(payload) == MAX_DEPTH
            reply = await api.call(method, path, token=alice, raw=json.dumps(payload).encode())
            assert reply.status == 200, (method, path, reply.status, reply.body)
        sync = await api.call("GET", "sync", token=alice)
        assert sync.status == 200, sync.body
        timeline = sync.body["rooms"]["join"][room_id]["timeline"]["events"]
        sent = [e for e in timeline if e.get("content", {}).get("body") == "deep"]
        assert any(e["content"] == with_content(MAX_DEPTH, shape) for e in sent)
