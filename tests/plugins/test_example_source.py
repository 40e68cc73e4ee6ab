"""The documented example event source is the file, and it works."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing
from quart.testing import QuartClient

from backends.memory import open_memory
from homeserver.app import create_app
from homeserver.clock import TrioClock
from homeserver.engine import Engine
from plugins.loader import PluginSpec
from tests.helpers import Api, User, make_config

ROOT = Path(__file__).resolve().parents[2]
SPEC = PluginSpec(
    "plugins.examples.maintenance_reminder:MaintenanceReminder", {"text": "Sunday 02:00"}
)


def test_readme_shows_the_example_verbatim() -> None:
    example = (ROOT / "plugins/examples/maintenance_reminder.py").read_text()
    assert example in (ROOT / "plugins/README.md").read_text()


async def test_example_greets_new_sessions_and_reminds_hourly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_memory("memory://") as storage:
        engine = Engine(make_config(plugins=(SPEC,)), storage, TrioClock())
        app = create_app(engine)
        async with app.test_app():
            client = app.test_client()
            assert isinstance(client, QuartClient)
            api = Api(client)
            # Before the loops start: hashing runs in a thread, and while it does the
            # autojump clock would move the hourly loop on.
            alice = await api.register("alice")
            await _greeting_then_hourly(engine, api, alice)


async def _greeting_then_hourly(engine: Engine, api: Api, alice: User) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.run)
        first = await api.sync(alice)  # starts alice's session: the greeting follows
        await trio.testing.wait_all_tasks_blocked()
        greeted = await api.sync(alice, since=first["next_batch"])
        events = first["server_events"]["events"] + greeted["server_events"]["events"]
        assert [e["content"]["body"] for e in events] == ["Sunday 02:00"]
        assert events[0]["type"] == "org.example.maintenance"
        await trio.sleep(3600)  # the mock clock: no real time passes
        hourly = await api.sync(alice, since=greeted["next_batch"])
        assert [e["content"] for e in hourly["server_events"]["events"]] == [
            {"body": "Sunday 02:00"}
        ]
        nursery.cancel_scope.cancel()
