"""The block list through HTTP: blocked users (exact ids and server globs) and rooms, on
invites, room creation, joins and messages; deny with the configured errcode, or drop;
config errors.

Rooms and memberships a test needs before the block list applies are set up by a
server without the plugin over the same storage (as if the operator then restarted
the server with the block list)."""

from __future__ import annotations

from typing import Any

import pytest

from backends import Storage
from backends.memory import open_memory_storage
from plugins.builtin.blocklist import BlockList
from tests.helpers import Reply, User
from tests.plugins.test_builtin_common import (
    BLOCKLIST,
    engine_with,
    invite,
    invite_state,
    join,
    load_error,
    send,
    serve,
    timeline_bodies,
)


def blocklist(**config: Any) -> tuple[str, dict[str, Any]]:
    return (BLOCKLIST, config)


def assert_refused(reply: Reply, errcode: str = "M_FORBIDDEN") -> None:
    assert reply.status == 403, reply.body
    assert reply.errcode == errcode
    assert reply.body["error"] == "Refused by the server's block list"


async def setup(storage: Storage) -> tuple[dict[str, User], str, str]:
    """Before the block list: users alice, bob, carol and spammer; a public room and a
    private room of alice's, both of which the spammer and bob have joined."""
    async with serve(storage=storage) as api:
        people = {name: await api.register(name) for name in ("alice", "bob", "carol", "spammer")}
        public = await api.create_room(people["alice"], preset="public_chat")
        private = await api.create_room(people["alice"])
        for name in ("spammer", "bob"):
            await join(api, people[name], public)
            assert (await invite(api, people["alice"], private, people[name])).status == 200
            await join(api, people[name], private)
        return people, public, private


async def test_blocked_inviter_is_denied_and_the_invitee_sees_nothing() -> None:
    storage = open_memory_storage()
    u, _, private = await setup(storage)
    async with serve(blocklist(users=["@spammer:test.local"]), storage=storage) as api:
        assert_refused(await invite(api, u["spammer"], private, u["carol"], reason="hi"))
        assert await invite_state(api, u["carol"], private) is None
        # Others invite as usual, in the same room.
        assert (await invite(api, u["bob"], private, u["carol"])).status == 200
        assert await invite_state(api, u["carol"], private) is not None


async def test_drop_tells_the_inviter_it_worked() -> None:
    storage = open_memory_storage()
    u, _, private = await setup(storage)
    plugin = blocklist(users=["@spammer:test.local"], action="drop")
    async with serve(plugin, storage=storage) as api:
        reply = await invite(api, u["spammer"], private, u["carol"], reason="hi")
        assert (reply.status, reply.body) == (200, {})
        assert await invite_state(api, u["carol"], private) is None


async def test_blocked_room_refuses_invites_and_joins() -> None:
    storage = open_memory_storage()
    u, public, private = await setup(storage)
    async with serve(blocklist(rooms=[public], errcode="M_ROOM_BLOCKED"), storage=storage) as api:
        assert_refused(await invite(api, u["alice"], public, u["carol"]), "M_ROOM_BLOCKED")
        assert_refused(
            await api.call("POST", f"join/{public}", token=u["carol"], body={}), "M_ROOM_BLOCKED"
        )
        assert public not in (await api.sync(u["carol"]))["rooms"]["join"]
        # The other room is not blocked.
        assert (await invite(api, u["alice"], private, u["carol"])).status == 200
        await join(api, u["carol"], private)


async def test_blocked_user_cannot_join_or_create_rooms() -> None:
    storage = open_memory_storage()
    u, public, _ = await setup(storage)
    async with serve(blocklist(users=["@carol:test.local"]), storage=storage) as api:
        reply = await api.call("POST", "createRoom", token=u["carol"], body={"name": "x"})
        assert_refused(reply)
        joined = await api.call("GET", "joined_rooms", token=u["carol"])
        assert joined.body == {"joined_rooms": []}
        assert_refused(await api.call("POST", f"join/{public}", token=u["carol"], body={}))
        # Unlisted users are not affected.
        assert (await api.call("POST", "createRoom", token=u["bob"], body={})).status == 200


async def test_blocked_sender_messages_are_denied_or_dropped() -> None:
    storage = open_memory_storage()
    u, public, _ = await setup(storage)
    async with serve(blocklist(users=["@spammer:test.local"]), storage=storage) as api:
        assert_refused(await send(api, u["spammer"], public, "buy now", "t1"))
        assert (await send(api, u["bob"], public, "hello", "t1")).status == 200
        assert await timeline_bodies(api, u["alice"], public) == ["hello"]
    plugin = blocklist(users=["@spammer:test.local"], action="drop")
    async with serve(plugin, storage=storage) as api:
        reply = await send(api, u["spammer"], public, "buy now", "t2")
        assert reply.status == 200
        assert reply.body["event_id"].startswith("$")
        assert await timeline_bodies(api, u["alice"], public) == ["hello"]
        # Drop covers invites and messages; a join is still denied.
        assert_refused(await api.call("POST", f"join/{public}", token=u["spammer"], body={}))


async def test_server_globs() -> None:
    """Every local user is on test.local: a glob matching it blocks them all, case
    insensitively; one that does not match blocks no one."""
    async with serve(blocklist(servers=["*.LOCAL"])) as api:
        alice = await api.register("alice")
        assert_refused(await api.call("POST", "createRoom", token=alice, body={}))
    async with serve(blocklist(servers=["test.loca", "*.test.local", "evil.*"])) as api:
        alice = await api.register("alice")
        assert (await api.call("POST", "createRoom", token=alice, body={})).status == 200


def test_user_matching() -> None:
    engine = engine_with(
        blocklist(users=["@spam:example.org"], servers=["evil.example", "*.bad.example", "h?st"])
    )
    plugin = engine.plugins.plugins[0].instance
    assert isinstance(plugin, BlockList)
    blocked = [
        "@spam:example.org",
        "@anyone:evil.example",
        "@anyone:EVIL.example",
        "@x:a.bad.example",
        "@x:a.b.bad.example",
        "@x:host",
    ]
    allowed = [
        "@spam2:example.org",
        "@spam:example.org.uk",
        "@x:bad.example",
        "@x:notevil.example",
        "@x:hoost",
        "@evil.example:ok.example",
    ]
    assert [u for u in blocked if not plugin.user_blocked(u)] == []
    assert [u for u in allowed if plugin.user_blocked(u)] == []


@pytest.mark.parametrize(
    ("config", "key", "says"),
    [
        ({"users": "@a:b"}, "users", "expected a list of strings"),
        ({"users": ["alice"]}, "users[0]", "not a user id"),
        ({"users": ["@a:b", 3]}, "users[1]", "expected a non-empty string"),
        ({"servers": [""]}, "servers[0]", "expected a non-empty string"),
        ({"rooms": ["#alias:b"]}, "rooms[0]", "not a room id"),
        ({"action": "ban"}, "action", "expected one of 'deny', 'drop'"),
        ({"errcode": "not an errcode"}, "errcode", "expected an errcode"),
        ({"message": ""}, "message", "expected a non-empty string"),
        ({"user": ["@a:b"]}, "user", "unknown key"),
    ],
)
def test_config_errors(config: dict[str, Any], key: str, says: str) -> None:
    message = load_error(BLOCKLIST, config)
    assert f"config key '{key}': " in message
    assert says in message
