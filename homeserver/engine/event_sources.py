"""Event sources: the notification hooks plugins register to hear what happens
(sessions starting and ending, users registering, rooms created, the server's state).

Services call `signal(kind, payload)`, which never blocks: the hooks run later, one at
a time, in `run`'s dispatcher, each under the plugin timeout; a failure is logged and
the next hook runs. `server_state` runs its hooks at once (start-up and draining must
reach them before the server goes on).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

import trio

from plugins.api import ServerState

log = logging.getLogger("homeserver.plugins")

SIGNAL_KINDS = (
    "on_session_started",
    "on_session_ended",
    "on_user_registered",
    "on_room_created",
    "on_server_state",
)
SIGNAL_BUFFER = 10_000

# What services are given to announce something: `signal(kind, payload)`.
Signal = Callable[[str, object], None]


class EventSources:
    def __init__(self, timeout_ms: int) -> None:
        self.timeout_s = timeout_ms / 1000
        self.hooks: dict[str, list[tuple[str, Callable[[Any], Any]]]] = {
            kind: [] for kind in SIGNAL_KINDS
        }
        self._signals_in, self._signals_out = trio.open_memory_channel[tuple[str, object]](
            SIGNAL_BUFFER
        )

    def register(self, plugin: str, kind: str, hook: Callable[[Any], Any]) -> None:
        if not callable(hook):
            raise TypeError(f"plugin {plugin}: {kind} must be callable")
        self.hooks[kind].append((plugin, hook))

    def signal(self, kind: str, payload: object) -> None:
        """Tell the event sources something happened. Never blocks the caller: the
        hooks run later in the background; a full queue drops the signal (logged)."""
        if not self.hooks[kind]:
            return
        try:
            self._signals_in.send_nowait((kind, payload))
        except trio.WouldBlock:
            log.warning("event-source queue full: dropping a %s signal", kind)

    async def server_state(self, state: str) -> None:
        """Run the on_server_state hooks now, each under the timeout."""
        for plugin, hook in self.hooks["on_server_state"]:
            await self._notify(plugin, "on_server_state", hook, ServerState(state))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The dispatcher: runs the hooks of every signal, in order. Until cancelled."""
        task_status.started()
        async for kind, payload in self._signals_out:
            for plugin, hook in self.hooks[kind]:
                await self._notify(plugin, kind, hook, payload)

    async def _notify(
        self, plugin: str, kind: str, hook: Callable[[Any], Any], payload: object
    ) -> None:
        try:
            with trio.move_on_after(self.timeout_s) as scope:
                result = hook(payload)
                if inspect.isawaitable(result):
                    await result
            if scope.cancelled_caught:
                log.warning("plugin %s: %s timed out", plugin, kind)
        except Exception:
            log.exception("plugin %s: %s failed", plugin, kind)
