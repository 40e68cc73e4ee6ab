"""Discovery and what clients fetch before they sync: versions, well-known,
capabilities, push rules, TURN config, third-party ids."""

from __future__ import annotations

from quart import Blueprint, Response, request

from backends.records import JsonDict
from homeserver.api._common import engine, json_response, requester
from homeserver.engine.account_data import default_push_rules
from homeserver.engine.rooms import SUPPORTED_ROOM_VERSIONS

unprefixed = Blueprint("discovery", __name__)
client = Blueprint("client_misc", __name__)

SPEC_VERSIONS = ["r0.6.1", *(f"v1.{minor}" for minor in range(1, 12))]
VERSIONS: JsonDict = {"versions": SPEC_VERSIONS, "unstable_features": {}}


@unprefixed.route("/_matrix/client/versions", methods=["GET"])
async def versions() -> Response:
    """GET /_matrix/client/versions"""
    return json_response(VERSIONS)


@unprefixed.route("/.well-known/matrix/client", methods=["GET"])
async def well_known() -> Response:
    """GET /.well-known/matrix/client"""
    base_url = request.host_url.rstrip("/")
    return json_response({"m.homeserver": {"base_url": base_url}})


@client.route("/capabilities", methods=["GET"])
async def capabilities() -> Response:
    """GET /_matrix/client/v3/capabilities"""
    await requester()
    return json_response(
        {
            "capabilities": {
                "m.change_password": {"enabled": False},
                "m.room_versions": {
                    "default": engine().config.default_room_version,
                    "available": dict.fromkeys(SUPPORTED_ROOM_VERSIONS, "stable"),
                },
                "m.set_displayname": {"enabled": True},
                "m.set_avatar_url": {"enabled": True},
                "m.3pid_changes": {"enabled": False},
            }
        }
    )


@client.route("/pushrules/", methods=["GET"])
@client.route("/pushrules", methods=["GET"])
async def push_rules() -> Response:
    """GET /_matrix/client/v3/pushrules/"""
    who = await requester()
    return json_response(default_push_rules(who.user_id))


@client.route("/pushrules/global/", methods=["GET"])
async def push_rules_global() -> Response:
    """GET /_matrix/client/v3/pushrules/global/"""
    who = await requester()
    return json_response(default_push_rules(who.user_id)["global"])


@client.route("/voip/turnServer", methods=["GET"])
async def turn_server() -> Response:
    """GET /_matrix/client/v3/voip/turnServer (no TURN server is configured)"""
    await requester()
    return json_response({})


@client.route("/account/3pid", methods=["GET"])
async def third_party_ids() -> Response:
    """GET /_matrix/client/v3/account/3pid (this server binds none)"""
    await requester()
    return json_response({"threepids": []})
