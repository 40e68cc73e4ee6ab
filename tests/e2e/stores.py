"""Fresh durable stores for end-to-end tests, and a server run as a real process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from sqlalchemy.engine import make_url

from tests.conformance.support import _create_database, delete_redis_prefix, execute
from tests.services import require_postgres, require_redis, unique_name

DURABLE = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]


NETWORKED = DURABLE[1:]


@pytest.fixture(params=DURABLE)
def durable_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, empty store of each durable backend; removed afterwards."""
    yield from _fresh_store(request.param, tmp_path)


@pytest.fixture(params=NETWORKED)
def networked_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Like durable_url, for the backends reached over a network connection."""
    yield from _fresh_store(request.param, tmp_path)


def _fresh_store(name: str, tmp_path: Path) -> Iterator[str]:
    if name == "sqlite":
        yield f"sqlite:///{tmp_path / 'durable.db'}"
    elif name == "postgresql":
        admin = require_postgres()
        database = unique_name("hs_e2e")
        _create_database(admin, database)
        try:
            yield make_url(admin).set(database=database).render_as_string(hide_password=False)
        finally:
            execute(admin, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    else:
        base = require_redis()
        prefix = unique_name("hs_e2e")
        try:
            yield f"{base}?prefix={prefix}"
        finally:
            trio.run(delete_redis_prefix, base, prefix)


_LISTENING = re.compile(rb"listening on (http://[0-9.]+:[0-9]+)")


class ServerProcess:
    def __init__(self, process: trio.Process, url: str) -> None:
        self.process = process
        self.url = url

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        self.process.kill()
        with trio.fail_after(10):
            await self.process.wait()

    async def stop(self) -> int:
        """SIGINT (Ctrl-C): a graceful shutdown; returns the exit code."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
            with trio.move_on_after(15):
                await self.process.wait()
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
        assert self.process.returncode is not None
        return self.process.returncode


@asynccontextmanager
async def server_process(
    storage: str, *extra: str, cwd: Path, program: Sequence[str] = ("-m", "homeserver")
) -> AsyncIterator[ServerProcess]:
    """`python -m homeserver serve` on a random port; yields once it listens. `program`
    replaces `-m homeserver` (e.g. tests/e2e/crashing_server.py)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMESERVER_")}
    env.update(
        HOMESERVER_PASSWORD_HASH_TIME_COST="1",
        HOMESERVER_PASSWORD_HASH_MEMORY_KIB="64",
    )
    process = await trio.lowlevel.open_process(
        [
            sys.executable,
            *program,
            "serve",
            "--port",
            "0",
            "--storage",
            storage,
            "--server-name",
            "durable.test",
            *extra,
        ],
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=env,
    )
    assert process.stderr is not None
    output = b""
    server: ServerProcess | None = None
    try:
        with trio.fail_after(30):
            while (match := _LISTENING.search(output)) is None:
                chunk = await process.stderr.receive_some(4096)
                assert chunk, f"server exited before listening: {output.decode()!r}"
                output += chunk
        server = ServerProcess(process, match.group(1).decode())
        async with trio.open_nursery() as nursery:
            # Keep draining stderr so the server never blocks on a full pipe.
            nursery.start_soon(_drain, process.stderr)
            yield server
            nursery.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()


async def _drain(stream: trio.abc.ReceiveStream) -> None:
    while await stream.receive_some(65536):
        pass
