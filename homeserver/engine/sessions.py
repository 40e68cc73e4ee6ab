"""Sessions: groups of requests from one device, the scope of presence and typing.

Per request (the hot path) this costs one storage round trip (token and session
together), plus a touch of the session's deadline at most about once per
`touch_coalesce_ms`. A session expires `timeout_ms` after the end of its last request
(never earlier; up to `touch_coalesce_ms` later). Requests in flight keep their session
alive: a keepalive loop pushes their deadlines forward while they run.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import trio

from backends import Storage
from backends.records import Presence, SessionRecord
from homeserver.clock import Clock
from homeserver.engine.deadlines import DeadlineLoop
from homeserver.engine.presence import PresenceService
from homeserver.engine.typing_state import TypingService
from homeserver.errors import Forbidden, InvalidParam, MatrixError, NotFoundError, UnknownToken
from homeserver.types import Requester
from plugins.api import SessionSignal

log = logging.getLogger("homeserver.sessions")

SESSION_HEADER = "Matrix-Session"
_SESSION_ID_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


def _session_signal(session: SessionRecord) -> SessionSignal:
    return SessionSignal(
        user_id=session.user_id,
        device_id=session.device_id,
        session_id=session.session_id,
        presence=session.presence,
    )


def new_session_id() -> str:
    return secrets.token_urlsafe(18)


class RequestLease:
    """A request's hold on the session it runs in, from `Sessions.begin_request` to
    `Sessions.finish_request`. Callers read `requester`; the rest is the engine's."""

    __slots__ = ("_stored_deadline", "requester")

    def __init__(self, requester: Requester, stored_deadline: int | None) -> None:
        self.requester = requester
        self._stored_deadline = stored_deadline


class SessionExpired(MatrixError):
    """409: the session named by the request is gone; `session_id` is the one to use."""

    def __init__(self, session_id: str) -> None:
        super().__init__(
            409,
            "M_SESSION_EXPIRED",
            "The session has expired or is unknown; re-establish typing and presence in "
            "the session given, then retry",
            extra={"session_id": session_id},
            headers={SESSION_HEADER: session_id},
        )


@dataclass(frozen=True)
class SessionConfig:
    enabled: bool
    timeout_ms: int
    touch_coalesce_ms: int


