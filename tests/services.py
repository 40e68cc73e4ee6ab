"""Where the external services of the test suite live, and what to do when they are down.

With HOMESERVER_REQUIRE_SERVICES=1 (CI) a missing PostgreSQL or Redis fails the test;
otherwise (a laptop) the test is skipped with the reason.
"""

from __future__ import annotations

import os
import socket
import uuid

import pytest

POSTGRES_URL = os.environ.get(
    "HOMESERVER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("HOMESERVER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def services_required() -> bool:
    return os.environ.get("HOMESERVER_REQUIRE_SERVICES", "") not in ("", "0", "false")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    rest = url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    host, _, port = rest.partition(":")
    return host or "127.0.0.1", int(port or default_port)


def _unavailable(what: str, url: str) -> None:
    message = f"{what} not reachable at {url} (set HOMESERVER_TEST_{what.upper()}_URL)"
    if services_required():
        pytest.fail(message + "; HOMESERVER_REQUIRE_SERVICES=1 makes this a failure")
    pytest.skip(message)


def require_postgres() -> str:
    """The admin URL of a reachable PostgreSQL server, or skip/fail."""
    if not _reachable(*_host_port(POSTGRES_URL, 5432)):
        _unavailable("Postgres", POSTGRES_URL)
    return POSTGRES_URL


def require_redis() -> str:
    """The URL of a reachable Redis server, or skip/fail."""
    if not _reachable(*_host_port(REDIS_URL, 6379)):
        _unavailable("Redis", REDIS_URL)
    return REDIS_URL


def unique_name(prefix: str) -> str:
    """A name no other test run uses (database names, Redis key prefixes)."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"
