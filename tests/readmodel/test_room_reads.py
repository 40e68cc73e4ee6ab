"""Sending and the /sync a message wakes, from the read model: what still reaches the
store is the write itself and the room's timeline and state. On every backend."""

from __future__ import annotations

import trio

from tests.helpers import q
from tests.readmodel.conftest import Counted, until_waiting


async def test_a_send_in_a_known_room_is_only_its_append(counted: Counted) -> None:
    """No plugin checks messages: the append (which records the transaction
    atomically) is the only store call, and a retry is answered by it."""
    alice = await counted.api.register("alice")
    room_id = await counted.api.create_room(alice, preset="public_chat")
    await counted.api.send_text(alice, room_id, "warm up", "t0")
    counted.reset()
    first = await counted.api.send_text(alice, room_id, "hello", "t1")
    assert counted.calls == {"rooms.append_events": 1}, counted.calls
    assert await counted.api.send_text(alice, room_id, "hello", "t1") == first


async def test_state_changes_reach_the_next_send_at_once(counted: Counted) -> None:
    """Power levels come from memory, and follow a change of them immediately."""
    alice = await counted.api.register("alice")
    bob = await counted.api.register("bob")
    room_id = await counted.api.create_room(alice, preset="public_chat")
    joined = await counted.api.call("POST", f"rooms/{q(room_id)}/join", token=bob, body={})
    assert joined.status == 200
    await counted.api.send_text(bob, room_id, "allowed", "t1")
    levels = await counted.api.call(
        "GET", f"rooms/{q(room_id)}/state/m.room.power_levels", token=alice
    )
    content = dict(levels.body)
    content["events_default"] = 50
    put = await counted.api.call(
        "PUT", f"rooms/{q(room_id)}/state/m.room.power_levels", token=alice, body=content
    )
    assert put.status == 200, put.body
    refused = await counted.api.call(
        "PUT",
        f"rooms/{q(room_id)}/send/m.room.message/t2",
        token=bob,
        body={"msgtype": "m.text", "body": "now refused"},
    )
    assert refused.status == 403, refused.body
    counted.engine.read_model.clear()
    again = await counted.api.call(
        "PUT",
        f"rooms/{q(room_id)}/send/m.room.message/t3",
        token=bob,
        body={"msgtype": "m.text", "body": "still refused"},
    )
    assert again.status == 403, again.body


async def test_a_sync_woken_by_a_message_reads_only_the_room(counted: Counted) -> None:
    alice = await counted.api.register("alice")
    bob = await counted.api.register("bob")
    room_id = await counted.api.create_room(alice, preset="public_chat")
    joined = await counted.api.call("POST", f"rooms/{q(room_id)}/join", token=bob, body={})
    assert joined.status == 200
    since = (await counted.api.sync(bob))["next_batch"]
    await counted.api.send_text(alice, room_id, "warm up", "t0")
    since = (await counted.api.sync(bob, since=since, timeout="0"))["next_batch"]
    answer: list[dict[str, object]] = []

    async def long_poll() -> None:
        answer.append(await counted.api.sync(bob, since=since, timeout="10000"))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(long_poll)
            await until_waiting(counted)
            counted.reset()
            await counted.api.send_text(alice, room_id, "hello", "t1")
    # alice's send (the append), then bob's /sync: the room's timeline and state only.
    assert counted.calls == {
        "rooms.append_events": 1,
        "rooms.get_room_events": 1,
        "rooms.get_current_state": 1,
    }, counted.calls
    rooms = answer[0]["rooms"]
    assert isinstance(rooms, dict)
    bodies = [e["content"]["body"] for e in rooms["join"][room_id]["timeline"]["events"]]
    assert bodies == ["hello"]
