"""Example event source: reminds everyone of a maintenance window, every hour, and
tells each new session about it too."""

from __future__ import annotations

from typing import Any

import trio

from plugins.api import ALL_USERS, PluginApi, PluginConfigError, SessionSignal


class MaintenanceReminder:
    @classmethod
    def parse_config(cls, raw: dict[str, Any]) -> str:
        text = raw.get("text")
        if not isinstance(text, str) or not text:
            raise PluginConfigError("text", "expected a non-empty string")
        return text

    def __init__(self, text: str, api: PluginApi) -> None:
        self.text, self.api = text, api
        api.register_event_sources(on_session_started=self.greet, run=self.every_hour)

    async def greet(self, session: SessionSignal) -> None:
        await self.api.send_server_event(
            session.user_id, "org.example.maintenance", {"body": self.text}
        )

    async def every_hour(self) -> None:
        while True:
            await trio.sleep(3600)
            await self.api.send_server_event(
                ALL_USERS, "org.example.maintenance", {"body": self.text}
            )
