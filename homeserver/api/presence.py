"""Presence and typing."""

from __future__ import annotations

from quart import Blueprint, Response

from homeserver.api._common import (
    engine,
    get_bool,
    get_str,
    json_body,
    json_response,
    req_str,
    requester,
)
from homeserver.api.sessions import MAX_STATUS_MSG
from homeserver.errors import BadJson, Forbidden, InvalidParam
from homeserver.types import is_room_id

bp = Blueprint("presence", __name__)


@bp.route("/presence/<user_id>/status", methods=["GET"])
async def get_presence(user_id: str) -> Response:
    """GET /_matrix/client/v3/presence/{userId}/status"""
    who = await requester()
    return json_response(await engine().presence.status(who.user_id, user_id))


@bp.route("/presence/<user_id>/status", methods=["PUT"])
async def put_presence(user_id: str) -> Response:
    """PUT /_matrix/client/v3/presence/{userId}/status"""
    who = await requester()
    if user_id != who.user_id:
        raise Forbidden("Cannot set the presence of another user")
    body = await json_body()
    presence = req_str(body, "presence", max_len=32)
    status_msg = get_str(body, "status_msg", max_len=MAX_STATUS_MSG)
    await engine().sessions.set_presence(who, presence, status_msg)
    return json_response({})


@bp.route("/rooms/<room_id>/typing/<user_id>", methods=["PUT"])
async def put_typing(room_id: str, user_id: str) -> Response:
    """PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}"""
    who = await requester()
    if not is_room_id(room_id):
        raise InvalidParam(f"Not a valid room id: {room_id!r}")
    body = await json_body()
    typing = get_bool(body, "typing")
    if "typing" not in body:
        raise BadJson("Missing 'typing'")
    timeout = body.get("timeout", 30000)
    if typing and (not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0):
        raise BadJson("'timeout' must be a non-negative integer")
    await engine().typing.set_typing(who, room_id, user_id, typing, int(timeout) if typing else 0)
    return json_response({})
