"""Reading a built-in plugin's config table: typed getters that raise PluginConfigError
naming the (dotted) key, and a final check that no unknown key is left."""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from typing import Any

from plugins.api import PluginConfigError

_ERRCODE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.]*")
_MISSING = object()


class ConfigReader:
    """One config table. Each getter consumes its key; `finish()` refuses the rest."""

    def __init__(self, raw: object, path: str = "") -> None:
        if not isinstance(raw, Mapping):
            raise PluginConfigError(path or "config", "expected a table")
        self._raw: Mapping[str, Any] = raw
        self._path = path
        self._seen: set[str] = set()

    def key(self, name: str) -> str:
        """The full key of `name` for error messages, e.g. "inviter.capacity"."""
        return f"{self._path}.{name}" if self._path else name

    def error(self, name: str, message: str) -> PluginConfigError:
        return PluginConfigError(self.key(name), message)

    def has(self, name: str) -> bool:
        return name in self._raw

    def _get(self, name: str) -> Any:
        self._seen.add(name)
        return self._raw.get(name, _MISSING)

    def finish(self) -> None:
        unknown = sorted(str(k) for k in self._raw if k not in self._seen)
        if unknown:
            raise self.error(unknown[0], f"unknown key (known: {', '.join(sorted(self._seen))})")

    # -- scalars ------------------------------------------------------------------------

    def string(self, name: str, default: str) -> str:
        value = self._get(name)
        if value is _MISSING:
            return default
        if not isinstance(value, str) or not value:
            raise self.error(name, "expected a non-empty string")
        return value

    def choices(
        self, name: str, options: Collection[str], default: Collection[str]
    ) -> frozenset[str]:
        """A list whose items are all among `options`."""
        value = self._get(name)
        if value is _MISSING:
            return frozenset(default)
        if not isinstance(value, list) or not all(v in options for v in value):
            raise self.error(name, f"expected a list of: {', '.join(options)}")
        return frozenset(value)

    def choice(self, name: str, options: Collection[str], default: str) -> str:
        value = self._get(name)
        if value is _MISSING:
            return default
        if value not in options:
            raise self.error(name, f"expected one of {', '.join(map(repr, options))}")
        assert isinstance(value, str)
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self._get(name)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            raise self.error(name, "expected true or false")
        return value

    def integer(self, name: str, *, minimum: int) -> int | None:
        value = self._get(name)
        if value is _MISSING:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(name, f"expected an integer >= {minimum}")
        return value

    def number(self, name: str, *, minimum: float, exclusive: bool = False) -> float:
        """A required finite number >= minimum (> minimum if exclusive)."""
        value = self._get(name)
        if value is _MISSING:
            raise self.error(name, "missing")
        low_ok = (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and (value > minimum if exclusive else value >= minimum)
        )
        if not low_ok:
            bound = f"> {minimum:g}" if exclusive else f">= {minimum:g}"
            raise self.error(name, f"expected a number {bound}")
        return float(value)

    def errcode(self, name: str, default: str) -> str:
        value = self.string(name, default)
        if not _ERRCODE_RE.fullmatch(value):
            raise self.error(name, "expected an errcode such as M_FORBIDDEN")
        return value

    # -- containers ---------------------------------------------------------------------

    def string_list(self, name: str) -> list[str]:
        value = self._get(name)
        if value is _MISSING:
            return []
        if not isinstance(value, list):
            raise self.error(name, "expected a list of strings")
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item:
                raise self.error(f"{name}[{index}]", "expected a non-empty string")
        return list(value)

    def table(self, name: str) -> ConfigReader | None:
        value = self._get(name)
        if value is _MISSING:
            return None
        return ConfigReader(value, self.key(name))

    def list_items(self, name: str) -> list[tuple[str, Any]]:
        """The items of a list, each with its full key (e.g. "patterns[2]")."""
        value = self._get(name)
        if value is _MISSING:
            return []
        if not isinstance(value, list):
            raise self.error(name, "expected a list")
        return [(f"{self.key(name)}[{index}]", item) for index, item in enumerate(value)]
