"""What a route needs that does not depend on the web framework.

Two adapters serve routes: Quart (`homeserver.app`, every route) and the fast path
(`homeserver.fastpath`, the hot routes straight from ASGI). Both take the pieces of a
request (the Authorization header, the query's token and session id, the body bytes)
to these functions, and turn an exception into the same reply through `error_reply`,
so a route answers byte for byte the same whichever adapter served it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from backends import BackendUnavailable, StorageError
from backends.records import JsonDict
from homeserver import client_json
from homeserver.config import Config
from homeserver.engine import Engine
from homeserver.engine.sessions import SESSION_HEADER, RequestLease
from homeserver.errors import BadJson, InvalidParam, MatrixError, MissingToken, NotJson

log = logging.getLogger("homeserver")
api_log = logging.getLogger("homeserver.api")

# The request body, read when (and only if) a route asks for it.
BodySource = Callable[[], Awaitable[bytes]]
# A query parameter's first value by name (None if absent).
Args = Callable[[str], str | None]

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


async def begin_lease(
    eng: Engine, header: Args, arg: Args, *, with_session: bool = True
) -> RequestLease:
    """Authenticate a request and take its session lease: the token from the
    Authorization header or the query, the session from the `Matrix-Session` header or
    the `session_id` parameter (else the device's active session)."""
    token = token_from(header("Authorization"), arg("access_token"))
    session_id = header(SESSION_HEADER) or arg("session_id")
    return await eng.sessions.begin_request(token, session_id, with_session=with_session)


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


def int_arg(args: Args, name: str, default: int, *, lo: int = 0, hi: int = 2**31) -> int:
    """An integer query parameter, clamped to [lo, hi] (M_INVALID_PARAM if not one)."""
    raw = args(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParam(f"Query parameter '{name}' must be an integer") from None
    return max(lo, min(hi, value))


def bool_arg(args: Args, name: str) -> bool:
    return (args(name) or "false").lower() in ("true", "1")


def deadline_s(config: Config, sync_args: Args | None = None) -> float:
    """How long a request may take: `request_timeout_ms` (0: no limit), plus, for a
    /sync (its query given), the long-poll wait it asked for as the route clamps it (0
    if malformed: the route refuses it)."""
    timeout_ms = config.request_timeout_ms
    if timeout_ms == 0:
        return math.inf
    if sync_args is not None:
        with contextlib.suppress(InvalidParam):
            timeout_ms += int_arg(sync_args, "timeout", 0, lo=0, hi=config.sync_timeout_cap_ms)
    return timeout_ms / 1000


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
