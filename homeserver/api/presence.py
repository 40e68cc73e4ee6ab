"""Presence and typing."""

from __future__ import annotations

from quart import Blueprint, Response

from backends.records import JsonDict
from homeserver.api._common import (
    engine,
    get_bool,
    get_str,
    json_response,
    raw_body,
    req_str,
    requester,
)
from homeserver.api.plain import BodySource, parse_object
from homeserver.api.sessions import MAX_STATUS_MSG
from homeserver.engine import Engine
from homeserver.errors import BadJson, Forbidden, InvalidParam
from homeserver.types import Requester, is_room_id

bp = Blueprint("presence", __name__)


# The routes' logic, framework-free: the fast path (homeserver.fastpath) serves these
# routes with the same functions.


async def presence_status(eng: Engine, who: Requester, user_id: str) -> JsonDict:
    return await eng.presence.status(who.user_id, user_id)


async def set_presence(eng: Engine, who: Requester, user_id: str, body: BodySource) -> JsonDict:
    if user_id != who.user_id:
        raise Forbidden("Cannot set the presence of another user")
    data = parse_object(await body())
    presence = req_str(data, "presence", max_len=32)
    status_msg = get_str(data, "status_msg", max_len=MAX_STATUS_MSG)
    await eng.sessions.set_presence(who, presence, status_msg)
    return {}


async def set_typing(
    eng: Engine, who: Requester, room_id: str, user_id: str, body: BodySource
) -> JsonDict:
    if not is_room_id(room_id):
        raise InvalidParam(f"Not a valid room id: {room_id!r}")
    data = parse_object(await body())
    typing = get_bool(data, "typing")
    if "typing" not in data:
        raise BadJson("Missing 'typing'")
    timeout = data.get("timeout", 30000)
    if typing and (not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0):
        raise BadJson("'timeout' must be a non-negative integer")
    await eng.typing.set_typing(who, room_id, user_id, typing, int(timeout) if typing else 0)
    return {}


@bp.route("/presence/<user_id>/status", methods=["GET"])
async def get_presence(user_id: str) -> Response:
    """GET /_matrix/client/v3/presence/{userId}/status"""
    return json_response(await presence_status(engine(), await requester(), user_id))


@bp.route("/presence/<user_id>/status", methods=["PUT"])
async def put_presence(user_id: str) -> Response:
    """PUT /_matrix/client/v3/presence/{userId}/status"""
    return json_response(await set_presence(engine(), await requester(), user_id, raw_body))


@bp.route("/rooms/<room_id>/typing/<user_id>", methods=["PUT"])
async def put_typing(room_id: str, user_id: str) -> Response:
    """PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}"""
    who = await requester()
    return json_response(await set_typing(engine(), who, room_id, user_id, raw_body))
