"""Hypercorn must close connections: after `Connection: close` and after the keep-alive
timeout. Quart-Trio on Hypercorn's trio worker never does unless the final response
send is shielded (homeserver/asgi.py); these tests hang-fail without that."""

from __future__ import annotations

import trio

from tests.e2e.conftest import LiveServerFactory


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    return host, int(port)


async def _read_response(stream: trio.SocketStream) -> bytes:
    """Read one response with a Content-Length body; returns the whole of it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        assert chunk, "connection closed before the response headers"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = await stream.receive_some(65536)
        assert chunk, "connection closed inside the body"
        body += chunk
    return head + b"\r\n\r\n" + body


async def _closed_by_server(stream: trio.SocketStream) -> bool:
    return await stream.receive_some(1) == b""


async def test_connection_close_header_closes(live_server_factory: LiveServerFactory) -> None:
    async with live_server_factory() as url:
        stream = await trio.open_tcp_stream(*_host_port(url))
        async with stream:
            await stream.send_all(
                b"GET /_matrix/client/versions HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
            )
            with trio.fail_after(5):
                response = await _read_response(stream)
                assert response.startswith(b"HTTP/1.1 200")
                assert await _closed_by_server(stream)


async def test_keep_alive_timeout_closes_idle_connection(
    live_server_factory: LiveServerFactory,
) -> None:
    async with live_server_factory(keep_alive_timeout_s=0.5) as url:
        stream = await trio.open_tcp_stream(*_host_port(url))
        async with stream:
            for _ in range(2):  # the connection is reused while active ...
                await stream.send_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: t\r\n\r\n")
                with trio.fail_after(5):
                    assert (await _read_response(stream)).startswith(b"HTTP/1.1 200")
            started = trio.current_time()
            with trio.fail_after(5):  # ... and closed once idle past the timeout
                assert await _closed_by_server(stream)
            assert trio.current_time() - started >= 0.4


async def test_error_responses_also_close(live_server_factory: LiveServerFactory) -> None:
    async with live_server_factory() as url:
        stream = await trio.open_tcp_stream(*_host_port(url))
        async with stream:
            await stream.send_all(b"GET /nowhere HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            with trio.fail_after(5):
                response = await _read_response(stream)
                assert response.startswith(b"HTTP/1.1 404")
                assert b"M_UNRECOGNIZED" in response
                assert await _closed_by_server(stream)