class Sessions:
    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        presence: PresenceService,
        typing: TypingService,
        config: SessionConfig,
        signal: Callable[[str, object], None] = lambda kind, payload: None,
    ) -> None:
        self._storage = storage
        self._signal = signal
        self._clock = clock
        self._presence = presence
        self._typing = typing
        self.config = config
        self._in_flight: dict[str, int] = {}
        # The deadline this process last wrote per session: concurrent requests of a
        # session that all read the same stored deadline write it once, not each.
        self._written: dict[str, int] = {}
        # How often the keepalive loop pushes the deadlines of sessions in flight.
        self.keepalive_period_s = max(config.timeout_ms / 3000, 0.05)
        self.expiry = DeadlineLoop(
            "session-expiry",
            clock,
            storage.sessions.take_expired_sessions,
            storage.sessions.next_session_deadline,
            self._expired,
        )

    # -- the hot path -----------------------------------------------------------------

    async def begin_request(
        self, access_token: str, session_id: str | None, *, with_session: bool = True
    ) -> RequestLease:
        """Authenticate a request and, unless `with_session` is False (session
        management, logout) or sessions are disabled, resolve the session it runs in
        (starting one if the device has none) and book the request's start in it.
        Every lease must be given back to `finish_request`. Raises UnknownToken,
        SessionExpired (409), Forbidden or InvalidParam."""
        if not with_session or not self.config.enabled:
            token = await self._storage.devices.get_token(access_token)
            if token is None:
                raise UnknownToken()
            return RequestLease(Requester(token.user_id, token.device_id), None)
        requester, stored_deadline = await self._authenticate(access_token, session_id)
        assert requester.session_id is not None
        return RequestLease(requester, await self._request_started(requester, stored_deadline))

    async def finish_request(self, lease: RequestLease) -> None:
        """Book the end of the request: the session's deadline moves to now + timeout
        (written only when it moves by at least the coalescing window)."""
        sid = lease.requester.session_id
        if sid is None:
            return
        count = self._in_flight.get(sid, 0) - 1
        if count > 0:
            self._in_flight[sid] = count
        else:
            self._in_flight.pop(sid, None)
        await self._touch(sid, lease._stored_deadline)

    async def _authenticate(
        self, access_token: str, session_id: str | None
    ) -> tuple[Requester, int]:
        """The token's requester in its session, and that session's stored deadline."""
        if session_id is not None and not _SESSION_ID_RE.match(session_id):
            raise InvalidParam("Malformed session id")
        lookup = await self._storage.sessions.authenticate(access_token, session_id)
        if lookup is None:
            raise UnknownToken()
        user_id, device_id = lookup.token.user_id, lookup.token.device_id
        session = lookup.session
        now = self._clock.now_ms()
        if session is not None and (session.user_id, session.device_id) != (user_id, device_id):
            raise Forbidden("The session belongs to another device")
        if session is not None and session.expires_at_ms <= now:
            await self._end(session.session_id)
            session = None
        if session is None:
            active = await self._active_or_start(user_id, device_id, now)
            if session_id is not None:
                raise SessionExpired(active.session_id)
            session = active
        return Requester(user_id, device_id, session.session_id), session.expires_at_ms

    async def _active_or_start(self, user_id: str, device_id: str, now: int) -> SessionRecord:
        """The device's live active session, or a new one (online, no typing)."""
        for _ in range(3):
            started = await self.start(user_id, device_id, Presence.ONLINE, None, replace=False)
            if started.expires_at_ms > now:
                return started
            await self._end(started.session_id)
        raise MatrixError(500, "M_UNKNOWN", "Could not start a session")

    @property
    def in_flight_requests(self) -> int:
        """Requests of this process that are running in a session right now."""
        return sum(self._in_flight.values())

    async def _request_started(self, requester: Requester, stored_deadline: int) -> int | None:
        """While the request runs, the keepalive loop keeps its session alive. A
        deadline too near for the loop's next pass to move in time is moved now, or
        the session could expire under a request in flight (a client idle for most of
        the timeout that then long-polls). Returns the deadline stored for the
        session."""
        sid = requester.session_id
        assert sid is not None
        period_ms = self.keepalive_period_s * 1000
        deadline: int | None = stored_deadline
        if stored_deadline - self._clock.now_ms() <= 2 * period_ms:
            deadline = await self._touch(sid, stored_deadline)
        self._in_flight[sid] = self._in_flight.get(sid, 0) + 1
        return deadline

    async def _touch(self, session_id: str, stored_deadline: int | None) -> int | None:
        """Move the session's deadline to now + timeout unless it is already there;
        returns the deadline now stored (`stored_deadline` if the session is gone)."""
        now = self._clock.now_ms()
        wanted = now + self.config.timeout_ms
        known = max(stored_deadline or 0, self._written.get(session_id, 0))
        if known >= wanted:
            return known
        # Write a little ahead so the next window's requests need no write; recorded
        # before the write so requests finishing meanwhile do not write it again.
        deadline = wanted + self.config.touch_coalesce_ms
        self._written[session_id] = deadline
        if await self._storage.sessions.touch_session(session_id, now, deadline):
            return deadline
        self._written.pop(session_id, None)
        return stored_deadline

    # -- lifecycle ----------------------------------------------------------------------

    async def start(
        self,
        user_id: str,
        device_id: str,
        presence: str,
        status_msg: str | None,
        *,
        replace: bool,
    ) -> SessionRecord:
        """Start a session for the device (replace=True: explicitly, ending the device's
        active one; replace=False: only if the device has none)."""
        now = self._clock.now_ms()
        record = SessionRecord(
            session_id=new_session_id(),
            user_id=user_id,
            device_id=device_id,
            presence=presence,
            status_msg=status_msg,
            created_ts=now,
            last_active_ts=now,
            expires_at_ms=now + self.config.timeout_ms + self.config.touch_coalesce_ms,
        )
        result = await self._storage.sessions.start_session(record, replace=replace)
        if result.replaced is not None:
            await self._end(result.replaced.session_id, recompute=False)
        if result.session.session_id == record.session_id:
            self.expiry.deadline_set(record.expires_at_ms)
            await self._presence.recompute(user_id)
            self._signal("on_session_started", _session_signal(record))
        return result.session

    async def end(self, user_id: str, session_id: str) -> None:
        """DELETE /sessions/{id}: end one of the user's own sessions."""
        session = await self._storage.sessions.get_session(session_id)
        if session is None:
            raise NotFoundError("Unknown or already ended session")
        if session.user_id != user_id:
            raise Forbidden("The session belongs to another user")
        ended = await self._end(session_id)
        # A session past its deadline has already ended, even if not yet reaped.
        if ended is None or ended.expires_at_ms <= self._clock.now_ms():
            raise NotFoundError("Unknown or already ended session")

    async def logout(self, requester: Requester) -> None:
        """Revoke the device (its tokens) and end its sessions. Token first: once it is
        gone, no request can start a new session for the device."""
        await self._storage.devices.delete_device(requester.user_id, requester.device_id)
        await self.end_device(requester.user_id, requester.device_id)

    async def logout_all(self, requester: Requester) -> None:
        """Revoke every device of the user, then end all of the user's sessions."""
        await self._storage.devices.delete_all_devices(requester.user_id)
        await self.end_user(requester.user_id)

    async def end_device(self, user_id: str, device_id: str) -> None:
        """Logout: end every session of the device."""
        ended = await self._storage.sessions.end_device_sessions(user_id, device_id)
        await self._after_end(ended)

    async def end_user(self, user_id: str) -> None:
        """Logout from all devices: end every session of the user (presence is
        recomputed once, after the last)."""
        ended: list[SessionRecord] = []
        for session in await self._storage.sessions.list_user_sessions(user_id):
            record = await self._storage.sessions.end_session(session.session_id)
            if record is not None:
                ended.append(record)
        await self._after_end(ended)

    async def _end(self, session_id: str, *, recompute: bool = True) -> SessionRecord | None:
        session = await self._storage.sessions.end_session(session_id)
        self._written.pop(session_id, None)
        if session is not None:
            await self._typing.end_session(session_id)
            if recompute:
                await self._presence.recompute(session.user_id)
            self._signal("on_session_ended", _session_signal(session))
        return session

    async def _after_end(self, sessions: Sequence[SessionRecord]) -> None:
        for session in sessions:
            self._written.pop(session.session_id, None)
        for session in sessions:
            await self._typing.end_session(session.session_id)
        for user_id in sorted({s.user_id for s in sessions}):
            await self._presence.recompute(user_id)
        for session in sessions:
            self._signal("on_session_ended", _session_signal(session))

    async def _expired(self, sessions: Sequence[SessionRecord]) -> None:
        log.debug("%d session(s) expired", len(sessions))
        await self._after_end(sessions)

    async def set_presence(
        self,
        requester: Requester,
        presence: str,
        status_msg: str | None = None,
        *,
        keep_status: bool = False,
    ) -> None:
        """Set the desired presence of the request's session (and its status message,
        unless keep_status). Nothing is written when nothing changes."""
        if presence not in Presence.ALL:
            raise InvalidParam(f"Unknown presence {presence!r}")
        if requester.session_id is None:
            return
        session = await self._storage.sessions.get_session(requester.session_id)
        if session is None:
            return
        if keep_status:
            status_msg = session.status_msg
        if (session.presence, session.status_msg) == (presence, status_msg):
            return
        updated = await self._storage.sessions.set_session_presence(
            requester.session_id, presence, status_msg
        )
        if updated is not None:
            await self._presence.recompute(requester.user_id)

    async def list(self, user_id: str) -> list[SessionRecord]:
        return await self._storage.sessions.list_user_sessions(user_id)

    # -- loops --------------------------------------------------------------------------

    async def keepalive(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Push forward the deadlines of sessions with requests in flight here."""
        task_status.started()
        while True:
            await trio.sleep(self.keepalive_period_s)
            for session_id in list(self._in_flight):
                try:
                    await self._touch(session_id, None)
                except Exception:
                    log.exception("keepalive touch failed for a session")
