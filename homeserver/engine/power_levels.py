"""Power levels: who may send what, invite, kick, ban and change power levels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backends.records import JsonDict
from homeserver.errors import BadJson, Forbidden

_DEFAULTS = {
    "ban": 50,
    "kick": 50,
    "redact": 50,
    "invite": 0,
    "events_default": 0,
    "state_default": 50,
    "users_default": 0,
}


def _as_int(value: Any, default: int) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return default
    return default


@dataclass(frozen=True)
class PowerLevels:
    content: JsonDict
    creator: str | None = None

    @classmethod
    def of(cls, content: JsonDict | None, creator: str | None) -> PowerLevels:
        """From the room's m.room.power_levels content (None: the room has none yet)."""
        return cls(content if content is not None else {}, None if content else creator)

    def level(self, key: str) -> int:
        return _as_int(self.content.get(key), _DEFAULTS[key])

    def user_level(self, user_id: str) -> int:
        if self.creator is not None:
            # Before any power_levels event the creator holds 100, everyone else 0.
            return 100 if user_id == self.creator else 0
        users = self.content.get("users")
        if isinstance(users, dict) and user_id in users:
            return _as_int(users[user_id], self.level("users_default"))
        return self.level("users_default")

    def event_level(self, event_type: str, is_state: bool) -> int:
        events = self.content.get("events")
        if isinstance(events, dict) and event_type in events:
            return _as_int(events[event_type], 0)
        return self.level("state_default" if is_state else "events_default")

    def require(self, user_id: str, needed: int, action: str) -> None:
        if self.user_level(user_id) < needed:
            raise Forbidden(f"You do not have permission to {action}")

    def check_change(self, sender: str, new: JsonDict) -> None:
        """Auth rules for a new m.room.power_levels event sent by `sender`."""
        mine = self.user_level(sender)
        new_pl = PowerLevels(new)
        for key in _DEFAULTS:
            old_level, new_level = self.level(key), new_pl.level(key)
            if old_level != new_level and max(old_level, new_level) > mine:
                raise Forbidden(f"You cannot change '{key}' above your own power level")
        for section in ("events", "users"):
            old_map = self.content.get(section) if self.creator is None else {}
            new_map = new.get(section)
            old_d = old_map if isinstance(old_map, dict) else {}
            new_d = new_map if isinstance(new_map, dict) else {}
            for name in set(old_d) | set(new_d):
                old_value = _as_int(old_d.get(name), -(10**9)) if name in old_d else None
                new_value = _as_int(new_d.get(name), -(10**9)) if name in new_d else None
                if old_value == new_value:
                    continue
                for value in (old_value, new_value):
                    if value is not None and value > mine:
                        raise Forbidden(
                            f"You cannot change {section} '{name}' above your own power level"
                        )
                if (
                    section == "users"
                    and name != sender
                    and old_value is not None
                    and old_value >= mine
                ):
                    raise Forbidden("You cannot change the power level of an equal or higher user")


def validate_power_levels(content: JsonDict) -> None:
    """Reject power_levels content clients could not have meant (non-integer levels)."""
    for key in _DEFAULTS:
        if key in content and (not isinstance(content[key], int) or isinstance(content[key], bool)):
            raise BadJson(f"power level '{key}' must be an integer")
    for section in ("events", "users", "notifications"):
        value = content.get(section)
        if value is None:
            continue
        if not isinstance(value, dict) or any(
            not isinstance(v, int) or isinstance(v, bool) for v in value.values()
        ):
            raise BadJson(f"power levels '{section}' must map names to integers")
