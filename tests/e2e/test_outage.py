"""When PostgreSQL or Redis goes away, requests answer 503 M_UNAVAILABLE (no 500, no
hang), the server keeps running and recovers by itself when the store comes back.
That holds for a store that stops answering without closing anything (a network
partition, simulated by a proxy that stops forwarding: the kernel still ACKs, so no TCP
timer fires and only our deadlines do). Starting against an unreachable store fails
with one clear line."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import trio
from sqlalchemy.engine import make_url

from backends import BackendUnavailable, Storage, StorageTimeouts, open_storage
from tests.e2e.conftest import LiveServerFactory
from tests.e2e.proxy import CuttableProxy
from tests.e2e.stores import networked_url  # noqa: F401 (fixture)

V3 = "/_matrix/client/v3"
# Short timeouts, and an upper bound with slack for a loaded machine. PostgreSQL counts
# connect timeouts in whole seconds, at least 2, but the operation deadline (1 s)
# bounds a connection attempt too.
TIMEOUT_MS = 1000
BOUND_S = 2.5
SHORT = StorageTimeouts(connect_ms=TIMEOUT_MS, operation_ms=TIMEOUT_MS)
ALICE = "@alice:example.org"


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


async def _account_data(http: httpx.AsyncClient, base: str, token: str) -> httpx.Response:
    """A request that must reach the store (account data is not in the read model)."""
    return await http.get(
        base + V3 + "/user/@alice:test.local/account_data/org.example.probe",
        headers={"Authorization": f"Bearer {token}"},
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
        put = await http.put(
            base + V3 + "/user/@alice:test.local/account_data/org.example.probe",
            headers={"Authorization": f"Bearer {token}"},
            json={"x": 1},
        )
        assert put.status_code == 200, put.text

        proxy.cut()
        with trio.fail_after(25):  # a bounded answer, not a hang
            down = await _account_data(http, base, token)
        assert down.status_code == 503, down.text
        assert down.headers["content-type"] == "application/json"
        assert down.json()["errcode"] == "M_UNAVAILABLE"
        assert "error" in down.json()
        # The read model still knows the token: whoami needs no store.
        with trio.fail_after(25):
            cached = await _whoami(http, base, token)
        assert cached.status_code == 200, cached.text

        proxy.restore()
        with trio.fail_after(30):
            while (up := await _account_data(http, base, token)).status_code != 200:
                assert up.status_code == 503, up.text
                await trio.sleep(0.2)
        assert up.json() == {"x": 1}


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


# -- a silent store ---------------------------------------------------------------------


async def _put(storage: Storage, value: object) -> None:
    await storage.account_data.put_account_data(ALICE, None, "org.example.t", {"v": value})


async def _get(storage: Storage) -> object:
    content = await storage.account_data.get_account_data(ALICE, None, "org.example.t")
    return None if content is None else content["v"]


async def _timed_unavailable(operation: Callable[[], Awaitable[object]]) -> float:
    """Run `operation`, which must raise BackendUnavailable; the seconds it took."""
    started = trio.current_time()
    with pytest.raises(BackendUnavailable):
        await operation()
    return trio.current_time() - started


async def _cut_after(proxy: CuttableProxy, seconds: float) -> None:
    """Without deadlines, operations wait for as long as the stall lasts, and a worker
    thread blocked on its socket cannot be cancelled: end the stall by cutting every
    connection, so that such a test fails rather than hangs."""
    await trio.sleep(seconds)
    proxy.cut()


async def _until_up(operation: Callable[[], Awaitable[object]]) -> object:
    """Retry `operation` until the store answers again (bounded)."""
    with trio.fail_after(15):
        while True:
            try:
                return await operation()
            except BackendUnavailable:
                await trio.sleep(0.1)


@pytest.mark.parametrize("then_cut", [False, True], ids=["resumed", "dropped"])
async def test_stalled_store_gives_unavailable_within_the_timeout_then_recovers(
    networked_url: str,  # noqa: F811
    proxy: CuttableProxy,
    then_cut: bool,
) -> None:
    """Every operation on a silent store raises BackendUnavailable within the operation
    timeout: on a pooled connection, on a new one, more operations than the pool has
    connections, and a caller cancelled meanwhile. When the store answers again (the
    stalled connections resume, or are dropped), operations succeed by themselves."""
    async with open_storage(_through(networked_url, proxy.port), timeouts=SHORT) as storage:
        await _put(storage, "before")
        assert await _get(storage) == "before"

        proxy.stall()
        durations: list[float] = []

        async def one(i: int) -> None:
            operation = (lambda: _put(storage, i)) if i % 2 else (lambda: _get(storage))
            durations.append(await _timed_unavailable(operation))

        async with trio.open_nursery() as guard:
            guard.start_soon(_cut_after, proxy, 4 * BOUND_S)
            # Twelve at once: more than the SQL pool's eight connections.
            async with trio.open_nursery() as nursery:
                for i in range(12):
                    nursery.start_soon(one, i)
            # Again, now that the first wave's connections are given up.
            durations.append(await _timed_unavailable(lambda: _get(storage)))
            durations.append(await _timed_unavailable(lambda: _put(storage, "lost")))
            # A caller cancelled mid-operation hears so within the deadline too.
            started = trio.current_time()
            with trio.move_on_after(0.1):
                await _put(storage, "cancelled")
            durations.append(trio.current_time() - started)
            guard.cancel_scope.cancel()
        assert max(durations) < BOUND_S, durations

        if then_cut:
            proxy.cut()
        proxy.restore()
        await _until_up(lambda: _get(storage))
        with trio.fail_after(BOUND_S):
            await _put(storage, "after")
            assert await _get(storage) == "after"


async def test_stalled_store_gives_503_within_the_timeout_then_recovers(
    networked_url: str,  # noqa: F811
    proxy: CuttableProxy,
    live_server_factory: LiveServerFactory,
) -> None:
    storage = _through(networked_url, proxy.port)
    async with (
        live_server_factory(
            storage=storage,
            storage_timeout_ms=TIMEOUT_MS,
            storage_connect_timeout_ms=TIMEOUT_MS,
        ) as base,
        httpx.AsyncClient(timeout=30) as http,
    ):
        reply = await http.post(
            base + V3 + "/register",
            json={"username": "alice", "password": "pw", "auth": {"type": "m.login.dummy"}},
        )
        assert reply.status_code == 200, reply.text
        token = reply.json()["access_token"]
        assert (await _whoami(http, base, token)).status_code == 200
        put = await http.put(
            base + V3 + "/user/@alice:test.local/account_data/org.example.probe",
            headers={"Authorization": f"Bearer {token}"},
            json={"x": 1},
        )
        assert put.status_code == 200, put.text

        proxy.stall()
        answers: list[tuple[float, httpx.Response]] = []

        async def one() -> None:
            started = trio.current_time()
            down = await _account_data(http, base, token)
            answers.append((trio.current_time() - started, down))

        async with trio.open_nursery() as guard:
            guard.start_soon(_cut_after, proxy, 4 * BOUND_S)  # a bounded answer, not a hang
            async with trio.open_nursery() as nursery:
                for _ in range(10):
                    nursery.start_soon(one)
            guard.cancel_scope.cancel()
        for took, down in answers:
            assert down.status_code == 503, down.text
            assert down.headers["content-type"] == "application/json"
            assert down.headers["retry-after"] == "1"
            assert down.json()["errcode"] == "M_UNAVAILABLE"
            assert took < BOUND_S, [took for took, _ in answers]

        proxy.restore()
        with trio.fail_after(15):
            while (up := await _account_data(http, base, token)).status_code != 200:
                assert up.status_code == 503, up.text
                await trio.sleep(0.2)
        assert up.json() == {"x": 1}
