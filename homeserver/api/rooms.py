"""Rooms: createRoom, membership, send, state, members and history."""

from __future__ import annotations

from quart import Blueprint, Response

from backends.records import JsonDict, Membership
from homeserver.api._common import (
    arg,
    engine,
    get_bool,
    get_object,
    get_str,
    json_body,
    json_response,
    query_int,
    req_str,
    requester,
)
from homeserver.engine.rooms import PRESETS, CreateRoomRequest
from homeserver.engine.sync import parse_stream_token, stream_token
from homeserver.errors import BadJson, InvalidParam, NotFoundError
from homeserver.types import is_room_id, is_user_id

bp = Blueprint("rooms", __name__)

MAX_REASON_LENGTH = 4096


def _room(room_id: str) -> str:
    if not is_room_id(room_id):
        raise InvalidParam(f"Not a valid room id: {room_id!r}")
    return room_id


def _reason(body: JsonDict) -> str | None:
    return get_str(body, "reason", max_len=MAX_REASON_LENGTH)


def _create_request(body: JsonDict) -> CreateRoomRequest:
    preset = get_str(body, "preset")
    if preset is not None and preset not in PRESETS:
        raise InvalidParam(f"Unknown preset {preset!r}")
    visibility = get_str(body, "visibility") or "private"
    if visibility not in ("public", "private"):
        raise InvalidParam("'visibility' must be 'public' or 'private'")
    invite = body.get("invite", [])
    if not isinstance(invite, list) or not all(is_user_id(u) for u in invite):
        raise BadJson("'invite' must be a list of user ids")
    raw_state = body.get("initial_state", [])
    if not isinstance(raw_state, list):
        raise BadJson("'initial_state' must be a list")
    initial_state = []
    for item in raw_state:
        if not isinstance(item, dict):
            raise BadJson("'initial_state' entries must be objects")
        event_type = get_str(item, "type", required=True, max_len=255)
        state_key = get_str(item, "state_key", max_len=255) or ""
        content = get_object(item, "content")
        if content is None:
            raise BadJson("'initial_state' entries need a 'content' object")
        assert event_type is not None
        initial_state.append((event_type, state_key, content))
    return CreateRoomRequest(
        preset=preset,
        visibility=visibility,
        name=get_str(body, "name", max_len=255),
        topic=get_str(body, "topic", max_len=4096),
        invite=tuple(dict.fromkeys(invite)),
        initial_state=tuple(initial_state),
        room_version=get_str(body, "room_version", max_len=32),
        is_direct=get_bool(body, "is_direct"),
        creation_content=get_object(body, "creation_content"),
        power_level_content_override=get_object(body, "power_level_content_override"),
    )


@bp.route("/createRoom", methods=["POST"])
async def create_room() -> Response:
    """POST /_matrix/client/v3/createRoom"""
    who = await requester()
    req = _create_request(await json_body(allow_empty=True))
    room_id = await engine().rooms.creation.create_room(who, req)
    return json_response({"room_id": room_id})


@bp.route("/joined_rooms", methods=["GET"])
async def joined_rooms() -> Response:
    """GET /_matrix/client/v3/joined_rooms"""
    who = await requester()
    return json_response({"joined_rooms": await engine().rooms.core.joined_rooms(who.user_id)})


@bp.route("/rooms/<room_id>/join", methods=["POST"])
@bp.route("/join/<room_id>", methods=["POST"])
async def join(room_id: str) -> Response:
    """POST /_matrix/client/v3/rooms/{roomId}/join (and /join/{roomIdOrAlias})"""
    who = await requester()
    if room_id.startswith("#"):
        raise NotFoundError("Room aliases are not supported by this server")
    body = await json_body(allow_empty=True)
    await engine().rooms.membership.join(who, _room(room_id), _reason(body))
    return json_response({"room_id": room_id})


@bp.route("/rooms/<room_id>/invite", methods=["POST"])
async def invite(room_id: str) -> Response:
    """POST /_matrix/client/v3/rooms/{roomId}/invite"""
    who = await requester()
    body = await json_body()
    user_id = req_str(body, "user_id", max_len=255)
    await engine().rooms.invites.invite(who, _room(room_id), user_id, reason=_reason(body))
    return json_response({})


@bp.route("/rooms/<room_id>/leave", methods=["POST"])
async def leave(room_id: str) -> Response:
    """POST /_matrix/client/v3/rooms/{roomId}/leave"""
    who = await requester()
    body = await json_body(allow_empty=True)
    await engine().rooms.membership.leave(who, _room(room_id), _reason(body))
    return json_response({})


@bp.route("/rooms/<room_id>/<any(kick, ban, unban):action>", methods=["POST"])
async def moderate(room_id: str, action: str) -> Response:
    """POST /_matrix/client/v3/rooms/{roomId}/kick|ban|unban"""
    who = await requester()
    body = await json_body()
    target = req_str(body, "user_id", max_len=255)
    membership = engine().rooms.membership
    handler = {"kick": membership.kick, "ban": membership.ban, "unban": membership.unban}[action]
    await handler(who, _room(room_id), target, _reason(body))
    return json_response({})


