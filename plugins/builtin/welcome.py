"""Welcome notice: a server event to each user when their first session starts.

Config::

    [[plugins]]
    module = "plugins.builtin.welcome:Welcome"
    config = { body = "Welcome to example.org! Read the rules in #rules." }

The event is `m.room.message`-shaped content (`{"msgtype": "m.notice", "body": ...}`)
of type `org.triohomeserver.welcome`, sent to the user alone, once per user ever: a
one-shot flag (a token bucket with no refill) in the server's storage remembers who
was welcomed, across restarts and worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plugins.api import NAMESPACE, PluginApi, SessionSignal
from plugins.builtin._config import ConfigReader

WELCOME = f"{NAMESPACE}.welcome"


@dataclass(frozen=True)
class WelcomeConfig:
    body: str


class Welcome:
    """Welcomes each user on their first session (see the module docstring)."""

    @classmethod
    def parse_config(cls, raw: dict[str, Any]) -> WelcomeConfig:
        reader = ConfigReader(raw)
        config = WelcomeConfig(body=reader.string("body", "Welcome!"))
        reader.finish()
        return config

    def __init__(self, config: WelcomeConfig, api: PluginApi) -> None:
        self._config = config
        self._api = api
        api.register_event_sources(on_session_started=self.on_session_started)

    async def on_session_started(self, session: SessionSignal) -> None:
        first = await self._api.take_token(
            f"welcomed:{session.user_id}", capacity=1, refill_per_s=0
        )
        if first == 0:
            await self._api.send_server_event(
                session.user_id, WELCOME, {"msgtype": "m.notice", "body": self._config.body}
            )
