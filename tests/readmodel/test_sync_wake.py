"""/sync with nothing new costs no storage call; every /sync sees every event exactly
once and in stream order under concurrent writers. On every backend."""

from __future__ import annotations

import json

import trio

from homeserver.engine.sync import parse_stream_token, parse_sync_token
from tests.helpers import Api, User, q
from tests.readmodel.conftest import Counted, until_waiting

# Room for every event of a batch: a limited timeline would skip some on purpose.
WIDE_TIMELINE = json.dumps({"room": {"timeline": {"limit": 1000}}})


async def _ready(c: Counted) -> tuple[User, User, str, str]:
    alice = await c.api.register("alice")
    bob = await c.api.register("bob")
    room_id = await c.api.create_room(alice, preset="public_chat")
    reply = await c.api.call("POST", f"rooms/{q(room_id)}/join", token=bob, body={})
    assert reply.status == 200, reply.body
    since: str = (await c.api.sync(bob))["next_batch"]
    return alice, bob, room_id, since


async def test_an_incremental_sync_with_nothing_new_makes_no_storage_call(
    counted: Counted,
) -> None:
    _, bob, _, since = await _ready(counted)
    await counted.api.sync(bob, since=since, timeout="0")  # the session is warm now
    counted.reset()
    body = await counted.api.sync(bob, since=since, timeout="0")
    assert body["next_batch"] == since
    assert body["rooms"]["join"] == {}
    assert sum(counted.calls.values()) == 0, counted.calls


