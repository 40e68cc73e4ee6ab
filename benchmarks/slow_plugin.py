"""Test plugins for the invite benchmark (configured by module path, like any plugin).

- `benchmarks.slow_plugin:SlowInvites`: `check_invite` awaits `trio.sleep(delay_ms)`
  and allows. A slow but well-behaved plugin (waiting on a network service, say): the
  event loop serves other requests meanwhile.
- `benchmarks.slow_plugin:BlockingInvites`: a control, what a plugin must NOT do:
  `check_invite` is a plain function calling `time.sleep(delay_ms)`, which stops the
  whole server for that long. It shows that the benchmark would notice a plugin that
  blocks other endpoints.

Config: `{ delay_ms = 5 }` (default 5).
"""

from __future__ import annotations

import time
from typing import Any

import trio

from plugins.api import InviteCheck, InviteDecision, PluginApi, PluginConfigError


def _delay_s(raw: dict[str, Any]) -> float:
    unknown = set(raw) - {"delay_ms"}
    if unknown:
        raise PluginConfigError(sorted(unknown)[0], "unknown key (known: delay_ms)")
    delay_ms = raw.get("delay_ms", 5)
    if isinstance(delay_ms, bool) or not isinstance(delay_ms, int | float) or delay_ms < 0:
        raise PluginConfigError("delay_ms", "expected a number >= 0")
    return float(delay_ms) / 1000


class SlowInvites:
    """check_invite awaits trio.sleep(delay), then allows."""

    @classmethod
    def parse_config(cls, raw: dict[str, Any]) -> float:
        return _delay_s(raw)

    def __init__(self, delay_s: float, api: PluginApi) -> None:
        self._delay_s = delay_s
        api.register_spam_checks(check_invite=self.check_invite)

    async def check_invite(self, invite: InviteCheck) -> InviteDecision:
        await trio.sleep(self._delay_s)
        return InviteDecision.allow()


class BlockingInvites:
    """check_invite blocks the event loop with time.sleep(delay), then allows (a control:
    never write a plugin like this)."""

    @classmethod
    def parse_config(cls, raw: dict[str, Any]) -> float:
        return _delay_s(raw)

    def __init__(self, delay_s: float, api: PluginApi) -> None:
        self._delay_s = delay_s
        api.register_spam_checks(check_invite=self.check_invite)

    def check_invite(self, invite: InviteCheck) -> InviteDecision:
        time.sleep(self._delay_s)
        return InviteDecision.allow()
