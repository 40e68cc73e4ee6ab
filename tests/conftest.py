"""Fixtures for API and engine tests: a real engine over the memory backend and the
Quart test client running the app's startup and shutdown hooks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from quart.testing import QuartClient

from backends.memory import open_memory
from homeserver.app import HomeserverApp, create_app
from homeserver.config import Config
from homeserver.engine import Engine
from tests.helpers import Api, make_config


@pytest.fixture
def config() -> Config:
    return make_config()


@pytest.fixture
async def engine(config: Config) -> AsyncIterator[Engine]:
    async with open_memory("memory://") as storage:
        yield Engine(config, storage)


@pytest.fixture
async def app(engine: Engine) -> AsyncIterator[HomeserverApp]:
    app = create_app(engine)
    async with app.test_app():
        yield app


@pytest.fixture
def api(app: HomeserverApp) -> Api:
    client = app.test_client()
    assert isinstance(client, QuartClient)
    return Api(client)
