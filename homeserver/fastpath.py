"""The fast path: the hottest routes served straight from ASGI, without Quart.

Quart costs about 400 µs of CPU per request on our machines (a request context, two
tasks and a nursery per request, Werkzeug routing, header and response objects), as
much as Hypercorn itself: a bare Quart-Trio route answers about 1,200 requests/s where
a bare ASGI app under the same Hypercorn worker answers about 2,100. The routes that
clients hit all the time (whoami, typing, presence, versions) are served here instead,
with the very same route logic (`homeserver.api.presence`, `.auth`, `.versions`) and
the same helpers for everything around it (`homeserver.api.plain`: token, body, error
replies), so a route answers the same whichever adapter serves it
(tests/api/test_fastpath.py sends each request through both and compares).

What Quart does around a route is done here too: NUL in the path or query refused,
the request's deadline (`request_timeout_ms`, 503 when it passes; a /sync adds its
wait), the session lease taken by the route and given back (shielded), the
`Matrix-Session` header on every response of a request that ran in a session, the
body limit (`max_request_bytes`, 413), a waiting /sync ended when its client
disconnects. One difference, on purpose: the lease is given back once the response
is sent, not before, so the client does not wait for the session's bookkeeping.
Anything that does not match a fast route exactly (another method, a trailing slash,
HEAD) goes to Quart unchanged.
It sits inside `HomeserverASGI`, which adds CORS and guards the final send.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

import trio
import werkzeug.urls  # registers the "werkzeug.url_quote" codec error handler

from backends.records import JsonDict
from homeserver.api.auth import whoami_json
from homeserver.api.plain import (
    DUMPS,
    NUL_REFUSED,
    TOO_LARGE,
    Reply,
    begin_lease,
    deadline_s,
    error_reply,
    finish_lease,
    has_nul,
    timed_out,
)
from homeserver.api.presence import presence_status, set_presence, set_typing
from homeserver.api.sync import run_sync
from homeserver.api.versions import VERSIONS
from homeserver.asgi import ASGIApp, Receive, Scope, Send
from homeserver.engine import Engine
from homeserver.engine.sessions import SESSION_HEADER, RequestLease
from homeserver.errors import InvalidParam, MatrixError
from homeserver.types import Requester

log = logging.getLogger("homeserver")

_URL_QUOTE = "werkzeug.url_quote"
assert werkzeug.urls  # imported for its side effect
_JSON_HEADERS = [(b"content-type", b"application/json")]


class ClientGone(Exception):
    """The client disconnected before its answer (while sending its body, or while
    its /sync waited)."""


class BodyTooLarge(MatrixError):
    def __init__(self) -> None:
        super().__init__(413, TOO_LARGE["errcode"], TOO_LARGE["error"])


class FastRequest:
    """One request on the fast path: its headers, query and body, read lazily, and the
    session lease its route took."""

    __slots__ = ("_args", "_body", "_engine", "_max_bytes", "_receive", "_scope", "lease")

    def __init__(self, engine: Engine, scope: Scope, receive: Receive) -> None:
        self._engine = engine
        self._scope = scope
        self._receive = receive
        self._max_bytes = engine.config.max_request_bytes
        self._args: dict[str, str] | None = None
        self._body: bytes | None = None
        self.lease: RequestLease | None = None

    def header(self, name: str) -> str | None:
        """The first value of a header, as Quart decodes it (a `plain.Args`)."""
        wanted = name.lower().encode("latin-1")
        for key, value in self._scope["headers"]:
            if key.lower() == wanted:
                text: str = value.decode("latin-1")
                return text
        return None

    def arg(self, name: str) -> str | None:
        """The first value of a query parameter, decoded as Werkzeug does."""
        if self._args is None:
            args: dict[str, str] = {}
            query: bytes = self._scope["query_string"]
            # Werkzeug's own codec error handler: invalid bytes stay percent-encoded.
            text = query.decode("utf-8", _URL_QUOTE)
            for key, value in parse_qsl(text, keep_blank_values=True, errors=_URL_QUOTE):
                args.setdefault(key, value)
            self._args = args
        return self._args.get(name)

    async def requester(self) -> Requester:
        """As `homeserver.api._common.requester`: authenticate, take the lease."""
        self.lease = await begin_lease(self._engine, self.header, self.arg)
        return self.lease.requester

    async def body(self) -> bytes:
        """The whole body (a `plain.BodySource`), at most `max_request_bytes`."""
        if self._body is None:
            chunks: list[bytes] = []
            size = 0
            while True:
                message = await self._receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone()
                chunk: bytes = message.get("body", b"")
                size += len(chunk)
                if size > self._max_bytes:
                    raise BodyTooLarge()
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            self._body = b"".join(chunks)
        return self._body


Handler = Callable[[Engine, FastRequest, tuple[str, ...]], Awaitable[JsonDict]]


async def _versions(_engine: Engine, _request: FastRequest, _params: tuple[str, ...]) -> JsonDict:
    return VERSIONS


async def _whoami(_engine: Engine, request: FastRequest, _params: tuple[str, ...]) -> JsonDict:
    return whoami_json(await request.requester())


async def _get_presence(engine: Engine, request: FastRequest, params: tuple[str, ...]) -> JsonDict:
    return await presence_status(engine, await request.requester(), params[0])


async def _put_presence(engine: Engine, request: FastRequest, params: tuple[str, ...]) -> JsonDict:
    return await set_presence(engine, await request.requester(), params[0], request.body)


async def _sync(engine: Engine, request: FastRequest, _params: tuple[str, ...]) -> JsonDict:
    return await run_sync(engine, await request.requester(), request.arg)


async def _put_typing(engine: Engine, request: FastRequest, params: tuple[str, ...]) -> JsonDict:
    who = await request.requester()
    return await set_typing(engine, who, params[0], params[1], request.body)


_CLIENT = r"/_matrix/client/(?:v3|r0)"
# (method, full-path pattern, handler): the paths of the Quart rules these replace, with
# Werkzeug's default converter (one non-empty segment) for each parameter.
ROUTES: list[tuple[str, re.Pattern[str], Handler]] = [
    ("GET", re.compile(r"/_matrix/client/versions"), _versions),
    ("GET", re.compile(_CLIENT + r"/account/whoami"), _whoami),
    ("GET", re.compile(_CLIENT + r"/sync"), _sync),
    ("PUT", re.compile(_CLIENT + r"/rooms/([^/]+)/typing/([^/]+)"), _put_typing),
    ("GET", re.compile(_CLIENT + r"/presence/([^/]+)/status"), _get_presence),
    ("PUT", re.compile(_CLIENT + r"/presence/([^/]+)/status"), _put_presence),
]


class FastPath:
    """ASGI: the routes in ROUTES served here, everything else by `app` (Quart)."""

    def __init__(self, engine: Engine, app: ASGIApp) -> None:
        self.engine = engine
        self.app = app
        self._routes: dict[str, list[tuple[re.Pattern[str], Handler]]] = {}
        for method, pattern, handler in ROUTES:
            self._routes.setdefault(method, []).append((pattern, handler))

    def match(self, method: str, path: str) -> tuple[Handler, tuple[str, ...]] | None:
        for pattern, handler in self._routes.get(method, ()):
            found = pattern.fullmatch(path)
            if found is not None:
                return handler, found.groups()
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = self.match(scope["method"], scope["path"])
            if route is not None:
                await self._serve(route[0], route[1], scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _serve(
        self, handler: Handler, params: tuple[str, ...], scope: Scope, receive: Receive, send: Send
    ) -> None:
        request = FastRequest(self.engine, scope, receive)
        # A /sync waits: it must end when its client goes away, as Quart ends it. The
        # other routes answer at once and read their body themselves.
        long_poll = handler is _sync
        timeout_s = deadline_s(self.engine.config, request.arg if long_poll else None)
        reply: Reply | None = None
        try:
            try:
                with trio.move_on_after(timeout_s):
                    if has_nul(scope["path"], scope["query_string"]):
                        raise InvalidParam(NUL_REFUSED)
                    if long_poll:
                        work = handler(self.engine, request, params)
                        body = await _until_disconnect(work, receive)
                    else:
                        body = await handler(self.engine, request, params)
                    reply = Reply(200, body)
                if reply is None:
                    log.warning(
                        "request %s %s not answered within %g s: 503",
                        scope["method"],
                        scope["path"],
                        timeout_s,
                    )
                    reply = timed_out()
            except ClientGone:
                return
            except Exception as exc:
                reply = error_reply(exc)
            await self._send(send, reply, request.lease)
        finally:
            # Booked once the answer is on its way (Quart's teardown books it before):
            # the client does not wait for it. On SQL that booking can be a write
            # (`Sessions.finish_request`), queued behind other writers when one change
            # wakes hundreds of /syncs at once.
            if request.lease is not None:
                await finish_lease(self.engine, request.lease)

    async def _send(self, send: Send, reply: Reply, lease: RequestLease | None) -> None:
        data = DUMPS(reply.body).encode()
        headers = dict(reply.headers)
        if lease is not None and lease.requester.session_id is not None:
            headers[SESSION_HEADER] = lease.requester.session_id
        raw = [
            *_JSON_HEADERS,
            (b"content-length", str(len(data)).encode()),
            *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()),
        ]
        await send({"type": "http.response.start", "status": reply.status, "headers": raw})
        await send({"type": "http.response.body", "body": data})


async def _until_disconnect(work: Awaitable[JsonDict], receive: Receive) -> JsonDict:
    """Await `work` unless the client disconnects first (then ClientGone). What `work`
    raises is raised as is (not in an exception group)."""
    result: list[JsonDict] = []
    failed: list[Exception] = []
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            try:
                result.append(await work)
            except Exception as exc:
                failed.append(exc)
            nursery.cancel_scope.cancel()

        nursery.start_soon(run)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                nursery.cancel_scope.cancel()
                break
    if failed:
        raise failed[0]
    if not result:
        raise ClientGone()
    return result[0]