@bp.route("/rooms/<room_id>/forget", methods=["POST"])
async def forget(room_id: str) -> Response:
    """POST /_matrix/client/v3/rooms/{roomId}/forget"""
    who = await requester()
    await engine().rooms.membership.forget(who, _room(room_id))
    return json_response({})


@bp.route("/rooms/<room_id>/send/<event_type>/<txn_id>", methods=["PUT"])
async def send(room_id: str, event_type: str, txn_id: str) -> Response:
    """PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}"""
    who = await requester()
    content = await json_body()
    event_id = await engine().rooms.messages.send_event(
        who, _room(room_id), event_type, content, txn_id=txn_id
    )
    return json_response({"event_id": event_id})


@bp.route("/rooms/<room_id>/state/<event_type>", methods=["PUT"], defaults={"state_key": ""})
@bp.route("/rooms/<room_id>/state/<event_type>/", methods=["PUT"], defaults={"state_key": ""})
@bp.route("/rooms/<room_id>/state/<event_type>/<path:state_key>", methods=["PUT"])
async def put_state(room_id: str, event_type: str, state_key: str) -> Response:
    """PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}"""
    who = await requester()
    content = await json_body()
    event_id = await engine().rooms.messages.send_event(
        who, _room(room_id), event_type, content, state_key=state_key
    )
    return json_response({"event_id": event_id})


@bp.route("/rooms/<room_id>/state/<event_type>", methods=["GET"], defaults={"state_key": ""})
@bp.route("/rooms/<room_id>/state/<event_type>/", methods=["GET"], defaults={"state_key": ""})
@bp.route("/rooms/<room_id>/state/<event_type>/<path:state_key>", methods=["GET"])
async def get_state_event(room_id: str, event_type: str, state_key: str) -> Response:
    """GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}"""
    who = await requester()
    rooms = engine().rooms
    event = await rooms.history.get_state_event(who, _room(room_id), event_type, state_key)
    if arg("format") == "event":
        return json_response(rooms.core.format(event, who))
    return json_response(event.content)


@bp.route("/rooms/<room_id>/state", methods=["GET"])
async def get_state(room_id: str) -> Response:
    """GET /_matrix/client/v3/rooms/{roomId}/state"""
    who = await requester()
    rooms = engine().rooms
    state = await rooms.history.get_state(who, _room(room_id))
    return json_response([rooms.core.format(e, who) for e in state])


@bp.route("/rooms/<room_id>/members", methods=["GET"])
async def members(room_id: str) -> Response:
    """GET /_matrix/client/v3/rooms/{roomId}/members"""
    who = await requester()
    membership, not_membership = arg("membership"), arg("not_membership")
    for value in (membership, not_membership):
        if value is not None and value not in Membership.ALL:
            raise InvalidParam(f"Unknown membership {value!r}")
    rooms = engine().rooms
    events = await rooms.history.members(
        who, _room(room_id), membership=membership, not_membership=not_membership
    )
    return json_response({"chunk": [rooms.core.format(e, who) for e in events]})


@bp.route("/rooms/<room_id>/joined_members", methods=["GET"])
async def joined_members(room_id: str) -> Response:
    """GET /_matrix/client/v3/rooms/{roomId}/joined_members"""
    who = await requester()
    joined = await engine().rooms.history.joined_members(who, _room(room_id))
    return json_response({"joined": joined})


@bp.route("/rooms/<room_id>/messages", methods=["GET"])
async def messages(room_id: str) -> Response:
    """GET /_matrix/client/v3/rooms/{roomId}/messages"""
    who = await requester()
    direction = arg("dir") or "b"
    if direction not in ("b", "f"):
        raise InvalidParam("'dir' must be 'b' or 'f'")
    from_token, to_token = arg("from"), arg("to")
    rooms = engine().rooms
    page = await rooms.history.messages(
        who,
        _room(room_id),
        from_pos=parse_stream_token(from_token) if from_token else None,
        to_pos=parse_stream_token(to_token) if to_token else None,
        backwards=direction == "b",
        limit=query_int("limit", 10, lo=1, hi=1000),
    )
    body: JsonDict = {
        "chunk": [rooms.core.format(e, who) for e in page.chunk],
        "start": stream_token(page.start),
    }
    if page.end is not None:
        body["end"] = stream_token(page.end)
    return json_response(body)


@bp.route("/rooms/<room_id>/event/<event_id>", methods=["GET"])
async def get_event(room_id: str, event_id: str) -> Response:
    """GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}"""
    who = await requester()
    rooms = engine().rooms
    event = await rooms.history.get_event(who, _room(room_id), event_id)
    return json_response(rooms.core.format(event, who))
