"""Where the external services of the test suite live, and what to do when they are down.

With HOMESERVER_REQUIRE_SERVICES=1 (CI) a missing PostgreSQL or Redis fails the test;
otherwise (a laptop) the test is skipped with the reason.
"""

from __future__ import annotations

import os

import pytest

from backends import fresh
from backends.fresh import unique_name

__all__ = [
    "POSTGRES_URL",
    "REDIS_URL",
    "backend_params",
    "require_postgres",
    "require_redis",
    "services_required",
    "unique_name",
]

POSTGRES_URL = fresh.POSTGRES_ADMIN_URL
REDIS_URL = fresh.REDIS_URL

# The pytest mark of each backend that needs a service (`-m "not redis"` etc.).
MARKS: dict[str, pytest.MarkDecorator] = {
    "postgresql": pytest.mark.postgres,
    "redis": pytest.mark.redis,
}


def backend_params(names: tuple[str, ...] = fresh.BACKENDS) -> list[object]:
    """`pytest.param`s of the named backends (`backends.fresh`' list), with their marks
    and ids."""
    return [
        pytest.param(name, id=name, marks=[MARKS[name]] if name in MARKS else []) for name in names
    ]


def services_required() -> bool:
    return os.environ.get("HOMESERVER_REQUIRE_SERVICES", "") not in ("", "0", "false")


def _unavailable(what: str, url: str) -> None:
    message = f"{what} not reachable at {url} (set HOMESERVER_TEST_{what.upper()}_URL)"
    if services_required():
        pytest.fail(message + "; HOMESERVER_REQUIRE_SERVICES=1 makes this a failure")
    pytest.skip(message)


def require_postgres() -> str:
    """The admin URL of a reachable PostgreSQL server, or skip/fail."""
    if not fresh.reachable(POSTGRES_URL, 5432):
        _unavailable("Postgres", POSTGRES_URL)
    return POSTGRES_URL


def require_redis() -> str:
    """The URL of a reachable Redis server, or skip/fail."""
    if not fresh.reachable(REDIS_URL, 6379):
        _unavailable("Redis", REDIS_URL)
    return REDIS_URL
