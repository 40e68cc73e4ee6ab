"""Content filter: the invite reason, the shared room name and topic, and message
bodies, against a maximum reason length, a URL policy and regular expressions.

Config (every key optional)::

    [[plugins]]
    module = "plugins.builtin.content:ContentFilter"
    [plugins.config]
    max_reason_length = 300       # characters; longer reasons get long_reason_action
    long_reason_action = "redact" # "deny" (default) | "drop" | "redact"
    urls = "redact"               # "allow" (default) | "deny" | "drop" | "redact"
    patterns = [
        "(?i)free +crypto",                         # a bare string: action "deny"
        { regex = "(?i)casino", action = "drop" },   # "deny" | "drop" | "redact"
    ]
    check_messages = true         # also check message bodies (default true)
    errcode = "M_FORBIDDEN"       # the errcode of a deny
    message = "..."               # the error message of a deny (the field is appended)

What is checked, by hook:

- check_invite: the invite's reason (its length, URLs and patterns), and the room name
  (`m.room.name` `name`) and topic (`m.room.topic` `topic`, and the texts of its
  `m.topic` block) about to be shared with the invitee (URLs and patterns).
- check_event: the `body` and `formatted_body` of messages, against the URL policy and
  the patterns whose action is deny or drop. A message cannot be partly delivered, so
  `redact` rules (and the reason length) apply to invites only.

A URL is text with a scheme (`https://...`, `ftp://...`) or starting with `www.`.
Patterns are Python regular expressions searched anywhere in the text (use `(?i)` for
case-insensitive); they run inline on every invite and message, so keep them linear
(no nested quantifiers).

Actions: `deny` answers the sender 403 `errcode`; `drop` tells the sender it worked and
delivers nothing (no tipping off a spammer); `redact` delivers the invite without the
offending field: the reason, or the room name or topic in the shared state. When
several rules match, drop wins over deny, and deny over redact; redactions add up.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from plugins.api import (
    EventCheck,
    EventDecision,
    InviteCheck,
    InviteDecision,
    InviteRedaction,
    PluginApi,
    PluginConfigError,
    Verdict,
)
from plugins.builtin._config import ConfigReader
from plugins.builtin._decisions import event_deny, invite_deny

ACTIONS = ("deny", "drop", "redact")
URL_RE = re.compile(r"\b[a-z][a-z0-9+.\-]*://\S|\bwww\.\S", re.IGNORECASE)
DEFAULT_MESSAGE = "Refused by the server's content policy"

_SEVERITY = {"redact": 1, "deny": 2, "drop": 3}

# What redacting each invite field strips from what the invitee is shown.
REDACTIONS = {
    "reason": InviteRedaction(reason=True),
    "room name": InviteRedaction(state_fields=frozenset({("m.room.name", "name")})),
    "room topic": InviteRedaction(
        state_fields=frozenset({("m.room.topic", "topic"), ("m.room.topic", "m.topic")})
    ),
}


@dataclass(frozen=True)
class Rule:
    """Text matching `pattern` gets `action`; `name` is the config key, for logs."""

    name: str
    pattern: re.Pattern[str]
    action: str


@dataclass(frozen=True)
class ContentConfig:
    max_reason_length: int | None = None
    long_reason_action: str = "deny"
    # The URL rule (unless urls = "allow") first, then the patterns in order.
    rules: tuple[Rule, ...] = ()
    check_messages: bool = True
    errcode: str = "M_FORBIDDEN"
    message: str = DEFAULT_MESSAGE


@dataclass
class _Outcome:
    """The most severe action so far, what it was about, and the redactions."""

    action: str | None = None
    about: str = ""
    redaction: InviteRedaction = field(default_factory=InviteRedaction)

    def hit(self, action: str, about: str) -> None:
        if action == "redact":
            self.redaction = self.redaction.merge(REDACTIONS[about])
        if self.action is None or _SEVERITY[action] > _SEVERITY[self.action]:
            self.action = action
            self.about = about


def _pattern_rule(key: str, item: Any) -> Rule:
    if isinstance(item, str):
        if not item:
            raise PluginConfigError(key, "expected a regular expression or a table")
        source, action = item, "deny"
        regex_key = key
    else:
        table = ConfigReader(item, key)
        source = table.string("regex", "")
        if not source:
            raise table.error("regex", "missing")
        action = table.choice("action", ACTIONS, "deny")
        table.finish()
        regex_key = f"{key}.regex"
    try:
        return Rule(key, re.compile(source), action)
    except re.error as exc:
        raise PluginConfigError(regex_key, f"invalid regular expression: {exc}") from None


def _topic_texts(invite: InviteCheck) -> Iterator[str]:
    """The shared topic: its plain text and the texts of its m.topic block."""
    for event in invite.shared_state:
        if event.get("type") != "m.room.topic":
            continue
        content = event.get("content", {})
        if isinstance(content.get("topic"), str):
            yield content["topic"]
        block = content.get("m.topic")
        representations = block.get("m.text") if isinstance(block, dict) else None
        if isinstance(representations, list):
            for item in representations:
                if isinstance(item, dict) and isinstance(item.get("body"), str):
                    yield item["body"]


class ContentFilter:
    """Checks invite reasons, shared room names and topics, and message bodies (see
    the module docstring)."""

    @classmethod
    def parse_config(cls, raw: dict[str, Any]) -> ContentConfig:
        reader = ConfigReader(raw)
        max_reason_length = reader.integer("max_reason_length", minimum=0)
        long_reason_action = reader.choice("long_reason_action", ACTIONS, "deny")
        rules: list[Rule] = []
        urls = reader.choice("urls", ("allow", *ACTIONS), "allow")
        if urls != "allow":
            rules.append(Rule("urls", URL_RE, urls))
        rules.extend(_pattern_rule(key, item) for key, item in reader.list_items("patterns"))
        config = ContentConfig(
            max_reason_length=max_reason_length,
            long_reason_action=long_reason_action,
            rules=tuple(rules),
            check_messages=reader.boolean("check_messages", True),
            errcode=reader.errcode("errcode", "M_FORBIDDEN"),
            message=reader.string("message", DEFAULT_MESSAGE),
        )
        reader.finish()
        return config

    def __init__(self, config: ContentConfig, api: PluginApi) -> None:
        self._config = config
        self._api = api
        self._message_rules = tuple(r for r in config.rules if r.action != "redact")
        if config.check_messages and self._message_rules:
            api.register_spam_checks(check_invite=self.check_invite, check_event=self.check_event)
        else:
            api.register_spam_checks(check_invite=self.check_invite)

    def _texts(self, invite: InviteCheck) -> Iterator[tuple[str, str]]:
        if invite.reason is not None:
            yield "reason", invite.reason
        name = invite.shared("m.room.name", "name")
        if name is not None:
            yield "room name", name
        for topic in _topic_texts(invite):
            yield "room topic", topic

    def check_invite(self, invite: InviteCheck) -> InviteDecision:
        config = self._config
        outcome = _Outcome()
        for about, text in self._texts(invite):
            if (
                about == "reason"
                and config.max_reason_length is not None
                and len(text) > config.max_reason_length
            ):
                outcome.hit(config.long_reason_action, about)
            for rule in config.rules:
                if rule.pattern.search(text) is not None:
                    outcome.hit(rule.action, about)
        if outcome.action is None:
            return InviteDecision.allow()
        self._api.log.info(
            "invite %s -> %s in %s: %s (%s)",
            invite.inviter,
            invite.invitee,
            invite.room_id,
            outcome.action,
            outcome.about,
        )
        if outcome.action == "drop":
            return InviteDecision.drop()
        if outcome.action == "deny":
            return invite_deny(config.errcode, f"{config.message} (the {outcome.about})")
        return InviteDecision.allow(redact=outcome.redaction)

    def check_event(self, event: EventCheck) -> EventDecision:
        action: str | None = None
        for key in ("body", "formatted_body"):
            text = event.content.get(key)
            if not isinstance(text, str):
                continue
            for rule in self._message_rules:
                if rule.pattern.search(text) is not None and action != "drop":
                    action = rule.action
        if action is None:
            return EventDecision(Verdict.ALLOW)
        self._api.log.info("message from %s in %s: %s", event.sender, event.room_id, action)
        if action == "drop":
            return EventDecision.drop()
        return event_deny(self._config.errcode, f"{self._config.message} (the message)")
