"""Server status: tells every local user's clients what the server is doing.

Config::

    [[plugins]]
    module = "plugins.builtin.server_status:ServerStatus"
    config = { running = "Back online.", draining = "Restarting for maintenance." }

Sends `org.triohomeserver.server_status` server events to all users, with content
`{"state": "starting" | "running" | "draining", "message": "..."}`:

- `starting`: before the server listens;
- `running`: once it listens;
- `draining`: on a graceful shutdown (Ctrl-C, SIGTERM), before connections are
  drained, so clients with a waiting /sync learn of it at once.

Each of `starting`, `running`, `draining` configures that state's message (defaults
below); `announce` lists the states sent (default all three).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plugins.api import ALL_USERS, SERVER_STATUS, PluginApi, ServerState
from plugins.builtin._config import ConfigReader

STATES = ("starting", "running", "draining")
DEFAULT_MESSAGES = {
    "starting": "The server is starting.",
    "running": "The server is running.",
    "draining": "The server is shutting down; it will be back shortly.",
}


@dataclass(frozen=True)
class ServerStatusConfig:
    messages: dict[str, str]
    announce: frozenset[str]


class ServerStatus:
    """Announces the server's lifecycle as server events (see the module docstring)."""

    @classmethod
    def parse_config(cls, raw: dict[str, Any]) -> ServerStatusConfig:
        reader = ConfigReader(raw)
        messages = {state: reader.string(state, DEFAULT_MESSAGES[state]) for state in STATES}
        announce = reader.choices("announce", STATES, STATES)
        reader.finish()
        return ServerStatusConfig(messages=messages, announce=announce)

    def __init__(self, config: ServerStatusConfig, api: PluginApi) -> None:
        self._config = config
        self._api = api
        api.register_event_sources(on_server_state=self.on_server_state)

    async def on_server_state(self, change: ServerState) -> None:
        if change.state not in self._config.announce:
            return
        await self._api.send_server_event(
            ALL_USERS,
            SERVER_STATUS,
            {"state": change.state, "message": self._config.messages[change.state]},
        )
