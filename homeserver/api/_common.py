"""What every route needs: the engine, the requester, the JSON body, typed fields."""

from __future__ import annotations

import logging
from typing import Protocol, cast

from quart import Response, current_app, g, request

from backends.records import JsonDict
from homeserver.api.plain import (
    DUMPS,
    begin_lease,
    bool_arg,
    finish_lease,
    int_arg,
    parse_object,
)
from homeserver.engine import Engine
from homeserver.engine.sessions import SESSION_HEADER, RequestLease
from homeserver.errors import BadJson, MissingParam
from homeserver.types import Requester

log = logging.getLogger("homeserver.api")


class _AppWithEngine(Protocol):
    # homeserver.app.HomeserverApp, named by its shape: the app imports the routes.
    engine: Engine


def engine() -> Engine:
    return cast(_AppWithEngine, current_app).engine


def json_response(
    body: object, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(DUMPS(body), status=status, content_type="application/json", headers=headers)


_LEASE_KEY = "hs_lease"


async def requester(*, with_session: bool = True) -> Requester:
    """Authenticate the request and resolve the session it runs in.

    The session comes from the `Matrix-Session` header or the `session_id` query
    parameter, else it is the device's active session (started if there is none).
    `with_session=False` (session management, logout) authenticates by token alone.
    The lease goes back to the engine at teardown (`finish_session`).
    """
    lease = await begin_lease(
        engine(), request.headers.get, request.args.get, with_session=with_session
    )
    setattr(g, _LEASE_KEY, lease)
    return lease.requester


async def add_session_header(response: Response) -> Response:
    """after_request: every response of a request that ran in a session names it.
    (Async on purpose: Quart runs sync hooks in a worker thread.)"""
    lease: RequestLease | None = g.get(_LEASE_KEY)
    if lease is not None and lease.requester.session_id is not None:
        response.headers[SESSION_HEADER] = lease.requester.session_id
    return response


async def finish_session(_exc: BaseException | None) -> None:
    """teardown_request: book the end of the request in its session. Runs even when the
    client disconnected and the handler was cancelled, hence the shield."""
    lease: RequestLease | None = g.pop(_LEASE_KEY, None)
    if lease is None:
        return
    await finish_lease(engine(), lease)


async def json_body(*, allow_empty: bool = False) -> JsonDict:
    """The request body as a JSON object (M_NOT_JSON / M_BAD_JSON otherwise)."""
    return parse_object(await raw_body(), allow_empty=allow_empty)


async def raw_body() -> bytes:
    """The request body's bytes (a `plain.BodySource`)."""
    data = await request.get_data(as_text=False)
    assert isinstance(data, bytes)
    return data


def get_str(
    body: JsonDict, key: str, *, required: bool = False, max_len: int = 65536
) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise MissingParam(f"Missing '{key}'")
        return None
    if not isinstance(value, str):
        raise BadJson(f"'{key}' must be a string")
    if len(value) > max_len:
        raise BadJson(f"'{key}' is longer than {max_len} characters")
    return value


def req_str(body: JsonDict, key: str, *, max_len: int = 65536) -> str:
    value = get_str(body, key, required=True, max_len=max_len)
    assert value is not None
    return value


def get_bool(body: JsonDict, key: str, default: bool = False) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise BadJson(f"'{key}' must be a boolean")
    return value


def get_object(body: JsonDict, key: str) -> JsonDict | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadJson(f"'{key}' must be a JSON object")
    return value


def query_int(name: str, default: int, *, lo: int = 0, hi: int = 2**31) -> int:
    return int_arg(request.args.get, name, default, lo=lo, hi=hi)


def query_bool(name: str) -> bool:
    return bool_arg(request.args.get, name)


def arg(name: str) -> str | None:
    return request.args.get(name)
