"""Plugins for the plugin-system tests, loaded by name like any third-party plugin:
`PluginSpec("tests.plugins.sample_plugins:Scripted", {...})`.

Every hook call is recorded in CALLS as (plugin label, hook name), and every check
object in CHECKS, so tests can see who was asked what and in which order. Tests clear
both (the `fresh_records` fixture of test_plugin_system does).
"""

from __future__ import annotations

from typing import Any

import trio

from plugins.api import (
    Decision,
    EventCheck,
    EventDecision,
    InviteCheck,
    InviteDecision,
    InviteRedaction,
    JoinCheck,
    PluginApi,
    PluginConfigError,
    RoomCreationCheck,
    Verdict,
)

CALLS: list[tuple[str, str]] = []
CHECKS: list[object] = []

HOOKS = ("check_invite", "check_room_creation", "check_join", "check_event")
VERDICTS = ("allow", "deny", "drop", "rate_limited")


def reset() -> None:
    CALLS.clear()
    CHECKS.clear()


def _record(label: str, hook: str, check: object) -> None:
    CALLS.append((label, hook))
    CHECKS.append(check)


def _users(check: object) -> set[str]:
    if isinstance(check, InviteCheck):
        return {check.inviter, check.invitee}
    if isinstance(check, RoomCreationCheck):
        return {check.creator, *check.invitees}
    if isinstance(check, JoinCheck):
        return {check.user_id}
    if isinstance(check, EventCheck):
        return {check.sender}
    return set()


class Scripted:
    """Answers each hook as configured:

    label    = "A"                  # how its calls are recorded
    sync     = false                # register plain functions instead of async ones
    check_invite = "allow" | "deny" | "drop" | "rate_limited"   (default "allow")
    check_room_creation / check_join / check_event: the same ("drop" for events only)
    errcode  = "M_FORBIDDEN"        # for deny
    retry_after_ms = 1000           # for rate_limited
    only_user = "@bob:test.local"   # act only on checks naming this user (else allow)
    only_body = "spam"              # check_event acts only on bodies containing this
    redact_reason = true            # an allowed invite is redacted ...
    redact_types  = ["m.room.avatar"]
    redact_fields = [["m.room.topic", "topic"]]
    """

    def __init__(self, config: dict[str, Any], api: PluginApi) -> None:
        self.config = config
        self.label: str = config.get("label", api.plugin_name)
        hooks = {name: getattr(self, name) for name in HOOKS}
        if config.get("sync"):
            hooks = {name: getattr(self, f"{name}_sync") for name in HOOKS}
        api.register_spam_checks(**hooks)

    @classmethod
    def parse_config(cls, raw: dict[str, Any]) -> dict[str, Any]:
        for hook in HOOKS:
            verdict = raw.get(hook, "allow")
            if verdict not in VERDICTS:
                raise PluginConfigError(hook, f"must be one of {', '.join(VERDICTS)}")
            if verdict == "drop" and hook in ("check_room_creation", "check_join"):
                raise PluginConfigError(hook, "drop is for invites and events only")
        return raw

    def _decide(self, hook: str, kind: type[Decision], check: object) -> Any:
        verdict = self.config.get(hook, "allow")
        only = self.config.get("only_user")
        if only is not None and only not in _users(check):
            verdict = "allow"
        if verdict == "deny":
            return kind.deny(self.config.get("errcode", "M_FORBIDDEN"), f"{self.label} says no")
        if verdict == "rate_limited":
            return kind.rate_limited(self.config.get("retry_after_ms", 1000))
        if verdict == "drop":
            return InviteDecision.drop() if kind is InviteDecision else EventDecision.drop()
        if kind is InviteDecision:
            return InviteDecision.allow(
                InviteRedaction(
                    reason=bool(self.config.get("redact_reason")),
                    state_types=frozenset(self.config.get("redact_types", ())),
                    state_fields=frozenset(tuple(f) for f in self.config.get("redact_fields", ())),
                )
            )
        return kind.allow()

    def check_invite_sync(self, invite: InviteCheck) -> InviteDecision:
        _record(self.label, "check_invite", invite)
        decision: InviteDecision = self._decide("check_invite", InviteDecision, invite)
        return decision

    def check_room_creation_sync(self, check: RoomCreationCheck) -> Decision:
        _record(self.label, "check_room_creation", check)
        decision: Decision = self._decide("check_room_creation", Decision, check)
        return decision

    def check_join_sync(self, check: JoinCheck) -> Decision:
        _record(self.label, "check_join", check)
        decision: Decision = self._decide("check_join", Decision, check)
        return decision

    def check_event_sync(self, check: EventCheck) -> EventDecision:
        _record(self.label, "check_event", check)
        only = self.config.get("only_body")
        if only is not None and only not in str(check.content.get("body", "")):
            return EventDecision(Verdict.ALLOW)
        decision: EventDecision = self._decide("check_event", EventDecision, check)
        return decision

    async def check_invite(self, invite: InviteCheck) -> InviteDecision:
        await trio.lowlevel.checkpoint()
        return self.check_invite_sync(invite)

    async def check_room_creation(self, check: RoomCreationCheck) -> Decision:
        await trio.lowlevel.checkpoint()
        return self.check_room_creation_sync(check)

    async def check_join(self, check: JoinCheck) -> Decision:
        await trio.lowlevel.checkpoint()
        return self.check_join_sync(check)

    async def check_event(self, check: EventCheck) -> EventDecision:
        await trio.lowlevel.checkpoint()
        return self.check_event_sync(check)


