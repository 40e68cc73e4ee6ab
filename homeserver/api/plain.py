"""What a route needs that does not depend on the web framework.

Two adapters serve routes: Quart (`homeserver.app`, every route) and the fast path
(`homeserver.fastpath`, the hot routes straight from ASGI). Both take the pieces of a
request (the Authorization header, the query's token and session id, the body bytes)
to these functions, and turn an exception into the same reply through `error_reply`,
so a route answers byte for byte the same whichever adapter served it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from backends import BackendUnavailable, StorageError
from backends.records import JsonDict
from homeserver import client_json
from homeserver.engine import Engine
from homeserver.engine.sessions import RequestLease
from homeserver.errors import BadJson, MatrixError, MissingToken, NotJson

log = logging.getLogger("homeserver")
api_log = logging.getLogger("homeserver.api")

# The request body, read when (and only if) a route asks for it.
BodySource = Callable[[], Awaitable[bytes]]

DUMPS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
TOO_LARGE: JsonDict = {"errcode": "M_TOO_LARGE", "error": "Request body too large"}
FINISH_DEADLINE_S = 2.0
NUL_REFUSED = "NUL characters are not allowed in the path or query"


@dataclass(frozen=True)
class Reply:
    status: int
    body: JsonDict
    headers: dict[str, str] = field(default_factory=dict)


def token_from(authorization: str | None, query_token: str | None) -> str:
    """The access token: a Bearer Authorization header first, else the query's."""
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    if query_token:
        return query_token
    raise MissingToken()


def parse_object(data: bytes, *, allow_empty: bool = False) -> JsonDict:
    """A request body as a JSON object (M_NOT_JSON / M_BAD_JSON otherwise)."""
    if not data.strip():
        if allow_empty:
            return {}
        raise NotJson("Request body is empty; a JSON object is required")
    body = client_json.loads(data)
    if not isinstance(body, dict):
        raise BadJson("Request body must be a JSON object")
    return body


def has_nul(path: str, query_string: bytes) -> bool:
    # Ids and tokens from the path and query reach the store; PostgreSQL cannot hold
    # NUL, so it is refused for every backend before any route runs.
    return "\x00" in path or b"%00" in query_string


def timed_out() -> Reply:
    return Reply(
        503,
        {"errcode": "M_UNAVAILABLE", "error": "The request took too long; retry later"},
        {"Retry-After": "1"},
    )


def error_reply(exc: Exception) -> Reply:
    """The reply to an exception a route raised (logged where it is the server's fault)."""
    if isinstance(exc, MatrixError):
        return Reply(exc.status, exc.to_json(), dict(exc.headers))
    if isinstance(exc, BackendUnavailable):
        log.warning("storage unavailable: %s", exc)
        return Reply(
            503,
            {
                "errcode": "M_UNAVAILABLE",
                "error": "The server's storage is unavailable; retry later",
            },
            {"Retry-After": "1"},
        )
    if isinstance(exc, StorageError):
        log.error("storage error: %s", exc)
        return Reply(500, {"errcode": "M_UNKNOWN", "error": "Internal storage error"})
    log.exception("unhandled error", exc_info=exc)
    return Reply(500, {"errcode": "M_UNKNOWN", "error": "Internal server error"})


async def finish_lease(eng: Engine, lease: RequestLease) -> None:
    """Give a request's lease back to its session, shielded: this runs even when the
    client went away and the request was cancelled."""
    with trio.CancelScope(shield=True, deadline=trio.current_time() + FINISH_DEADLINE_S):
        try:
            await eng.sessions.finish_request(lease)
        except StorageError as exc:
            api_log.warning("could not record the end of a request in its session: %s", exc)
