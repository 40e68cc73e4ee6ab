"""A live server: Hypercorn on a random local port, started in the test's nursery."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
import trio

from homeserver.config import Config
from homeserver.server import serve
from tests.helpers import make_config

LiveServerFactory = Callable[..., AbstractAsyncContextManager[str]]


@asynccontextmanager
async def run_live_server(config: Config) -> AsyncIterator[str]:
    """Serve `config` on 127.0.0.1 and yield the base URL; stop the server on exit."""
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            lambda *, task_status: serve(
                config, shutdown_trigger=stop.wait, task_status=task_status
            )
        )
        try:
            yield binds[0]
        finally:
            stop.set()


@pytest.fixture
def live_server_factory() -> LiveServerFactory:
    def factory(**overrides: Any) -> AbstractAsyncContextManager[str]:
        overrides.setdefault("host", "127.0.0.1")
        overrides.setdefault("port", 0)
        return run_live_server(make_config(**overrides))

    return factory


@pytest.fixture
async def live_server(live_server_factory: LiveServerFactory) -> AsyncIterator[str]:
    async with live_server_factory() as url:
        yield url
