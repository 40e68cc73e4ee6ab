"""The read model over every backend, with every call that reaches the store counted.

`CountingStorage` is a test double around a real backend: each store is wrapped so that
every method call is recorded (area.method) and then passed on unchanged. The engine
builds its read model over it, so the counts are exactly the calls the read model did
not answer from memory.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from quart.testing import QuartClient

from backends import Storage, open_storage
from backends.fresh import open_fresh_store
from homeserver.app import HomeserverApp, create_app
from homeserver.engine import Engine
from tests.helpers import Api, make_config
from tests.services import backend_params, require_postgres, require_redis

AREAS = (
    "users",
    "devices",
    "rooms",
    "account_data",
    "filters",
    "txns",
    "sessions",
    "typing",
    "presence",
    "rate_limits",
    "server_events",
)


class _CountedStore:
    def __init__(self, area: str, inner: object, calls: Counter[str]) -> None:
        self._area = area
        self._inner = inner
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target):
            return target

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self._calls[f"{self._area}.{name}"] += 1
            return await target(*args, **kwargs)

        return counted


def counting(storage: Storage) -> tuple[Storage, Counter[str]]:
    calls: Counter[str] = Counter()
    stores: dict[str, Any] = {
        area: _CountedStore(area, getattr(storage, area), calls) for area in AREAS
    }
    wrapped = dataclasses.replace(storage, **stores)
    return wrapped, calls


@dataclass
class Counted:
    api: Api
    engine: Engine
    calls: Counter[str]
    # The counted stores beneath the read model: a write here is one the read model
    # does not see (as if another process had made it).
    store: Storage

    def reset(self) -> None:
        self.calls.clear()

    async def storage_calls(self, action: Callable[[], Awaitable[object]]) -> Counter[str]:
        """The store calls `action` makes."""
        self.calls.clear()
        await action()
        return Counter(self.calls)


async def until_waiting(c: Counted) -> None:
    """Until a /sync waits (the notifier signals nothing of its own waiters)."""
    with trio.fail_after(5):
        while not c.engine.notifier.waiting_users:  # noqa: ASYNC110
            await trio.sleep(0.005)


@pytest.fixture(params=backend_params())
def backend_name(request: pytest.FixtureRequest) -> str:
    """A sync fixture, so that a skip keeps its reason."""
    name: str = request.param
    if name == "postgresql":
        require_postgres()
    elif name == "redis":
        require_redis()
    return name


@pytest.fixture
async def counted(
    backend_name: str, tmp_path: Path, nursery: trio.Nursery
) -> AsyncIterator[Counted]:
    async with _counted(backend_name, tmp_path, nursery) as c:
        yield c


@pytest.fixture
async def counted_without_sessions(
    backend_name: str, tmp_path: Path, nursery: trio.Nursery
) -> AsyncIterator[Counted]:
    """Sessions disabled by the operator: requests authenticate by token alone."""
    async with _counted(backend_name, tmp_path, nursery, sessions_enabled=False) as c:
        yield c


@asynccontextmanager
async def _counted(
    backend_name: str, tmp_path: Path, nursery: trio.Nursery, **settings: Any
) -> AsyncIterator[Counted]:
    async with (
        open_fresh_store(backend_name, tmp_path, "readmodel") as url,
        open_storage(url) as storage,
    ):
        wrapped, calls = counting(storage)
        engine = Engine(make_config(storage=url, **settings), wrapped)
        app: HomeserverApp = create_app(engine)
        loops = trio.CancelScope()
        stopped = trio.Event()

        async def run_loops(*, task_status: trio.TaskStatus[None]) -> None:
            try:
                with loops:
                    await engine.run(task_status=task_status)
            finally:
                stopped.set()

        # The engine's loops, as `homeserver serve` runs them.
        await nursery.start(run_loops)
        try:
            async with app.test_app():
                client = app.test_client()
                assert isinstance(client, QuartClient)
                yield Counted(Api(client), engine, calls, wrapped)
        finally:
            # The loops end (the presence write-behind flushes) before the store closes.
            loops.cancel()
            with trio.CancelScope(shield=True), trio.fail_after(30):
                await stopped.wait()
