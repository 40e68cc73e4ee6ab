"""Sessions: start (go online, or appear offline), list, end (go offline).

These routes manage sessions, so they do not run in one themselves: they authenticate
by access token alone and never start a session implicitly.
"""

from __future__ import annotations

from quart import Blueprint, Response

from backends.records import Presence, SessionRecord
from homeserver.api._common import engine, get_str, json_body, json_response, requester
from homeserver.engine.sessions import SESSION_HEADER
from homeserver.errors import Forbidden, InvalidParam, Unrecognized
from homeserver.types import Requester

bp = Blueprint("sessions", __name__)

MAX_STATUS_MSG = 1024


async def _sessions_requester() -> Requester:
    """Authenticate a session-management request (token only). With sessions disabled
    by the operator these endpoints do not exist."""
    if not engine().config.sessions_enabled:
        raise Unrecognized(404, "Sessions are disabled on this server")
    return await requester(with_session=False)


def _session_json(session: SessionRecord, now_ms: int) -> dict[str, object]:
    return {
        "session_id": session.session_id,
        "device_id": session.device_id,
        "presence": session.presence,
        "last_active_ago": max(0, now_ms - session.last_active_ts),
        "expires_in_ms": max(0, session.expires_at_ms - now_ms),
    }


@bp.route("/sessions", methods=["POST"])
async def start_session() -> Response:
    """POST /_matrix/client/v3/sessions"""
    who = await _sessions_requester()
    body = await json_body(allow_empty=True)
    presence = get_str(body, "presence") or Presence.ONLINE
    if presence not in Presence.ALL:
        raise InvalidParam(f"Unknown presence {presence!r}")
    status_msg = get_str(body, "status_msg", max_len=MAX_STATUS_MSG)
    device_id = get_str(body, "device_id", max_len=255)
    if device_id is not None and device_id != who.device_id:
        raise Forbidden("device_id does not match the access token's device")
    eng = engine()
    session = await eng.sessions.start(
        who.user_id, who.device_id, presence, status_msg, replace=True
    )
    now = eng.clock.now_ms()
    return json_response(
        {
            "session_id": session.session_id,
            "presence": session.presence,
            "expires_in_ms": max(0, session.expires_at_ms - now),
        },
        headers={SESSION_HEADER: session.session_id},
    )


@bp.route("/sessions", methods=["GET"])
async def list_sessions() -> Response:
    """GET /_matrix/client/v3/sessions"""
    who = await _sessions_requester()
    eng = engine()
    now = eng.clock.now_ms()
    sessions = await eng.sessions.list(who.user_id)
    return json_response(
        {"sessions": [_session_json(s, now) for s in sessions if s.expires_at_ms > now]}
    )


@bp.route("/sessions/<session_id>", methods=["DELETE"])
async def end_session(session_id: str) -> Response:
    """DELETE /_matrix/client/v3/sessions/{sessionId}"""
    who = await _sessions_requester()
    await engine().sessions.end(who.user_id, session_id)
    return json_response({})
