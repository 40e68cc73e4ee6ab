"""Reads shared while in flight (`homeserver/readmodel/shared.py`): the /syncs one
message wakes ask the store once, and never get an answer older than a write that
finished before they asked."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from homeserver.readmodel.cache import FillGuard
from homeserver.readmodel.shared import SharedReads
from tests.helpers import q
from tests.readmodel.conftest import Counted, until_waiting

ROOM = "!room:test.local"


class Store:
    """A read that blocks until released, counting calls; its answer is the store's
    current `value` when the read is released."""

    def __init__(self) -> None:
        self.calls = 0
        self.value = ["v1"]
        self.release = trio.Event()
        self.fail: Exception | None = None

    async def read(self) -> list[str]:
        self.calls += 1
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return list(self.value)


async def gather(reads: SharedReads[str], store: Store, n: int) -> list[list[str]]:
    answers: list[list[str]] = []

    async def one() -> None:
        answers.append(await reads.share("k", ROOM, store.read))

    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(one)
        await trio.testing.wait_all_tasks_blocked()
        store.release.set()
    return answers


async def test_callers_at_once_share_one_read_and_get_their_own_list() -> None:
    reads: SharedReads[str] = SharedReads(FillGuard())
    store = Store()
    answers = await gather(reads, store, 5)
    assert store.calls == 1
    assert answers == [["v1"]] * 5
    assert len({id(a) for a in answers}) == 5  # each caller may change its own list
    assert reads.shared == 4
    # Nothing is kept: the next caller reads again.
    assert await reads.share("k", ROOM, store.read) == ["v1"]
    assert store.calls == 2


async def test_a_caller_after_a_finished_write_does_not_join_an_older_read() -> None:
    guard = FillGuard()
    reads: SharedReads[str] = SharedReads(guard)
    store = Store()
    answers: dict[str, list[str]] = {}

    async def first() -> None:
        answers["first"] = await reads.share("k", ROOM, store.read)

    async def second() -> None:
        answers["second"] = await reads.share("k", ROOM, store.read)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(first)
        await trio.testing.wait_all_tasks_blocked()
        # A write to the room finishes while the first read is in flight.
        guard.begin(ROOM)
        store.value = ["v2"]
        guard.end(ROOM, wrote=True)
        nursery.start_soon(second)
        await trio.testing.wait_all_tasks_blocked()
        store.release.set()
    assert store.calls == 2
    assert answers["second"] == ["v2"]
    assert reads.shared == 0


async def test_a_write_to_another_room_does_not_stop_sharing() -> None:
    guard = FillGuard()
    reads: SharedReads[str] = SharedReads(guard)
    store = Store()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reads.share, "k", ROOM, store.read)
        await trio.testing.wait_all_tasks_blocked()
        guard.begin("!other:test.local")
        guard.end("!other:test.local", wrote=True)
        nursery.start_soon(reads.share, "k", ROOM, store.read)
        await trio.testing.wait_all_tasks_blocked()
        store.release.set()
    assert store.calls == 1 and reads.shared == 1


async def test_waiting_callers_read_themselves_when_the_first_is_cancelled() -> None:
    reads: SharedReads[str] = SharedReads(FillGuard())
    store = Store()
    got: list[list[str]] = []

    async def waiter() -> None:
        got.append(await reads.share("k", ROOM, store.read))

    async with trio.open_nursery() as nursery:
        with trio.CancelScope() as first:
            async with trio.open_nursery() as inner:
                inner.start_soon(reads.share, "k", ROOM, store.read)
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(waiter)
                await trio.testing.wait_all_tasks_blocked()
                first.cancel()
        await trio.testing.wait_all_tasks_blocked()
        store.release.set()
    assert got == [["v1"]]
    assert store.calls == 2


async def test_an_error_is_every_waiting_callers_error() -> None:
    reads: SharedReads[str] = SharedReads(FillGuard())
    store = Store()
    store.fail = RuntimeError("store down")
    errors: list[BaseException] = []

    async def one() -> None:
        try:
            await reads.share("k", ROOM, store.read)
        except RuntimeError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(one)
        await trio.testing.wait_all_tasks_blocked()
        store.release.set()
    assert store.calls == 1 and len(errors) == 3


async def test_the_syncs_one_message_wakes_read_the_room_once(
    counted: Counted, backend_name: str
) -> None:
    """Five listeners at the same token, woken by one message: each sees it exactly
    once; on the stores whose reads wait (all but memory, whose reads complete without
    waiting, so nothing overlaps) they share one timeline and one state read."""
    alice = await counted.api.register("alice")
    room_id = await counted.api.create_room(alice, preset="public_chat")
    listeners = [await counted.api.register(f"user{i}") for i in range(5)]
    tokens: dict[str, str] = {}
    for user in listeners:
        joined = await counted.api.call("POST", f"rooms/{q(room_id)}/join", token=user, body={})
        assert joined.status == 200
    for user in listeners:
        tokens[user.user_id] = (await counted.api.sync(user))["next_batch"]
    assert len(set(tokens.values())) == 1
    answers: dict[str, Any] = {}

    async def long_poll(user: Any) -> None:
        since = tokens[user.user_id]
        answers[user.user_id] = await counted.api.sync(user, since=since, timeout="10000")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for user in listeners:
                nursery.start_soon(long_poll, user)
            await until_waiting(counted)
            await trio.testing.wait_all_tasks_blocked()
            counted.reset()
            await counted.api.send_text(alice, room_id, "hello", "t1")
    for user in listeners:
        timeline = answers[user.user_id]["rooms"]["join"][room_id]["timeline"]["events"]
        assert [e["content"]["body"] for e in timeline] == ["hello"], user.user_id
    expected = 5 if backend_name == "memory" else 1
    assert counted.calls["rooms.get_room_events"] == expected, counted.calls
    assert counted.calls["rooms.get_current_state"] == expected, counted.calls
