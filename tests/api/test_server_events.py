"""Server-generated events: the admin API, delivery in /sync for each target, once per
device, waking a waiting /sync, and never in timelines or state."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from homeserver.config import Config
from tests.helpers import Api, User, make_config, q

ADMIN_PATH = "/_homeserver/admin/v1/server_events"
SYNAPSE_PATH = "/_synapse/admin/v1/send_server_notice"


@pytest.fixture
def config() -> Config:
    return make_config(admins=("@admin:test.local",))


async def _send(api: Api, token: User, body: dict[str, Any]) -> Any:
    reply = await api.call("POST", ADMIN_PATH, token=token, body=body)
    assert reply.status == 200, reply.body
    return reply.body


async def test_user_target_reaches_that_user_once(api: Api) -> None:
    admin = await api.register("admin")
    alice = await api.register("alice")
    bob = await api.register("bob")
    since_a = (await api.sync(alice))["next_batch"]
    since_b = (await api.sync(bob))["next_batch"]
    sent = await _send(
        api,
        admin,
        {"type": "org.example.notice", "content": {"body": "hi"}, "user_id": alice.user_id},
    )
    got = await api.sync(alice, since=since_a)
    (event,) = got["server_events"]["events"]
    assert event == {
        "type": "org.example.notice",
        "content": {"body": "hi"},
        "sender": "test.local",
        "event_id": sent["event_id"],
        "origin_server_ts": event["origin_server_ts"],
    }
    assert isinstance(event["origin_server_ts"], int)
    assert not event["sender"].startswith("@")
    # Once: the next incremental sync does not repeat it.
    again = await api.sync(alice, since=got["next_batch"])
    assert again["server_events"]["events"] == []
    # Not for bob.
    assert (await api.sync(bob, since=since_b))["server_events"]["events"] == []


async def test_each_device_gets_it_by_its_own_since(api: Api) -> None:
    admin = await api.register("admin")
    alice = await api.register("alice")
    login = await api.call(
        "POST",
        "login",
        body={"type": "m.login.password", "user": "alice", "password": alice.password},
    )
    phone = User(alice.user_id, login.body["access_token"], login.body["device_id"], alice.password)
    since_laptop = (await api.sync(alice))["next_batch"]
    since_phone = (await api.sync(phone))["next_batch"]
    await _send(api, admin, {"type": "t", "content": {}, "user_id": alice.user_id})
    assert len((await api.sync(alice, since=since_laptop))["server_events"]["events"]) == 1
    assert len((await api.sync(phone, since=since_phone))["server_events"]["events"]) == 1


async def test_room_target_goes_to_joined_members_as_ephemeral(api: Api) -> None:
    admin = await api.register("admin")
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room_id = await api.create_room(alice, preset="public_chat")
    assert (await api.call("POST", f"rooms/{q(room_id)}/join", token=bob)).status == 200
    since = {u.user_id: (await api.sync(u))["next_batch"] for u in (alice, bob, carol)}
    sent = await _send(
        api, admin, {"type": "org.example.room_status", "content": {"ok": True}, "room_id": room_id}
    )
    for member in (alice, bob):
        body = await api.sync(member, since=since[member.user_id])
        room = body["rooms"]["join"][room_id]
        assert [e["event_id"] for e in room["ephemeral"]["events"]] == [sent["event_id"]]
        assert room["ephemeral"]["events"][0]["sender"] == "test.local"
        assert room["timeline"]["events"] == []  # never in the timeline
        assert body["server_events"]["events"] == []
    outsider = await api.sync(carol, since=since[carol.user_id])
    assert outsider["rooms"]["join"] == {} and outsider["server_events"]["events"] == []
    # Never in state either.
    state = await api.call("GET", f"rooms/{q(room_id)}/state", token=alice)
    assert all(e["type"] != "org.example.room_status" for e in state.body)


async def test_all_users_broadcast_and_a_new_device_sees_recent_ones(api: Api) -> None:
    admin = await api.register("admin")
    users = [await api.register(name) for name in ("alice", "bob")]
    since = [(await api.sync(u))["next_batch"] for u in users]
    sent = await _send(api, admin, {"type": "t", "content": {"m": 1}, "all_users": True})
    for user, token in zip(users, since, strict=True):
        events = (await api.sync(user, since=token))["server_events"]["events"]
        assert [e["event_id"] for e in events] == [sent["event_id"]]
    # A new device has seen nothing yet: its initial sync shows the recent ones, once.
    newcomer = await api.register("carol")
    first = await api.sync(newcomer)
    assert [e["event_id"] for e in first["server_events"]["events"]] == [sent["event_id"]]
    later = await api.sync(newcomer, since=first["next_batch"])
    assert later["server_events"]["events"] == []


async def test_a_waiting_sync_wakes_for_a_server_event(
    api: Api, autojump_clock: trio.testing.MockClock
) -> None:
    admin = await api.register("admin")
    alice = await api.register("alice")
    since = (await api.sync(alice))["next_batch"]
    result: dict[str, Any] = {}

    async def wait() -> None:
        result["sync"] = await api.sync(alice, since=since, timeout="30000")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        started = trio.current_time()
        await _send(api, admin, {"type": "t", "content": {}, "user_id": alice.user_id})
    assert trio.current_time() - started < 1
    assert len(result["sync"]["server_events"]["events"]) == 1


async def test_admin_api_refuses_non_admins_and_bad_bodies(api: Api) -> None:
    admin = await api.register("admin")
    alice = await api.register("alice")
    denied = await api.call(
        "POST", ADMIN_PATH, token=alice, body={"type": "t", "content": {}, "all_users": True}
    )
    assert (denied.status, denied.errcode) == (403, "M_FORBIDDEN")
    synapse_denied = await api.call(
        "POST", SYNAPSE_PATH, token=alice, body={"user_id": alice.user_id, "content": {}}
    )
    assert (synapse_denied.status, synapse_denied.errcode) == (403, "M_FORBIDDEN")
    for body in (
        {"type": "t", "content": {}},
        {"type": "t", "content": {}, "user_id": alice.user_id, "all_users": True},
        {"content": {}, "all_users": True},
        {"type": "t", "all_users": True},
        {"type": "", "content": {}, "all_users": True},
        {"type": "t", "content": [], "all_users": True},
    ):
        reply = await api.call("POST", ADMIN_PATH, token=admin, body=body)
        assert reply.status == 400 and reply.errcode, (body, reply.body)
    unknown = await api.call(
        "POST",
        ADMIN_PATH,
        token=admin,
        body={"type": "t", "content": {}, "user_id": "@x:test.local"},
    )
    assert (unknown.status, unknown.errcode) == (404, "M_NOT_FOUND")
    no_room = await api.call(
        "POST",
        ADMIN_PATH,
        token=admin,
        body={"type": "t", "content": {}, "room_id": "!x:test.local"},
    )
    assert (no_room.status, no_room.errcode) == (404, "M_NOT_FOUND")


async def test_synapse_send_server_notice(api: Api) -> None:
    admin = await api.register("admin")
    alice = await api.register("alice")
    since = (await api.sync(alice))["next_batch"]
    reply = await api.call(
        "POST",
        SYNAPSE_PATH,
        token=admin,
        body={"user_id": alice.user_id, "content": {"msgtype": "m.text", "body": "Maintenance"}},
    )
    assert reply.status == 200, reply.body
    (event,) = (await api.sync(alice, since=since))["server_events"]["events"]
    assert event["event_id"] == reply.body["event_id"]
    assert event["type"] == "m.room.message"
    assert event["content"] == {"msgtype": "m.text", "body": "Maintenance"}
    assert event["sender"] == "test.local"
