"""Storage backends behind one interface (`backends.protocols.Storage`).

`open_storage(url)` picks the backend by URL scheme. Each backend module exposes an
opener `open_<name>(url) -> AbstractAsyncContextManager[Storage]`.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import cast

from backends.errors import (
    BackendUnavailable,
    Conflict,
    DuplicateTransaction,
    NotFound,
    StorageError,
)
from backends.protocols import Storage
from backends.timeouts import StorageTimeouts
from backends.urls import redact_url

__all__ = [
    "BackendUnavailable",
    "Conflict",
    "DuplicateTransaction",
    "NotFound",
    "Storage",
    "StorageError",
    "StorageTimeouts",
    "UnsupportedStorageUrl",
    "check_storage_url",
    "has_schema",
    "migrate_storage",
    "open_storage",
    "redact_url",
]

# scheme -> "module:opener"
_OPENERS: dict[str, str] = {
    "memory": "backends.memory:open_memory",
    "sqlite": "backends.sql:open_sql",
    "postgresql": "backends.sql:open_sql",
    "postgres": "backends.sql:open_sql",
    "redis": "backends.redis:open_redis",
    "rediss": "backends.redis:open_redis",
}

# open_<name>(url, **options); only the SQL openers take `migrate`, only the networked
# ones (SQL, Redis) `timeouts`.
Opener = Callable[..., AbstractAsyncContextManager[Storage]]


class UnsupportedStorageUrl(ValueError):
    """The storage URL names no backend this build knows."""


def _scheme(url: str) -> str:
    scheme = url.split("://", 1)[0] if "://" in url else ""
    return scheme.split("+", 1)[0].lower()


def _load_opener(url: str) -> Opener:
    target = _OPENERS.get(_scheme(url))
    if target is None:
        raise UnsupportedStorageUrl(
            f"unsupported storage URL {url!r}: expected memory://, sqlite:///PATH, "
            "postgresql://... or redis://..."
        )
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise UnsupportedStorageUrl(
            f"storage URL {url!r}: backend {module_name} is not available ({exc})"
        ) from exc
    return cast(Opener, getattr(module, attr))


_SQL_SCHEMES = frozenset({"sqlite", "postgresql", "postgres"})
_REDIS_SCHEMES = frozenset({"redis", "rediss"})


def check_storage_url(url: str) -> None:
    """Raise UnsupportedStorageUrl unless `url` names a backend this build can open."""
    _load_opener(url)


def has_schema(url: str) -> bool:
    """Whether the backend keeps a schema that `migrate_storage` manages (SQL)."""
    return _scheme(url) in _SQL_SCHEMES


async def migrate_storage(url: str) -> str | None:
    """Bring a SQL database to the current schema; returns the revision it is at now,
    or None for backends without a schema (memory, Redis)."""
    check_storage_url(url)
    if not has_schema(url):
        return None
    from backends.sql import head_revision, migrate

    await migrate(url)
    return head_revision()


@asynccontextmanager
async def open_storage(
    url: str, *, migrate: bool = True, timeouts: StorageTimeouts | None = None
) -> AsyncIterator[Storage]:
    """Open the backend named by `url` and close it on exit. With a SQL backend,
    `migrate` brings its schema to the current revision first (otherwise a database
    that is not current is refused). `timeouts` (default `StorageTimeouts()`) bound
    connecting to a SQL or Redis server and every storage operation: past them an
    operation raises BackendUnavailable."""
    opener = _load_opener(url)
    if has_schema(url):
        context = opener(url, migrate=migrate, timeouts=timeouts)
    elif _scheme(url) in _REDIS_SCHEMES:
        context = opener(url, timeouts=timeouts)
    else:
        context = opener(url)
    async with context as storage:
        yield storage
