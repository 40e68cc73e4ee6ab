"""homeserver.http_worker: an error that escapes one connection's task ends that
connection only (Hypercorn's own worker lets it end the server)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from hypercorn.config import Config as HypercornConfig

from homeserver.http_worker import serve

pytestmark = pytest.mark.e2e


async def rejecting_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Refuses every WebSocket handshake with a body, as Quart did for us."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
    elif scope["type"] == "websocket":
        await send({"type": "websocket.http.response.start", "status": 400, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"no"})
    else:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})


async def _send(port: int, data: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        received = b""
        with trio.move_on_after(2):
            while data := await stream.receive_some(65536):
                received += data
        return received


UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
GET = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


async def test_an_error_escaping_a_connection_ends_only_that_connection() -> None:
    """A refused handshake with a second request pipelined behind it makes Hypercorn's
    HTTP/1.1 protocol raise h11.LocalProtocolError out of the connection's task."""
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    stop = trio.Event()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(
                lambda *, task_status: serve(
                    rejecting_app, config, shutdown_trigger=stop.wait, task_status=task_status
                )
            )
            port = int(binds[0].rsplit(":", 1)[1])
            for _ in range(5):
                await _send(port, UPGRADE + GET)
                assert (await _send(port, GET)).endswith(b"ok")
            stop.set()
