"""Fixtures for the API tests: registered users (modules may define their own)."""

from __future__ import annotations

import pytest

from tests.helpers import Api, User


@pytest.fixture
async def alice(api: Api) -> User:
    return await api.register("alice")


@pytest.fixture
async def bob(api: Api) -> User:
    return await api.register("bob")


@pytest.fixture
async def carol(api: Api) -> User:
    return await api.register("carol")
