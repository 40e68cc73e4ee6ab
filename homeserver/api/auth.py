"""Registration, login, logout, whoami and devices."""

from __future__ import annotations

import secrets

from quart import Blueprint, Response

from backends.records import JsonDict
from homeserver.api._common import (
    arg,
    engine,
    get_bool,
    get_object,
    get_str,
    json_body,
    json_response,
    requester,
)
from homeserver.engine.accounts import (
    MAX_DEVICE_ID_LENGTH,
    MAX_DISPLAY_NAME_LENGTH,
    MAX_PASSWORD_LENGTH,
    LoginResult,
)
from homeserver.errors import BadJson, Forbidden, MatrixError, MissingParam
from homeserver.types import Requester

bp = Blueprint("auth", __name__)

_DUMMY_FLOWS = {"flows": [{"stages": ["m.login.dummy"]}], "params": {}}


def _login_body(result: LoginResult) -> dict[str, str]:
    return {
        "user_id": result.user_id,
        "access_token": result.access_token,
        "device_id": result.device_id,
        "home_server": engine().config.server_name,
    }


@bp.route("/register/available", methods=["GET"])
async def register_available() -> Response:
    """GET /_matrix/client/v3/register/available?username="""
    username = arg("username")
    if not username:
        raise MissingParam("Missing 'username'")
    if not await engine().accounts.is_available(username):
        raise MatrixError(400, "M_USER_IN_USE", "User ID already taken.")
    return json_response({"available": True})


@bp.route("/register", methods=["POST"])
async def register() -> Response:
    """POST /_matrix/client/v3/register (user-interactive auth: m.login.dummy)"""
    eng = engine()
    if arg("kind") == "guest":
        raise Forbidden("Guest access is disabled", errcode="M_GUEST_ACCESS_FORBIDDEN")
    if eng.config.registration != "open":
        raise Forbidden("Registration has been disabled")
    body = await json_body()
    username = get_str(body, "username", max_len=255)
    password = get_str(body, "password", max_len=MAX_PASSWORD_LENGTH)
    device_id = get_str(body, "device_id", max_len=MAX_DEVICE_ID_LENGTH)
    display = get_str(body, "initial_device_display_name", max_len=MAX_DISPLAY_NAME_LENGTH)
    inhibit_login = get_bool(body, "inhibit_login")
    localpart = username if username is not None else f"u{secrets.token_hex(6)}"
    eng.accounts.validate_localpart(localpart)
    auth = get_object(body, "auth")
    if auth is None:
        if not await eng.accounts.is_available(localpart):
            raise MatrixError(400, "M_USER_IN_USE", "User ID already taken.")
        return json_response({**_DUMMY_FLOWS, "session": secrets.token_urlsafe(16)}, 401)
    if auth.get("type") != "m.login.dummy":
        return json_response(
            {
                **_DUMMY_FLOWS,
                "session": auth.get("session") or secrets.token_urlsafe(16),
                "errcode": "M_UNRECOGNIZED",
                "error": "Only the m.login.dummy stage is supported",
            },
            401,
        )
    if not password:
        raise MissingParam("Missing 'password'")
    user_id, login = await eng.accounts.register(
        localpart,
        password,
        device_id=device_id,
        device_display_name=display,
        inhibit_login=inhibit_login,
    )
    if login is None:
        return json_response({"user_id": user_id, "home_server": eng.config.server_name})
    return json_response(_login_body(login))


@bp.route("/login", methods=["GET"])
async def login_flows() -> Response:
    """GET /_matrix/client/v3/login"""
    return json_response({"flows": [{"type": "m.login.password"}]})


@bp.route("/login", methods=["POST"])
async def login() -> Response:
    """POST /_matrix/client/v3/login (m.login.password)"""
    body = await json_body()
    login_type = get_str(body, "type", required=True)
    if login_type != "m.login.password":
        raise MatrixError(400, "M_UNKNOWN", f"Unknown login type {login_type}")
    identifier = get_object(body, "identifier")
    if identifier is not None:
        if identifier.get("type") != "m.id.user":
            raise MatrixError(400, "M_UNKNOWN", "Only m.id.user identifiers are supported")
        user = get_str(identifier, "user", required=True, max_len=255)
    else:
        user = get_str(body, "user", required=True, max_len=255)
    password = get_str(body, "password", required=True, max_len=MAX_PASSWORD_LENGTH)
    assert user is not None and password is not None
    result = await engine().accounts.login_password(
        user,
        password,
        device_id=get_str(body, "device_id", max_len=MAX_DEVICE_ID_LENGTH),
        device_display_name=get_str(
            body, "initial_device_display_name", max_len=MAX_DISPLAY_NAME_LENGTH
        ),
    )
    return json_response(_login_body(result))


@bp.route("/logout", methods=["POST"])
async def logout() -> Response:
    """POST /_matrix/client/v3/logout"""
    await engine().sessions.logout(await requester(with_session=False))
    return json_response({})


@bp.route("/logout/all", methods=["POST"])
async def logout_all() -> Response:
    """POST /_matrix/client/v3/logout/all"""
    await engine().sessions.logout_all(await requester(with_session=False))
    return json_response({})


@bp.route("/account/whoami", methods=["GET"])
async def whoami() -> Response:
    """GET /_matrix/client/v3/account/whoami"""
    return json_response(whoami_json(await requester()))


def whoami_json(who: Requester) -> JsonDict:
    """The whoami answer (the fast path serves the route with it too)."""
    return {"user_id": who.user_id, "device_id": who.device_id, "is_guest": False}


def _device_json(
    device_id: str, display_name: str | None, last_seen: int | None
) -> dict[str, object]:
    out: dict[str, object] = {"device_id": device_id}
    if display_name is not None:
        out["display_name"] = display_name
    if last_seen is not None:
        out["last_seen_ts"] = last_seen
    return out


@bp.route("/devices", methods=["GET"])
async def devices() -> Response:
    """GET /_matrix/client/v3/devices"""
    who = await requester()
    listed = await engine().accounts.list_devices(who.user_id)
    return json_response(
        {"devices": [_device_json(d.device_id, d.display_name, d.last_seen_ts) for d in listed]}
    )


@bp.route("/devices/<device_id>", methods=["GET"])
async def device(device_id: str) -> Response:
    """GET /_matrix/client/v3/devices/{deviceId}"""
    who = await requester()
    d = await engine().accounts.get_device(who.user_id, device_id)
    return json_response(_device_json(d.device_id, d.display_name, d.last_seen_ts))


@bp.route("/devices/<device_id>", methods=["PUT"])
async def update_device(device_id: str) -> Response:
    """PUT /_matrix/client/v3/devices/{deviceId}"""
    who = await requester()
    body = await json_body(allow_empty=True)
    if "display_name" not in body:
        # Nothing to change ("If this is not given, the display name is unchanged").
        await engine().accounts.get_device(who.user_id, device_id)
        return json_response({})
    name = get_str(body, "display_name", max_len=MAX_DISPLAY_NAME_LENGTH)
    if name is None:
        raise BadJson("'display_name' must be a string")
    await engine().accounts.set_device_display_name(who.user_id, device_id, name)
    return json_response({})