async def test_a_woken_sync_with_nothing_new_waits_on_without_storage(counted: Counted) -> None:
    """A late wake-up (a change this sync's token already covers) costs nothing: the
    long-poll goes back to waiting and answers at its timeout."""
    _, bob, _, since = await _ready(counted)
    await counted.api.sync(bob, since=since, timeout="0")
    answer: list[dict[str, object]] = []

    async def long_poll() -> None:
        answer.append(await counted.api.sync(bob, since=since, timeout="400"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(long_poll)
        await until_waiting(counted)
        counted.reset()
        for _ in range(5):
            counted.engine.notifier.notify([bob.user_id], parse_stream_token(since))
            counted.engine.notifier.notify_ephemeral(
                [bob.user_id], parse_sync_token(since).ephemeral or 0
            )
            await trio.sleep(0.01)
        woken_calls = sum(counted.calls.values())
    assert woken_calls == 0, counted.calls
    assert answer and answer[0]["next_batch"] == since


async def test_a_woken_sync_with_news_answers_it(counted: Counted) -> None:
    alice, bob, room_id, since = await _ready(counted)
    answer: list[dict[str, object]] = []

    async def long_poll() -> None:
        answer.append(await counted.api.sync(bob, since=since, timeout="10000"))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(long_poll)
            await until_waiting(counted)
            event_id = await counted.api.send_text(alice, room_id, "hello", "t1")
    rooms = answer[0]["rooms"]
    assert isinstance(rooms, dict)
    timeline = rooms["join"][room_id]["timeline"]["events"]
    assert [e["event_id"] for e in timeline] == [event_id]


async def _stream_order(api: Api, user: User, room_id: str) -> list[str]:
    reply = await api.call(
        "GET", f"rooms/{q(room_id)}/messages", token=user, query={"dir": "f", "limit": "1000"}
    )
    assert reply.status == 200, reply.body
    return [e["event_id"] for e in reply.body["chunk"] if e["type"] == "m.room.message"]


async def test_concurrent_writers_every_sync_sees_every_event_once_in_order(
    counted: Counted,
) -> None:
    alice, bob, room_id, _ = await _ready(counted)
    carol = await counted.api.register("carol")
    reply = await counted.api.call("POST", f"rooms/{q(room_id)}/join", token=carol, body={})
    assert reply.status == 200
    writers, per_writer = [alice, bob, carol], 12
    total = len(writers) * per_writer
    seen: dict[str, list[str]] = {}

    async def write(user: User) -> None:
        for i in range(per_writer):
            await counted.api.send_text(user, room_id, f"{user.user_id} {i}", f"w{i}")

    async def read(reader: User, name: str) -> None:
        token = (await counted.api.sync(reader, timeout="0"))["next_batch"]
        got: list[str] = []
        seen[name] = got
        while len(got) < total:
            body = await counted.api.sync(reader, since=token, timeout="2000", filter=WIDE_TIMELINE)
            room = body["rooms"]["join"].get(room_id)
            if room is not None:
                got.extend(
                    e["event_id"]
                    for e in room["timeline"]["events"]
                    if e["type"] == "m.room.message"
                )
            token = body["next_batch"]

    with trio.fail_after(60):
        async with trio.open_nursery() as readers:
            # Readers start before the writers (each takes its token first).
            readers.start_soon(read, alice, "alice")
            readers.start_soon(read, bob, "bob")
            await trio.sleep(0.2)
            async with trio.open_nursery() as nursery:
                for user in writers:
                    nursery.start_soon(write, user)
    order = await _stream_order(counted.api, alice, room_id)
    assert len(order) == total
    for name, got in seen.items():
        assert got == order, name


async def test_a_sync_woken_by_typing_answers_from_memory(counted: Counted) -> None:
    """Typing is never stored; the /sync it wakes reads nothing from the store and
    keeps its durable position, so a message stored meanwhile is not skipped."""
    alice, bob, room_id, since = await _ready(counted)
    path = f"rooms/{q(room_id)}/typing/{q(alice.user_id)}"

    async def exchange(typing: bool, since: str) -> dict[str, object]:
        answer: list[dict[str, object]] = []

        async def long_poll() -> None:
            answer.append(await counted.api.sync(bob, since=since, timeout="10000"))

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(long_poll)
                await until_waiting(counted)
                body = {"typing": typing, "timeout": 30000} if typing else {"typing": False}
                reply = await counted.api.call("PUT", path, token=alice, body=body)
                assert reply.status == 200, reply.body
        return answer[0]

    first = await exchange(True, since)
    since = str(first["next_batch"])
    counted.reset()
    body = await exchange(False, since)
    assert sum(counted.calls.values()) == 0, counted.calls
    rooms = body["rooms"]
    assert isinstance(rooms, dict)
    assert rooms["join"][room_id]["ephemeral"]["events"] == [
        {"type": "m.typing", "content": {"user_ids": []}}
    ]
    assert parse_sync_token(str(body["next_batch"])).pos == parse_sync_token(since).pos
    # A message after that reaches the next /sync, from the kept durable position.
    event_id = await counted.api.send_text(alice, room_id, "hi", "t1")
    after = await counted.api.sync(bob, since=str(body["next_batch"]), timeout="0")
    timeline = after["rooms"]["join"][room_id]["timeline"]["events"]
    assert [e["event_id"] for e in timeline] == [event_id]


async def test_a_sync_woken_by_presence_answers_from_memory(counted: Counted) -> None:
    alice, bob, _, since = await _ready(counted)
    path = f"presence/{q(alice.user_id)}/status"
    answers: list[dict[str, object]] = []

    async def exchange(presence: str, since: str) -> dict[str, object]:
        async def long_poll() -> None:
            answers.append(await counted.api.sync(bob, since=since, timeout="10000"))

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(long_poll)
                await until_waiting(counted)
                reply = await counted.api.call(
                    "PUT", path, token=alice, body={"presence": presence}
                )
                assert reply.status == 200, reply.body
        return answers[-1]

    since = str((await exchange("unavailable", since))["next_batch"])
    counted.reset()
    body = await exchange("online", since)
    # alice's request stores her session's presence (her sessions are listed from
    # memory); bob's /sync reads nothing.
    assert counted.calls == {"sessions.set_session_presence": 1}, counted.calls
    presence = body["presence"]
    assert isinstance(presence, dict)
    assert [(e["sender"], e["content"]["presence"]) for e in presence["events"]] == [
        (alice.user_id, "online")
    ]
    assert parse_sync_token(str(body["next_batch"])).pos == parse_sync_token(since).pos
