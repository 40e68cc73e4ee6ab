"""Shared helpers of the built-in plugin tests (imported by the test_builtin_* files),
and the checks common to all four built-ins: the config examples in their docstrings
load through the real config loader, and config errors name the plugin and key."""

from __future__ import annotations

import re
import textwrap
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from quart.testing import QuartClient

from backends import Storage
from backends.memory import open_memory_storage
from backends.records import JsonDict
from homeserver.app import create_app
from homeserver.clock import Clock
from homeserver.config import load_config
from homeserver.engine import Engine
from plugins.builtin import blocklist, content, first_contact, ratelimit
from plugins.loader import PluginLoadError, PluginSpec
from tests.helpers import Api, Reply, User, make_config, q

RATELIMIT = "plugins.builtin.ratelimit:InviteRateLimit"
BLOCKLIST = "plugins.builtin.blocklist:BlockList"
CONTENT = "plugins.builtin.content:ContentFilter"
FIRST_CONTACT = "plugins.builtin.first_contact:FirstContact"


def engine_with(
    *plugins: tuple[str, Mapping[str, Any]],
    storage: Storage | None = None,
    clock: Clock | None = None,
) -> Engine:
    """An engine with these (module, config) plugins, over `storage` (a fresh memory
    store by default)."""
    specs = tuple(PluginSpec(module, dict(config)) for module, config in plugins)
    return Engine(
        make_config(plugins=specs),
        storage if storage is not None else open_memory_storage(),
        clock=clock,
    )


@asynccontextmanager
async def serve(
    *plugins: tuple[str, Mapping[str, Any]],
    storage: Storage | None = None,
    clock: Clock | None = None,
) -> AsyncIterator[Api]:
    """The app in front of engine_with(...), as a test client. Several may run over
    one storage: like worker processes, or a server restarted with other plugins."""
    app = create_app(engine_with(*plugins, storage=storage, clock=clock))
    async with app.test_app():
        client = app.test_client()
        assert isinstance(client, QuartClient)
        yield Api(client)


def load_error(module: str, config: Mapping[str, Any]) -> str:
    """The start-up error of this plugin config (it must have one)."""
    with pytest.raises(PluginLoadError) as caught:
        engine_with((module, config))
    message = str(caught.value)
    assert message.startswith(f"plugin {module}: "), message
    return message


async def invite(
    api: Api, inviter: User, room_id: str, invitee: User, reason: str | None = None
) -> Reply:
    body: JsonDict = {"user_id": invitee.user_id}
    if reason is not None:
        body["reason"] = reason
    return await api.call("POST", f"rooms/{q(room_id)}/invite", token=inviter, body=body)


async def invite_state(api: Api, user: User, room_id: str) -> list[JsonDict] | None:
    """The invite_state events the user's /sync shows for the room (None: no invite)."""
    body = await api.sync(user)
    room = body.get("rooms", {}).get("invite", {}).get(room_id)
    if room is None:
        return None
    events: list[JsonDict] = room["invite_state"]["events"]
    return events


def shared(events: list[JsonDict], event_type: str, state_key: str = "") -> JsonDict | None:
    """The content of one stripped state event of an invite_state (None: absent)."""
    for event in events:
        if event["type"] == event_type and event["state_key"] == state_key:
            found: JsonDict = event["content"]
            return found
    return None


async def join(api: Api, user: User, room_id: str) -> None:
    reply = await api.call("POST", f"rooms/{q(room_id)}/join", token=user, body={})
    assert reply.status == 200, reply.body


async def send(api: Api, user: User, room_id: str, body: str, txn_id: str) -> Reply:
    return await api.call(
        "PUT",
        f"rooms/{q(room_id)}/send/m.room.message/{txn_id}",
        token=user,
        body={"msgtype": "m.text", "body": body},
    )


async def timeline_bodies(api: Api, user: User, room_id: str) -> list[str]:
    """The message bodies the user's /sync shows in a joined room's timeline."""
    body = await api.sync(user)
    room = body["rooms"]["join"][room_id]
    return [
        e["content"]["body"] for e in room["timeline"]["events"] if e["type"] == "m.room.message"
    ]


# -- common to the four built-ins -----------------------------------------------------


def _toml_example(module: ModuleType) -> str:
    """The TOML block after the '::' of a module docstring."""
    doc = module.__doc__
    assert doc is not None
    block = doc.split("::\n", 1)[1]
    lines = []
    for line in block.splitlines()[1:]:
        if line and not line.startswith(" "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines))


@pytest.mark.parametrize("module", [ratelimit, blocklist, content, first_contact])
async def test_docstring_config_example_loads(module: ModuleType, tmp_path: Path) -> None:
    """Each plugin's documented config is valid TOML the server loads and builds."""
    path = tmp_path / "homeserver.toml"
    path.write_text('storage = "memory://"\n' + _toml_example(module))
    config = load_config(path, env={})
    assert len(config.plugins) == 1
    assert re.fullmatch(
        rf"plugins\.builtin\.{module.__name__.rsplit('.', 1)[1]}:\w+", config.plugins[0].module
    )
    engine = Engine(config, open_memory_storage())
    assert [p.name for p in engine.plugins.plugins] == [config.plugins[0].module]


@pytest.mark.parametrize("module", [RATELIMIT, BLOCKLIST, CONTENT, FIRST_CONTACT])
def test_unknown_top_level_key_is_refused(module: str) -> None:
    config: dict[str, Any] = {"nonsense": 1}
    if module == RATELIMIT:
        config["inviter"] = {"capacity": 1, "per_second": 1}
    message = load_error(module, config)
    assert "config key 'nonsense': unknown key" in message
