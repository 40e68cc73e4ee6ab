"""Storage backends behind one interface (`backends.protocols.Storage`).

`open_storage(url)` picks the backend by URL scheme. Each backend module exposes an
opener `open_<name>(url) -> AbstractAsyncContextManager[Storage]`.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import cast

from backends.errors import BackendUnavailable, Conflict, NotFound, StorageError
from backends.protocols import Storage

__all__ = [
    "BackendUnavailable",
    "Conflict",
    "NotFound",
    "Storage",
    "StorageError",
    "UnsupportedStorageUrl",
    "check_storage_url",
    "open_storage",
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

Opener = Callable[[str], AbstractAsyncContextManager[Storage]]


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


def check_storage_url(url: str) -> None:
    """Raise UnsupportedStorageUrl unless `url` names a backend this build can open."""
    _load_opener(url)


@asynccontextmanager
async def open_storage(url: str) -> AsyncIterator[Storage]:
    """Open the backend named by `url` and close it on exit."""
    async with _load_opener(url)(url) as storage:
        yield storage
