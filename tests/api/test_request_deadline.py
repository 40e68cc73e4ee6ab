"""The request deadline: a request whose handling does not end in time answers 503
M_UNAVAILABLE with Retry-After instead of hanging, the session's end-of-request
booking still runs, and a /sync gets its long-poll wait on top of the deadline."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import pytest
import trio
from trio.testing import MockClock

from backends.memory import open_memory
from backends.protocols import AccountDataStore
from homeserver.config import Config
from homeserver.engine import Engine
from tests.helpers import Api, User, make_config, q

REQUEST_TIMEOUT_MS = 30_000


class HangingAccountData:
    """The memory store, except that while `hang` is set `put_account_data` does not
    return until `released` is."""

    def __init__(self, inner: AccountDataStore) -> None:
        self._inner = inner
        self.hang = False
        self.released = trio.Event()

    async def put_account_data(self, *args: Any, **kwargs: Any) -> Any:
        if self.hang:
            await self.released.wait()
        return await self._inner.put_account_data(*args, **kwargs)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        return cast(Callable[..., Any], getattr(self._inner, name))


@pytest.fixture
def config() -> Config:
    return make_config(request_timeout_ms=REQUEST_TIMEOUT_MS)


@pytest.fixture
def store() -> list[HangingAccountData]:
    return []


@pytest.fixture
async def engine(config: Config, store: list[HangingAccountData]) -> AsyncIterator[Engine]:
    async with open_memory("memory://") as storage:
        hanging = HangingAccountData(storage.account_data)
        store.append(hanging)
        storage.account_data = cast(AccountDataStore, hanging)
        yield Engine(config, storage)


@contextmanager
def frozen(clock: MockClock) -> Iterator[None]:
    """Keep the autojump clock still: while password hashing runs in a worker thread
    every task is blocked, and the clock would jump to the request's deadline."""
    saved = clock.autojump_threshold
    clock.autojump_threshold = math.inf
    try:
        yield
    finally:
        clock.autojump_threshold = saved


async def _register(api: Api, clock: MockClock, name: str) -> User:
    with frozen(clock):
        return await api.register(name)


def _put_path(user: User) -> str:
    return f"user/{q(user.user_id)}/account_data/org.example.deadline"


async def test_a_request_past_its_deadline_answers_503(
    api: Api, engine: Engine, store: list[HangingAccountData], autojump_clock: MockClock
) -> None:
    alice = await _register(api, autojump_clock, "alice")
    store[0].hang = True
    started = trio.current_time()
    with trio.fail_after(REQUEST_TIMEOUT_MS / 1000 * 2):
        reply = await api.call("PUT", _put_path(alice), token=alice, body={"x": 1})
    assert trio.current_time() - started == pytest.approx(REQUEST_TIMEOUT_MS / 1000, abs=0.01)
    assert reply.status == 503, reply.body
    assert reply.errcode == "M_UNAVAILABLE"
    assert isinstance(reply.body["error"], str) and reply.body["error"]
    headers = {name.lower(): value for name, value in reply.headers.items()}
    assert headers["content-type"] == "application/json"
    assert headers["retry-after"] == "1"
    # The teardown ran: the session no longer counts the request as in flight.
    assert engine.sessions._in_flight == {}
    # And the server goes on as before.
    store[0].hang = False
    with trio.fail_after(5):
        reply = await api.call("PUT", _put_path(alice), token=alice, body={"x": 2})
    assert reply.status == 200, reply.body


async def test_a_sync_long_poll_gets_its_wait_on_top_of_the_deadline(
    api: Api, autojump_clock: MockClock
) -> None:
    alice = await _register(api, autojump_clock, "alice")
    since = (await api.sync(alice))["next_batch"]
    wait_ms = 2 * REQUEST_TIMEOUT_MS
    started = trio.current_time()
    with trio.fail_after((wait_ms + REQUEST_TIMEOUT_MS) / 1000 * 2):
        reply = await api.call(
            "GET", "sync", token=alice, query={"since": since, "timeout": str(wait_ms)}
        )
    assert reply.status == 200, reply.body
    assert trio.current_time() - started == pytest.approx(wait_ms / 1000, abs=0.01)


async def test_zero_turns_the_deadline_off(
    api: Api, engine: Engine, store: list[HangingAccountData], autojump_clock: MockClock
) -> None:
    alice = await _register(api, autojump_clock, "alice")
    engine.config = dataclasses.replace(engine.config, request_timeout_ms=0)
    store[0].hang = True
    replies: list[Any] = []

    async def put() -> None:
        replies.append(await api.call("PUT", _put_path(alice), token=alice, body={"x": 1}))

    with trio.fail_after(7200):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(put)
            await trio.sleep(3600)
            assert replies == []
            store[0].released.set()
    assert replies[0].status == 200, replies[0].body
