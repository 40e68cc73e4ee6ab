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

from backends import fresh
from tests.services import backend_params, require_postgres, require_redis

DURABLE = backend_params(fresh.DURABLE)
NETWORKED = backend_params(fresh.NETWORKED)


@pytest.fixture(params=DURABLE)
def durable_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, empty store of each durable backend; removed afterwards."""
    yield from _fresh_store(request.param, tmp_path)


@pytest.fixture(params=NETWORKED)
def networked_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Like durable_url, for the backends reached over a network connection."""
    yield from _fresh_store(request.param, tmp_path)


def _fresh_store(name: str, tmp_path: Path) -> Iterator[str]:
    if name == "postgresql":
        admin = require_postgres()
        with fresh.fresh_store(name, tmp_path, "e2e", postgres_url=admin) as url:
            yield url
    elif name == "redis":
        with fresh.fresh_store(name, tmp_path, "e2e", redis_url=require_redis()) as url:
            yield url
    else:
        with fresh.fresh_store(name, tmp_path, "e2e") as url:
            yield url


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
