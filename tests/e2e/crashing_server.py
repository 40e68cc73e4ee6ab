"""`python -m homeserver`, except that the process kills itself with SIGKILL as soon as
its store has stored an event whose content carries CRASH_MARK: a crash at the worst
moment of a send, after its write and before its reply.

Run as a script (`python tests/e2e/crashing_server.py serve ...`); the durable
backends' room stores are patched in this process only.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from backends.records import Event, NewEvent
from backends.redis.rooms import RedisRoomStore
from backends.sql.rooms import SqlRoomStore
from homeserver.cli import main

CRASH_MARK = "org.example.crash_after_store"
# What server_process runs instead of `-m homeserver`.
PROGRAM = (str(Path(__file__)),)


def crash_after_storing(store: type[Any]) -> None:
    """Make `store.append_events` SIGKILL the process once a marked event is stored."""
    append: Callable[..., Awaitable[list[Event]]] = store.append_events

    async def append_events(self: Any, events: Sequence[NewEvent], **options: Any) -> list[Event]:
        stored = await append(self, events, **options)
        if any(new.content.get(CRASH_MARK) for new in events):
            os.kill(os.getpid(), signal.SIGKILL)
        return stored

    store.append_events = append_events


if __name__ == "__main__":
    for store in (SqlRoomStore, RedisRoomStore):
        crash_after_storing(store)
    sys.exit(main())
