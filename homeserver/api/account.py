"""Account data and profiles."""

from __future__ import annotations

from quart import Blueprint, Response

from backends.records import JsonDict
from homeserver.api._common import engine, json_body, json_response, requester
from homeserver.errors import BadJson, Forbidden, InvalidParam, MissingParam, NotFoundError
from homeserver.types import is_room_id

bp = Blueprint("account", __name__)

_PROFILE_FIELDS = ("displayname", "avatar_url")
MAX_PROFILE_VALUE = 1024


def _own(user_id: str, requester_id: str) -> None:
    if user_id != requester_id:
        raise Forbidden("Cannot act on behalf of another user")


@bp.route("/user/<user_id>/account_data/<data_type>", methods=["PUT"])
async def put_account_data(user_id: str, data_type: str) -> Response:
    """PUT /_matrix/client/v3/user/{userId}/account_data/{type}"""
    who = await requester()
    _own(user_id, who.user_id)
    await engine().account_data.put(who.user_id, None, data_type, await json_body())
    return json_response({})


@bp.route("/user/<user_id>/account_data/<data_type>", methods=["GET"])
async def get_account_data(user_id: str, data_type: str) -> Response:
    """GET /_matrix/client/v3/user/{userId}/account_data/{type}"""
    who = await requester()
    _own(user_id, who.user_id)
    return json_response(await engine().account_data.get(who.user_id, None, data_type))


@bp.route("/user/<user_id>/rooms/<room_id>/account_data/<data_type>", methods=["PUT"])
async def put_room_account_data(user_id: str, room_id: str, data_type: str) -> Response:
    """PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}"""
    who = await requester()
    _own(user_id, who.user_id)
    if not is_room_id(room_id):
        raise InvalidParam(f"Not a valid room id: {room_id!r}")
    await engine().account_data.put(who.user_id, room_id, data_type, await json_body())
    return json_response({})


@bp.route("/user/<user_id>/rooms/<room_id>/account_data/<data_type>", methods=["GET"])
async def get_room_account_data(user_id: str, room_id: str, data_type: str) -> Response:
    """GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}"""
    who = await requester()
    _own(user_id, who.user_id)
    return json_response(await engine().account_data.get(who.user_id, room_id, data_type))


def _profile_json(displayname: str | None, avatar_url: str | None) -> JsonDict:
    out: JsonDict = {}
    if displayname is not None:
        out["displayname"] = displayname
    if avatar_url is not None:
        out["avatar_url"] = avatar_url
    return out


@bp.route("/profile/<user_id>", methods=["GET"])
async def get_profile(user_id: str) -> Response:
    """GET /_matrix/client/v3/profile/{userId}"""
    user = await engine().accounts.get_profile(user_id)
    return json_response(_profile_json(user.displayname, user.avatar_url))


@bp.route("/profile/<user_id>/<field>", methods=["GET"])
async def get_profile_field(user_id: str, field: str) -> Response:
    """GET /_matrix/client/v3/profile/{userId}/{displayname|avatar_url}"""
    if field not in _PROFILE_FIELDS:
        raise NotFoundError(f"Unknown profile field {field}")
    user = await engine().accounts.get_profile(user_id)
    body = _profile_json(user.displayname, user.avatar_url)
    if field not in body:
        raise NotFoundError(f"The user has no {field}")
    return json_response({field: body[field]})


@bp.route("/profile/<user_id>/<field>", methods=["PUT"])
async def put_profile_field(user_id: str, field: str) -> Response:
    """PUT /_matrix/client/v3/profile/{userId}/{displayname|avatar_url}"""
    who = await requester()
    _own(user_id, who.user_id)
    if field not in _PROFILE_FIELDS:
        raise NotFoundError(f"Unknown profile field {field}")
    body = await json_body()
    if field not in body:
        # A body without the field is a client mistake, not a request to clear it.
        raise MissingParam(f"Missing '{field}'")
    value = body.get(field)
    if value is not None and (not isinstance(value, str) or len(value) > MAX_PROFILE_VALUE):
        raise BadJson(f"'{field}' must be a string of at most {MAX_PROFILE_VALUE} characters")
    await engine().rooms.membership.set_profile(who, field, value or None)
    return json_response({})
