"""Loading plugins named in the config: import, validate config, build with a façade."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from plugins.api import PluginApi, PluginConfigError


class PluginLoadError(Exception):
    """A plugin cannot be loaded; the message is one line naming the plugin."""


@dataclass(frozen=True)
class PluginSpec:
    """One entry of the `plugins` config list."""

    module: str
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadedPlugin:
    name: str
    instance: object


def load_plugins(
    specs: Sequence[PluginSpec], make_api: Callable[[str], PluginApi]
) -> list[LoadedPlugin]:
    """Build every plugin in order. Raises PluginLoadError naming the plugin (and the
    config key, when its parse_config names one)."""
    loaded = []
    for spec in specs:
        name = spec.module
        module_name, _, attr = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise PluginLoadError(f"plugin {name}: cannot import {module_name}: {exc}") from None
        cls = getattr(module, attr, None)
        if not callable(cls):
            raise PluginLoadError(f"plugin {name}: {module_name} has no class {attr}")
        parse = getattr(cls, "parse_config", None)
        try:
            config = parse(dict(spec.config)) if callable(parse) else dict(spec.config)
        except PluginConfigError as exc:
            raise PluginLoadError(f"plugin {name}: {exc}") from None
        except (TypeError, ValueError, KeyError) as exc:
            raise PluginLoadError(f"plugin {name}: invalid config: {exc}") from None
        try:
            instance = cls(config, make_api(name))
        except PluginConfigError as exc:
            raise PluginLoadError(f"plugin {name}: {exc}") from None
        loaded.append(LoadedPlugin(name, instance))
    return loaded
