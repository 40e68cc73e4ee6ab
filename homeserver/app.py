"""create_app(engine): the Quart-Trio app. Registers routes and the one error handler;
no I/O and no tasks here.

Every request is handled within a deadline, `request_timeout_ms` (a /sync adds the
long-poll wait it asked for, as capped by `sync_timeout_cap_ms`; 0 turns it off): past
it the handler is cancelled and the client gets 503 M_UNAVAILABLE with Retry-After,
never a hang. It is a backstop: storage operations have their own, shorter, deadline,
and a SQL operation in flight when the request's deadline passes finishes first (no
later than its own deadline). The teardown hooks (the session's end-of-request
booking) still run.

(Tests on trio's autojump clock: a worker thread, such as password hashing, leaves
every task blocked, and the clock jumps to the next deadline, which is then this one.
Such tests turn it off or keep the clock still around threads.)
"""

from __future__ import annotations

import logging

import trio
from quart import Response, request
from quart.ctx import RequestContext
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as WerkzeugResponse

from homeserver.api import account, admin, auth, presence, rooms, sessions, sync, versions
from homeserver.api._common import add_session_header, finish_session, json_response
from homeserver.api.plain import (
    NUL_REFUSED,
    TOO_LARGE,
    Reply,
    deadline_s,
    error_reply,
    has_nul,
    timed_out,
)
from homeserver.engine import Engine
from homeserver.errors import InvalidParam

log = logging.getLogger("homeserver")

CLIENT_PREFIXES = ("/_matrix/client/v3", "/_matrix/client/r0")


class HomeserverApp(QuartTrio):
    engine: Engine

    async def full_dispatch_request(
        self, request_context: RequestContext | None = None
    ) -> Response | WerkzeugResponse:
        """Dispatch (before_request hooks, the route, after_request hooks) within the
        request's deadline."""
        timeout_s = self._request_timeout_s()
        with trio.move_on_after(timeout_s):
            return await super().full_dispatch_request(request_context)
        log.warning(
            "request %s %s not answered within %g s: 503", request.method, request.path, timeout_s
        )
        return await self.finalize_request(_timed_out(), request_context)

    def _request_timeout_s(self) -> float:
        rule = request.url_rule
        is_sync = rule is not None and self.view_functions.get(rule.endpoint) is sync.sync
        return deadline_s(self.engine.config, request.args.get if is_sync else None)


def _timed_out() -> Response:
    return _reply(timed_out())


def _reply(reply: Reply) -> Response:
    return json_response(reply.body, reply.status, reply.headers or None)


# Every hook and handler is async: Quart runs sync ones in a worker thread.


async def _error(exc: Exception) -> Response:
    """MatrixError, StorageError and anything unexpected: as the fast path answers."""
    return _reply(error_reply(exc))


async def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status == 413:
        return json_response(TOO_LARGE, 413)
    if status in (404, 405):
        return json_response({"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}, status)
    if status == 400:
        return json_response(
            {"errcode": "M_BAD_JSON", "error": exc.description or "Bad request"}, 400
        )
    return json_response({"errcode": "M_UNKNOWN", "error": exc.name}, status)


async def _refuse_nul() -> None:
    if has_nul(request.path, request.query_string):
        raise InvalidParam(NUL_REFUSED)


def create_app(engine: Engine) -> HomeserverApp:
    # No static files: Quart would otherwise serve a /static/<path> route from the package.
    app = HomeserverApp(__name__, static_folder=None)
    app.engine = engine
    app.config["MAX_CONTENT_LENGTH"] = engine.config.max_request_bytes
    # Routing must not answer with redirects (clients do not follow them on PUT/POST).
    app.url_map.strict_slashes = False
    # Nor between two rules of one endpoint with the same defaults (state/{type} and
    # state/{type}/ would otherwise redirect one to the other), nor to merge "//".
    app.url_map.redirect_defaults = False
    app.url_map.merge_slashes = False
    app.register_blueprint(versions.unprefixed)
    app.register_blueprint(admin.bp)
    app.register_blueprint(admin.synapse_bp)
    for index, prefix in enumerate(CLIENT_PREFIXES):
        for bp in (
            versions.client,
            auth.bp,
            rooms.bp,
            sync.bp,
            account.bp,
            sessions.bp,
            presence.bp,
        ):
            name = bp.name if index == 0 else f"{bp.name}_{prefix.rsplit('/', 1)[-1]}"
            app.register_blueprint(bp, url_prefix=prefix, name=name)
    app.before_request(_refuse_nul)
    app.after_request(add_session_header)
    app.teardown_request(finish_session)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _error)
    return app
