"""Configuration: defaults < TOML file < HOMESERVER_<KEY> environment < command-line flags.

Parsed once into a frozen dataclass; a bad value raises ConfigError naming the key.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends import StorageTimeouts, UnsupportedStorageUrl, check_storage_url
from homeserver.types import LOCALPART_RE, is_user_id
from plugins.loader import PluginSpec

ENV_PREFIX = "HOMESERVER_"
_SERVER_NAME_RE = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


class ConfigError(ValueError):
    """A configuration value is missing, malformed or out of range."""


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8008
    server_name: str = "localhost"
    storage: str = "sqlite:///homeserver.db"
    # A silent store (a network partition) answers 503 within these, never hangs.
    storage_connect_timeout_ms: int = 5000
    storage_timeout_ms: int = 5000
    # Backstop for the handling of one request (a /sync adds its long-poll wait); 0: none.
    request_timeout_ms: int = 30_000
    registration: str = "open"
    max_request_bytes: int = 1_048_576
    keep_alive_timeout_s: float = 5.0
    log_level: str = "info"
    # argon2id cost; the defaults are argon2-cffi's (RFC 9106 low-memory profile).
    password_hash_time_cost: int = 3
    password_hash_memory_kib: int = 65536
    sync_timeout_cap_ms: int = 300_000
    default_room_version: str = "10"
    sessions_enabled: bool = True
    session_timeout_ms: int = 60_000
    session_touch_coalesce_ms: int = 1000
    typing_timeout_cap_ms: int = 30_000
    presence_enabled: bool = True
    migrate_on_start: bool = True
    # Stripped state shared with invitees (a room's policy event may narrow it).
    invite_state_types: tuple[str, ...] = (
        "m.room.create",
        "m.room.name",
        "m.room.topic",
        "m.room.avatar",
        "m.room.join_rules",
        "m.room.canonical_alias",
        "m.room.encryption",
    )
    plugins: tuple[PluginSpec, ...] = ()
    plugin_timeout_ms: int = 2000
    # Users who may use the admin API (server events, server notices).
    admins: tuple[str, ...] = ()
    # Server events with a text body also go, as messages, to per-user notices rooms.
    server_notices: bool = True
    server_notices_localpart: str = "server"

    @property
    def storage_timeouts(self) -> StorageTimeouts:
        """The storage timeouts, as `backends.open_storage` takes them."""
        return StorageTimeouts(
            connect_ms=self.storage_connect_timeout_ms, operation_ms=self.storage_timeout_ms
        )


def _int_in(lo: int, hi: int) -> Callable[[str, Any], int]:
    def parse(key: str, value: Any) -> int:
        if isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{key}': expected an integer, got {value!r}") from None
        if isinstance(value, float) and value != number:
            raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
        if not lo <= number <= hi:
            raise ConfigError(f"config key '{key}': must be between {lo} and {hi}, got {number}")
        return number

    return parse


def _positive_float(key: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key '{key}': expected a number, got {value!r}") from None
    if isinstance(value, bool) or not number > 0:
        raise ConfigError(f"config key '{key}': must be a positive number, got {value!r}")
    return number


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f"config key '{key}': expected true or false, got {value!r}")


def _string_list(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):  # from the environment: comma-separated
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"config key '{key}': expected a list of strings, got {value!r}")
    return tuple(value)


def _localpart(key: str, value: Any) -> str:
    if not isinstance(value, str) or not LOCALPART_RE.fullmatch(value) or "/" in value:
        raise ConfigError(f"config key '{key}': not a valid user name: {value!r}")
    return value


def _user_ids(key: str, value: Any) -> tuple[str, ...]:
    ids = _string_list(key, value)
    for user_id in ids:
        if not is_user_id(user_id):
            raise ConfigError(f"config key '{key}': not a user id: {user_id!r}")
    return ids


def _plugins(key: str, value: Any) -> tuple[PluginSpec, ...]:
    """The `plugins` list: tables of {module = "pkg.mod:Class", config = {...}}."""
    if not isinstance(value, list):
        raise ConfigError(f"config key '{key}': expected a list of plugin tables")
    specs = []
    for index, entry in enumerate(value):
        where = f"config key '{key}[{index}]'"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a table with 'module' and 'config'")
        unknown = set(entry) - {"module", "config"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        module = entry.get("module")
        if not isinstance(module, str) or module.count(":") != 1:
            raise ConfigError(f"{where}: 'module' must be \"package.module:Class\"")
        config = entry.get("config", {})
        if not isinstance(config, dict):
            raise ConfigError(f"{where}: 'config' must be a table")
        specs.append(PluginSpec(module, config))
    return tuple(specs)


def _string(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"config key '{key}': expected a non-empty string, got {value!r}")
    return value


def _choice(*choices: str) -> Callable[[str, Any], str]:
    def parse(key: str, value: Any) -> str:
        if value not in choices:
            raise ConfigError(
                f"config key '{key}': must be one of {', '.join(choices)}, got {value!r}"
            )
        return str(value)

    return parse


def _server_name(key: str, value: Any) -> str:
    if not isinstance(value, str) or not _SERVER_NAME_RE.fullmatch(value) or len(value) > 230:
        raise ConfigError(f"config key '{key}': not a valid server name: {value!r}")
    return value


def _storage_url(key: str, value: Any) -> str:
    url = _string(key, value)
    try:
        check_storage_url(url)
    except UnsupportedStorageUrl as exc:
        raise ConfigError(f"config key '{key}': {exc}") from None
    return url


_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "host": _string,
    "port": _int_in(0, 65535),
    "server_name": _server_name,
    "storage": _storage_url,
    "storage_connect_timeout_ms": _int_in(1, 600_000),
    "storage_timeout_ms": _int_in(1, 600_000),
    "request_timeout_ms": _int_in(0, 3_600_000),
    "registration": _choice("open", "disabled"),
    "max_request_bytes": _int_in(1024, 1 << 30),
    "keep_alive_timeout_s": _positive_float,
    "log_level": _choice("debug", "info", "warning", "error"),
    "password_hash_time_cost": _int_in(1, 100),
    "password_hash_memory_kib": _int_in(64, 4 << 20),
    "sync_timeout_cap_ms": _int_in(0, 3_600_000),
    "default_room_version": _choice("10", "11"),
    "sessions_enabled": _bool,
    "session_timeout_ms": _int_in(1000, 86_400_000),
    "session_touch_coalesce_ms": _int_in(0, 60_000),
    "typing_timeout_cap_ms": _int_in(1000, 600_000),
    "presence_enabled": _bool,
    "migrate_on_start": _bool,
    "invite_state_types": _string_list,
    "plugins": _plugins,
    "plugin_timeout_ms": _int_in(1, 600_000),
    "admins": _user_ids,
    "server_notices": _bool,
    "server_notices_localpart": _localpart,
}
assert set(_PARSERS) == {f.name for f in dataclasses.fields(Config)}


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the config from a TOML file, the environment and explicit overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        for key, value in data.items():
            if key not in _PARSERS:
                raise ConfigError(f"config key '{key}': unknown key in {path}")
            raw[key] = value
    for name, value in (os.environ if env is None else env).items():
        if name.startswith(ENV_PREFIX):
            key = name[len(ENV_PREFIX) :].lower()
            if key in _PARSERS:
                raw[key] = value
    for key, value in (overrides or {}).items():
        if value is not None:
            if key not in _PARSERS:
                raise ConfigError(f"config key '{key}': unknown key")
            raw[key] = value
    return Config(**{key: _PARSERS[key](key, value) for key, value in raw.items()})
