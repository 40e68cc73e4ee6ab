"""When PostgreSQL or Redis goes away, requests answer 503 M_UNAVAILABLE (no 500, no
hang), the server keeps running and recovers by itself when the store comes back.
Starting against an unreachable store fails with one clear line."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import trio
from sqlalchemy.engine import make_url

from tests.e2e.conftest import LiveServerFactory
from tests.e2e.proxy import CuttableProxy
from tests.e2e.stores import networked_url  # noqa: F401 (fixture)

V3 = "/_matrix/client/v3"


def _through(url: str, port: int) -> str:
    """The same store URL, pointed at the proxy's port."""
    if url.startswith("postgresql"):
        return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}"))


def _target(url: str) -> tuple[str, int]:
    if url.startswith("postgresql"):
        parsed = make_url(url)
        return parsed.host or "127.0.0.1", parsed.port or 5432
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


@pytest.fixture
async def proxy(networked_url: str) -> AsyncIterator[CuttableProxy]:  # noqa: F811
    async with trio.open_nursery() as nursery:
        p = CuttableProxy(*_target(networked_url))
        await nursery.start(p.run)
        yield p
        nursery.cancel_scope.cancel()


async def _whoami(http: httpx.AsyncClient, base: str, token: str) -> httpx.Response:
    return await http.get(
        base + V3 + "/account/whoami", headers={"Authorization": f"Bearer {token}"}
    )


async def test_store_outage_gives_503_then_recovers(
    networked_url: str,  # noqa: F811
    proxy: CuttableProxy,
    live_server_factory: LiveServerFactory,
) -> None:
    storage = _through(networked_url, proxy.port)
    async with live_server_factory(storage=storage) as base, httpx.AsyncClient(timeout=30) as http:
        reply = await http.post(
            base + V3 + "/register",
            json={"username": "alice", "password": "pw", "auth": {"type": "m.login.dummy"}},
        )
        assert reply.status_code == 200, reply.text
        token = reply.json()["access_token"]
        assert (await _whoami(http, base, token)).status_code == 200

        proxy.cut()
        with trio.fail_after(25):  # a bounded answer, not a hang
            down = await _whoami(http, base, token)
        assert down.status_code == 503, down.text
        assert down.headers["content-type"] == "application/json"
        assert down.json()["errcode"] == "M_UNAVAILABLE"
        assert "error" in down.json()

        proxy.restore()
        with trio.fail_after(30):
            while (up := await _whoami(http, base, token)).status_code != 200:
                assert up.status_code == 503, up.text
                await trio.sleep(0.2)
        assert up.json()["user_id"] == "@alice:test.local"


@pytest.mark.parametrize(
    "storage",
    ["postgresql://postgres@127.0.0.1:1/nothing", "redis://127.0.0.1:1/0"],
    ids=["postgresql", "redis"],
)
def test_start_with_unreachable_store_fails_with_one_line(storage: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "homeserver", "serve", "--port", "0", "--storage", storage],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("homeserver: cannot open storage ")
    assert "127.0.0.1:1" in lines[0]
