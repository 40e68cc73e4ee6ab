"""/sync and filters."""

from __future__ import annotations

from quart import Blueprint, Response, request

from backends.records import JsonDict, Presence
from homeserver.api._common import engine, json_body, json_response, requester
from homeserver.api.plain import Args, bool_arg, int_arg
from homeserver.engine import Engine
from homeserver.engine.sync import SyncRequest, parse_sync_token
from homeserver.errors import Forbidden, InvalidParam
from homeserver.types import Requester

bp = Blueprint("sync", __name__)


async def run_sync(eng: Engine, who: Requester, args: Args) -> JsonDict:
    """GET /sync's logic, framework-free (the fast path serves it with this too)."""
    since = args("since")
    set_presence = args("set_presence")
    if set_presence is not None and set_presence not in Presence.ALL:
        raise InvalidParam(f"Unknown presence {set_presence!r}")
    req = SyncRequest(
        since=parse_sync_token(since) if since else None,
        timeout_ms=int_arg(args, "timeout", 0, lo=0, hi=eng.config.sync_timeout_cap_ms),
        full_state=bool_arg(args, "full_state"),
        filter=await eng.filters.resolve(who.user_id, args("filter")),
    )
    if set_presence is not None:
        await eng.sessions.set_presence(who, set_presence, keep_status=True)
    return await eng.sync.sync(who, req)


@bp.route("/sync", methods=["GET"])
async def sync() -> Response:
    """GET /_matrix/client/v3/sync"""
    who = await requester()
    return json_response(await run_sync(engine(), who, request.args.get))


def _own(user_id: str, requester_id: str) -> None:
    if user_id != requester_id:
        raise Forbidden("Cannot act on behalf of another user")


@bp.route("/user/<user_id>/filter", methods=["POST"])
async def create_filter(user_id: str) -> Response:
    """POST /_matrix/client/v3/user/{userId}/filter"""
    who = await requester()
    _own(user_id, who.user_id)
    filter_id = await engine().filters.create(who.user_id, await json_body())
    return json_response({"filter_id": filter_id})


@bp.route("/user/<user_id>/filter/<filter_id>", methods=["GET"])
async def get_filter(user_id: str, filter_id: str) -> Response:
    """GET /_matrix/client/v3/user/{userId}/filter/{filterId}"""
    who = await requester()
    _own(user_id, who.user_id)
    return json_response(await engine().filters.get(who.user_id, filter_id))
