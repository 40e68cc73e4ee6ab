"""create_app(engine): the Quart-Trio app. Registers routes and the one error handler;
no I/O and no tasks here."""

from __future__ import annotations

import logging

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from backends import BackendUnavailable, StorageError
from homeserver.api import account, admin, auth, presence, rooms, sessions, sync, versions
from homeserver.api._common import add_session_header, finish_session, json_response
from homeserver.engine import Engine
from homeserver.errors import InvalidParam, MatrixError

log = logging.getLogger("homeserver")

CLIENT_PREFIXES = ("/_matrix/client/v3", "/_matrix/client/r0")


class HomeserverApp(QuartTrio):
    engine: Engine


# Every hook and handler is async: Quart runs sync ones in a worker thread.


async def _matrix_error(exc: MatrixError) -> Response:
    return json_response(exc.to_json(), exc.status, exc.headers or None)


async def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status == 413:
        return json_response({"errcode": "M_TOO_LARGE", "error": "Request body too large"}, 413)
    if status in (404, 405):
        return json_response({"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"}, status)
    if status == 400:
        return json_response(
            {"errcode": "M_BAD_JSON", "error": exc.description or "Bad request"}, 400
        )
    return json_response({"errcode": "M_UNKNOWN", "error": exc.name}, status)


async def _storage_error(exc: StorageError) -> Response:
    if isinstance(exc, BackendUnavailable):
        log.warning("storage unavailable: %s", exc)
        return json_response(
            {
                "errcode": "M_UNAVAILABLE",
                "error": "The server's storage is unavailable; retry later",
            },
            503,
            {"Retry-After": "1"},
        )
    log.error("storage error: %s", exc)
    return json_response({"errcode": "M_UNKNOWN", "error": "Internal storage error"}, 500)


async def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return json_response({"errcode": "M_UNKNOWN", "error": "Internal server error"}, 500)


async def _refuse_nul() -> None:
    # Ids and tokens from the path and query reach the store; PostgreSQL cannot hold
    # NUL, so it is refused for every backend before any route runs.
    if "\x00" in request.path or b"%00" in request.query_string:
        raise InvalidParam("NUL characters are not allowed in the path or query")


def create_app(engine: Engine) -> HomeserverApp:
    app = HomeserverApp(__name__)
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
    app.register_error_handler(MatrixError, _matrix_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(StorageError, _storage_error)
    app.register_error_handler(Exception, _unexpected)
    return app
