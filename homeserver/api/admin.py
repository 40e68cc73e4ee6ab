"""The admin API: server-generated events, and Synapse's send_server_notice so that
existing admin tools can send notices. Admins are listed in the config (`admins`) or
given with `homeserver serve --admin USER_ID`."""

from __future__ import annotations

from quart import Blueprint, Response

from backends.records import ServerEventTarget
from homeserver.api._common import (
    engine,
    get_bool,
    get_object,
    get_str,
    json_body,
    json_response,
    req_str,
    requester,
)
from homeserver.errors import BadJson, Forbidden, MissingParam
from homeserver.types import Requester

bp = Blueprint("admin", __name__)
synapse_bp = Blueprint("synapse_admin", __name__)


async def _admin() -> Requester:
    who = await requester()
    if who.user_id not in engine().config.admins:
        raise Forbidden("You are not a server admin")
    return who


@bp.route("/_homeserver/admin/v1/server_events", methods=["POST"])
async def send_server_event() -> Response:
    """POST /_homeserver/admin/v1/server_events"""
    await _admin()
    body = await json_body()
    event_type = req_str(body, "type", max_len=255)
    content = get_object(body, "content")
    if content is None:
        raise MissingParam("Missing 'content' (a JSON object)")
    user_id = get_str(body, "user_id", max_len=255)
    room_id = get_str(body, "room_id", max_len=255)
    all_users = get_bool(body, "all_users")
    if sum((user_id is not None, room_id is not None, all_users)) != 1:
        raise BadJson("Give exactly one of 'user_id', 'room_id' or 'all_users': true")
    if user_id is not None:
        kind, target = ServerEventTarget.USER, user_id
    elif room_id is not None:
        kind, target = ServerEventTarget.ROOM, room_id
    else:
        kind, target = ServerEventTarget.ALL_USERS, None
    event = await engine().server_events.send(kind, target, event_type, content)
    return json_response({"event_id": event.event_id, "stream_pos": event.stream_pos})


@synapse_bp.route("/_synapse/admin/v1/send_server_notice", methods=["POST"])
async def send_server_notice() -> Response:
    """POST /_synapse/admin/v1/send_server_notice (Synapse-compatible)"""
    await _admin()
    body = await json_body()
    user_id = req_str(body, "user_id", max_len=255)
    content = get_object(body, "content")
    if content is None:
        raise MissingParam("Missing 'content' (a JSON object)")
    event_type = get_str(body, "type", max_len=255) or "m.room.message"
    event = await engine().server_events.send(ServerEventTarget.USER, user_id, event_type, content)
    return json_response({"event_id": event.event_id})