class Raises:
    """Every hook raises: the host must deny (fail closed) and log the plugin's name."""

    def __init__(self, config: dict[str, Any], api: PluginApi) -> None:
        api.register_spam_checks(
            check_invite=self.boom,
            check_room_creation=self.boom,
            check_join=self.boom,
            check_event=self.boom,
        )

    def boom(self, check: object) -> Decision:
        _record("Raises", type(check).__name__, check)
        raise RuntimeError("the plugin's own bug")


class Sleeps:
    """An async check_invite that awaits `seconds` (default 5) before allowing."""

    def __init__(self, config: dict[str, Any], api: PluginApi) -> None:
        self.seconds = float(config.get("seconds", 5))
        api.register_spam_checks(check_invite=self.check_invite)

    async def check_invite(self, invite: InviteCheck) -> InviteDecision:
        _record("Sleeps", "check_invite", invite)
        await trio.sleep(self.seconds)
        CALLS.append(("Sleeps", "woke"))
        return InviteDecision.allow()


class WrongType:
    """Answers something other than its hook's decision type, per `answer`:
    "bool" (True), "decision" (a plain Decision.allow() where an InviteDecision is due),
    "invite_decision" (an InviteDecision where a plain Decision is due, for joins),
    "event_drop" (EventDecision.drop() from check_join)."""

    def __init__(self, config: dict[str, Any], api: PluginApi) -> None:
        self.answer = config.get("answer", "bool")
        api.register_spam_checks(check_invite=self.check, check_join=self.check)

    def check(self, check: object) -> object:
        _record("WrongType", type(check).__name__, check)
        answers: dict[str, object] = {
            "bool": True,
            "decision": Decision.allow(),
            "invite_decision": InviteDecision.allow(),
            "event_drop": EventDecision.drop(),
        }
        return answers[self.answer]


class UsesFacade:
    """check_invite through the façade: a token bucket of one invite per inviter (no
    refill to speak of), and a record of what the façade tells the plugin."""

    def __init__(self, config: dict[str, Any], api: PluginApi) -> None:
        self.api = api
        api.register_spam_checks(check_invite=self.check_invite)

    async def check_invite(self, invite: InviteCheck) -> InviteDecision:
        api = self.api
        seen = {
            "plugin_name": api.plugin_name,
            "server_name": api.server_name,
            "now_ms": api.now_ms(),
            "share_a_room": await api.share_a_room(invite.inviter, invite.invitee),
            "logger": api.log.name,
        }
        _record("UsesFacade", "check_invite", seen)
        wait_ms = await api.take_token(invite.inviter, capacity=1, refill_per_s=0.001)
        if wait_ms > 0:
            return InviteDecision.rate_limited(wait_ms)
        return InviteDecision.allow()


class Meddles:
    """Changes what it is shown (a plugin must not; the server hands it copies)."""

    def __init__(self, config: dict[str, Any], api: PluginApi) -> None:
        api.register_spam_checks(check_invite=self.check_invite, check_event=self.check_event)

    def check_invite(self, invite: InviteCheck) -> InviteDecision:
        for event in invite.shared_state:
            event["content"].clear()
        return InviteDecision.allow()

    def check_event(self, event: EventCheck) -> EventDecision:
        event.content["body"] = "meddled"
        return EventDecision.allow()


class StrictConfig:
    """parse_config rejects a non-positive `max_length` naming the key."""

    def __init__(self, config: int, api: PluginApi) -> None:
        self.max_length = config

    @classmethod
    def parse_config(cls, raw: dict[str, Any]) -> int:
        value = raw.get("max_length", 10)
        if not isinstance(value, int) or value <= 0:
            raise PluginConfigError("max_length", f"must be a positive integer, got {value!r}")
        return value


NOT_A_CLASS = "a module attribute that is not callable"
