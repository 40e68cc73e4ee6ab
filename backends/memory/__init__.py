"""The in-memory backend: the reference semantics of `backends.protocols`.

Volatile and single-process. Everything it hands out is a copy, so callers can never
change its state behind its back (the SQL and Redis backends get that for free).

One module per protocol area, as in `backends.sql` and `backends.redis`: `users`
(users, devices, tokens), `rooms`, `user_data` (account data, filters, transaction
ids), `sessions`, `typing_state`, `presence`, `rate_limits`, `server_events`; their
shared data lives in `state`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from backends.memory.presence import MemoryPresenceStore
from backends.memory.rate_limits import MemoryRateLimitStore
from backends.memory.rooms import MemoryRoomStore
from backends.memory.server_events import MemoryServerEventStore
from backends.memory.sessions import MemorySessionStore
from backends.memory.state import MemoryState, SessionState
from backends.memory.typing_state import MemoryTypingStore
from backends.memory.user_data import (
    MemoryAccountDataStore,
    MemoryFilterStore,
    MemoryTransactionStore,
)
from backends.memory.users import MemoryDeviceStore, MemoryUserStore
from backends.protocols import Storage

__all__ = ["open_memory", "open_memory_storage"]


def open_memory_storage() -> Storage:
    """A fresh, empty memory backend."""
    state = MemoryState()
    ephemeral = SessionState()

    async def close() -> None:
        return None

    return Storage(
        description="memory://",
        users=MemoryUserStore(state),
        devices=MemoryDeviceStore(state),
        rooms=MemoryRoomStore(state),
        account_data=MemoryAccountDataStore(state),
        filters=MemoryFilterStore(state),
        txns=MemoryTransactionStore(state),
        sessions=MemorySessionStore(state, ephemeral),
        typing=MemoryTypingStore(state, ephemeral),
        presence=MemoryPresenceStore(state, ephemeral),
        rate_limits=MemoryRateLimitStore(),
        server_events=MemoryServerEventStore(state),
        closer=close,
    )


@asynccontextmanager
async def open_memory(url: str) -> AsyncIterator[Storage]:
    """Opener for `memory://` (the URL carries no options)."""
    storage = open_memory_storage()
    try:
        yield storage
    finally:
        await storage.aclose()
