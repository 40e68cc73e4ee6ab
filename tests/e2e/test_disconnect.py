"""A client that disconnects during a long-poll cancels its handler: the request's end
is booked in its session at once, not at the long-poll's timeout."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio

import homeserver.server
from homeserver.engine import Engine
from tests.helpers import make_config


async def test_disconnect_cancels_a_waiting_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    engines: list[Engine] = []

    class RecordedEngine(Engine):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            engines.append(self)

    monkeypatch.setattr(homeserver.server, "Engine", RecordedEngine)
    stop = trio.Event()
    config = make_config(host="127.0.0.1", port=0)
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            lambda *, task_status: homeserver.server.serve(
                config, shutdown_trigger=stop.wait, task_status=task_status
            )
        )
        base = binds[0]
        (engine,) = engines
        async with httpx.AsyncClient(timeout=10) as http:
            reply = await http.post(
                base + "/_matrix/client/v3/register",
                json={"username": "alice", "password": "pw", "auth": {"type": "m.login.dummy"}},
            )
            token = reply.json()["access_token"]
            since = (
                await http.get(
                    base + "/_matrix/client/v3/sync", headers={"Authorization": f"Bearer {token}"}
                )
            ).json()["next_batch"]
        host, port = base.split("://", 1)[1].rsplit(":", 1)
        stream = await trio.open_tcp_stream(host, int(port))
        request = (
            f"GET /_matrix/client/v3/sync?timeout=30000&since={since} HTTP/1.1\r\n"
            f"Host: t\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        await stream.send_all(request.encode())
        with trio.fail_after(5):
            # Polling: the server has nothing to signal this with.
            while engine.sessions.in_flight_requests != 1:  # noqa: ASYNC110
                await trio.sleep(0.01)
        started = trio.current_time()
        await stream.aclose()
        with trio.fail_after(5):
            while engine.sessions.in_flight_requests != 0:  # noqa: ASYNC110
                await trio.sleep(0.01)
        assert trio.current_time() - started < 5  # not the 30 s long-poll timeout
        stop.set()
