"""The thin ASGI layer in front of the Quart app.

1. Shields the last `http.response.body` send from cancellation. Quart-Trio cancels
   the request's nursery while Hypercorn's trio worker is still inside that send, which
   leaves every connection open forever (ignoring `Connection: close` and the
   keep-alive timeout). Shielding it (with a short deadline of its own) lets Hypercorn
   finish the response and close or recycle the connection. When the server starts
   shutting down, `drain` shortens those deadlines to the drain period: a send that
   cannot finish (an HTTP/2 stream whose peer sent garbage) must not hold up the exit.
2. Adds CORS headers to every response and answers preflight `OPTIONS` requests
   without entering the app.
3. Refuses a Host header Werkzeug's routing would fail on (400 `M_UNRECOGNIZED`).
4. Refuses WebSocket upgrades without entering the app: the server speaks none, and
   Quart's WebSocket path on Hypercorn is where a client could once end the process.
   The refusal is a 400 `M_UNRECOGNIZED` when the server lets us send a body, else a
   bare close; the connection is not reused either way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("homeserver.http")

FINAL_SEND_DEADLINE_S = 10.0
BAD_HOST = json.dumps({"errcode": "M_UNRECOGNIZED", "error": "Invalid Host header"}).encode()
WEBSOCKET_REFUSAL = json.dumps(
    {"errcode": "M_UNRECOGNIZED", "error": "WebSocket upgrades are not supported"}
).encode()
CORS_HEADERS: list[tuple[bytes, bytes]] = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"GET, HEAD, POST, PUT, DELETE, OPTIONS"),
    (
        b"access-control-allow-headers",
        b"X-Requested-With, Content-Type, Authorization, Date, Matrix-Session",
    ),
    (b"access-control-expose-headers", b"Matrix-Session"),
]


class HomeserverASGI:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._final_send_s = FINAL_SEND_DEADLINE_S
        self._final_sends: set[trio.CancelScope] = set()

    def drain(self, within_s: float) -> None:
        """The server is shutting down: final sends get at most `within_s` more."""
        self._final_send_s = min(self._final_send_s, within_s)
        deadline = trio.current_time() + within_s
        for scope in self._final_sends:
            scope.deadline = min(scope.deadline, deadline)

    async def _final_send(self, send: Send, message: Message) -> None:
        deadline = trio.current_time() + self._final_send_s
        with trio.CancelScope(shield=True, deadline=deadline) as scope:
            self._final_sends.add(scope)
            try:
                await send(message)
            finally:
                self._final_sends.discard(scope)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._refuse_websocket(scope, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not _host_ok(scope):
            await self._respond(send, 400, BAD_HOST)
            return
        if scope["method"] == "OPTIONS":
            await self._respond(send, 200, b"{}")
            return

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *CORS_HEADERS]}
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                await self._final_send(send, message)
                return
            await send(message)

        await self.app(scope, receive, guarded_send)

    async def _respond(self, send: Send, status: int, body: bytes) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *CORS_HEADERS,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await self._final_send(send, {"type": "http.response.body", "body": body})

    async def _refuse_websocket(self, scope: Scope, send: Send) -> None:
        try:
            if "websocket.http.response" in scope.get("extensions", {}):
                headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(WEBSOCKET_REFUSAL)).encode()),
                    *CORS_HEADERS,
                ]
                start = {"type": "websocket.http.response.start", "status": 400}
                await self._final_send(send, {**start, "headers": headers})
                body = {"type": "websocket.http.response.body", "body": WEBSOCKET_REFUSAL}
                await self._final_send(send, body)
            else:
                await self._final_send(send, {"type": "websocket.close"})
        except Exception as exc:
            # The client broke its own connection (e.g. pipelined more bytes after the
            # upgrade): the server has already answered it; nothing else is affected.
            log.debug("WebSocket refusal not delivered: %s: %s", type(exc).__name__, exc)


def _host_ok(scope: Scope) -> bool:
    """Whether the Host header is one Werkzeug can bind to and turn back into a URL:
    it IDNA-encodes the name for routing and IDNA-decodes it for `request.host_url`
    (e.g. "xn--" encodes but does not decode); a failure in either happens outside
    any error handler (an empty 500)."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"host":
            host = value.decode("latin-1").lower().partition(":")[0]
            try:
                host.encode("idna").decode("idna")
            except UnicodeError:
                return False
    return True
