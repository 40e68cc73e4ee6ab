"""Tokens and sessions from memory: the request hot path without a storage round trip.

`AuthModel` holds four bounded caches: access token -> owner, session id -> session,
device -> its active session, user -> the ids of all of their sessions (presence is
derived from them on every change). `CachedDevices` and `CachedSessions` implement the
storage protocols over the real stores and keep the caches current: every write goes
to the store first and the cache follows only once it has returned (or failed: then
the entries it may have touched are dropped). Nothing acknowledged depends on the
cache; a miss reads through and fills (see `cache.FillGuard`).

Revocation takes effect on the very next request: deleting a device (logout), all of
a user's devices (logout/all), or logging in again on a device (which revokes its old
tokens) drops the tokens from the cache once the store has deleted them.

Each revocation is also published on the change feed (`homeserver/changefeed.py`), by
device and never by token: "token_revoked" (a login on a device revoked its earlier
tokens) and "device_deleted" (one device, or all of a user's). This process applied it
already; another process sharing the store drops the same entries from its own caches
(`readmodel/changes.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from backends.protocols import AuthLookup, DeviceStore, SessionStart, SessionStore
from backends.records import AccessToken, DeviceRecord, SessionRecord
from homeserver.changefeed import ChangeFeed
from homeserver.locks import KeyedLock
from homeserver.readmodel.cache import ANY_KEY, BoundedCache, Ticket, reading, writing

Device = tuple[str, str]


@dataclass(frozen=True)
class AuthLimits:
    tokens: int = 100_000
    sessions: int = 100_000


class AuthModel:
    def __init__(self, limits: AuthLimits) -> None:
        self.tokens: BoundedCache[str, AccessToken] = BoundedCache(
            "tokens", limits.tokens, on_evict=self._token_evicted
        )
        self.sessions: BoundedCache[str, SessionRecord] = BoundedCache(
            "sessions", limits.sessions, on_evict=self._session_evicted
        )
        self.active: BoundedCache[Device, str] = BoundedCache("active_sessions", limits.sessions)
        # user -> the ids of all of the user's sessions in the store (what
        # list_user_sessions answers, with the records from `sessions`: an entry
        # counts only while every one of its sessions is cached).
        self.user_sessions: BoundedCache[str, frozenset[str]] = BoundedCache(
            "user_sessions", limits.sessions
        )
        # user -> device -> tokens cached: what a revocation must drop.
        self._by_device: dict[str, dict[str, set[str]]] = {}
        # device -> the ids of its sessions cached.
        self._device_sessions: dict[Device, set[str]] = {}

    def caches(self) -> list[BoundedCache[Any, Any]]:
        return [self.tokens, self.sessions, self.active, self.user_sessions]

    def clear(self) -> None:
        for cache in self.caches():
            cache.clear()
        self._by_device.clear()
        self._device_sessions.clear()

    # -- tokens -------------------------------------------------------------------------

    def remember_token(self, ticket: Ticket, token: AccessToken) -> None:
        if self.tokens.fill(ticket, token.token, token):
            devices = self._by_device.setdefault(token.user_id, {})
            devices.setdefault(token.device_id, set()).add(token.token)
        else:
            self._token_evicted(token.token, token)  # the refused fill dropped it

    def _token_evicted(self, key: str, token: AccessToken) -> None:
        devices = self._by_device.get(token.user_id)
        if devices is None:
            return
        tokens = devices.get(token.device_id)
        if tokens is not None:
            tokens.discard(key)
            if not tokens:
                del devices[token.device_id]
        if not devices:
            del self._by_device[token.user_id]

    def revoke_device(self, user_id: str, device_id: str) -> None:
        self.tokens.guard.moved()
        devices = self._by_device.get(user_id, {})
        for key in devices.pop(device_id, set()):
            self.tokens.pop(key)
        if not devices:
            self._by_device.pop(user_id, None)

    def revoke_user(self, user_id: str) -> None:
        self.tokens.guard.moved()
        for tokens in self._by_device.pop(user_id, {}).values():
            for key in tokens:
                self.tokens.pop(key)

    # -- sessions -----------------------------------------------------------------------

    def remember_session(
        self, ticket: Ticket, session: SessionRecord, *, guarded_by: object = None
    ) -> bool:
        """Keep what an operation that took `ticket` found or stored, unless a write
        of that session came between (then the entry is dropped)."""
        if not self.sessions.fill(ticket, session.session_id, session, guarded_by=guarded_by):
            self._unindex(session.session_id, (session.user_id, session.device_id))
            return False
        self._device_sessions.setdefault((session.user_id, session.device_id), set()).add(
            session.session_id
        )
        return True

    def _session_evicted(self, session_id: str, session: SessionRecord) -> None:
        self._unindex(session_id, (session.user_id, session.device_id))

    def _unindex(self, session_id: str, device: Device) -> None:
        ids = self._device_sessions.get(device)
        if ids is not None:
            ids.discard(session_id)
            if not ids:
                del self._device_sessions[device]
        if self.active.peek(device) == session_id:
            self.active.pop(device)

    def forget_session(self, session_id: str) -> None:
        session = self.sessions.pop(session_id)
        if session is not None:
            self._unindex(session_id, (session.user_id, session.device_id))

    def forget_device_sessions(self, user_id: str, device_id: str) -> None:
        self.sessions.guard.moved()
        self.active.pop((user_id, device_id))
        for session_id in self._device_sessions.pop((user_id, device_id), set()):
            self.sessions.pop(session_id)

    def forget_user_sessions(self, user_id: str) -> None:
        """Every cached session of every device of the user (a scan: rare)."""
        self.sessions.guard.moved()
        devices = {device for device in self._device_sessions if device[0] == user_id}
        devices.update(device for device in self.active if device[0] == user_id)
        for device in devices:
            self.forget_device_sessions(*device)

    def lookup(self, token: str, session_id: str | None) -> AuthLookup | None:
        """The answer `SessionStore.authenticate` would give, if memory knows it all."""
        owner = self.tokens.get(token)
        if owner is None:
            return None
        if session_id is None:
            session_id = self.active.get((owner.user_id, owner.device_id))
            if session_id is None:
                return None
        session = self.sessions.get(session_id)
        if session is None:
            return None
        return AuthLookup(owner, session)


class CachedDevices:
    """`DeviceStore` with the token -> owner lookup from memory."""

    def __init__(self, inner: DeviceStore, model: AuthModel, feed: ChangeFeed) -> None:
        self._inner = inner
        self._model = model
        self._feed = feed

    async def add_device_with_token(self, device: DeviceRecord, token: AccessToken) -> None:
        try:
            await self._inner.add_device_with_token(device, token)
        finally:
            # The store revoked the device's earlier tokens (or may have, if the call
            # failed after it wrote).
            self._model.revoke_device(device.user_id, device.device_id)
            self._feed.publish(
                stream="none",
                pos=0,
                kind="token_revoked",
                user_ids=(device.user_id,),
                payload={"device_id": device.device_id},
            )

    async def get_device(self, user_id: str, device_id: str) -> DeviceRecord | None:
        return await self._inner.get_device(user_id, device_id)

    async def list_devices(self, user_id: str) -> list[DeviceRecord]:
        return await self._inner.list_devices(user_id)

    async def update_device_display_name(
        self, user_id: str, device_id: str, display_name: str | None
    ) -> None:
        await self._inner.update_device_display_name(user_id, device_id, display_name)

    async def delete_device(self, user_id: str, device_id: str) -> bool:
        try:
            return await self._inner.delete_device(user_id, device_id)
        finally:
            self._model.revoke_device(user_id, device_id)
            self._feed.publish(
                stream="none",
                pos=0,
                kind="device_deleted",
                user_ids=(user_id,),
                payload={"device_id": device_id},
            )

    async def delete_all_devices(self, user_id: str) -> list[str]:
        try:
            return await self._inner.delete_all_devices(user_id)
        finally:
            self._model.revoke_user(user_id)
            self._feed.publish(stream="none", pos=0, kind="device_deleted", user_ids=(user_id,))

    async def get_token(self, token: str) -> AccessToken | None:
        cached = self._model.tokens.get(token)
        if cached is not None:
            return cached
        with reading(self._model.tokens, token) as ticket:
            found = await self._inner.get_token(token)
            if found is not None:
                self._model.remember_token(ticket, found)
        return found


class CachedSessions:
    """`SessionStore` with `authenticate` (the hot path) and `get_session` from memory."""

    def __init__(self, inner: SessionStore, model: AuthModel) -> None:
        self._inner = inner
        self._model = model
        # This process's writes of one session (deadline, presence, end) one at a time:
        # two in flight would refuse each other's fill (the guard cannot tell which the
        # store applied last), and the session would drop out of the cache.
        self._writes = KeyedLock()

    async def authenticate(self, token: str, session_id: str | None) -> AuthLookup | None:
        known = self._model.lookup(token, session_id)
        if known is not None:
            return known
        tokens, sessions = self._model.tokens, self._model.sessions
        # Without an id, which session the store finds is not known beforehand.
        key: object = ANY_KEY if session_id is None else session_id
        with reading(tokens, token) as token_ticket, reading(sessions, key) as ticket:
            found = await self._inner.authenticate(token, session_id)
            if found is None:
                return None
            self._model.remember_token(token_ticket, found.token)
            session = found.session
            kept = session is not None and self._model.remember_session(
                ticket, session, guarded_by=key
            )
            if kept and session is not None and session_id is None:
                self._model.active.put((session.user_id, session.device_id), session.session_id)
        return found

    async def start_session(self, session: SessionRecord, *, replace: bool) -> SessionStart:
        try:
            with writing(self._model.user_sessions, session.user_id):
                try:
                    result = await self._inner.start_session(session, replace=replace)
                finally:
                    # The user's set of sessions changed (or may have).
                    self._model.user_sessions.pop(session.user_id)
        finally:
            # Which session is the device's active one is settled by the store: any
            # fill of this device in flight is refused.
            self._model.forget_device_sessions(session.user_id, session.device_id)
        stored = result.session
        with reading(self._model.sessions, stored.session_id) as ticket:
            if self._model.remember_session(ticket, stored):
                self._model.active.put((stored.user_id, stored.device_id), stored.session_id)
        return result

    async def get_session(self, session_id: str) -> SessionRecord | None:
        cached = self._model.sessions.get(session_id)
        if cached is not None:
            return cached
        with reading(self._model.sessions, session_id) as ticket:
            found = await self._inner.get_session(session_id)
            if found is not None:
                self._model.remember_session(ticket, found)
        return found

    async def touch_session(self, session_id: str, last_active_ts: int, expires_at_ms: int) -> bool:
        sessions = self._model.sessions
        async with self._writes.hold(session_id):
            with writing(sessions, session_id) as ticket:
                touched = await self._inner.touch_session(session_id, last_active_ts, expires_at_ms)
                cached = sessions.peek(session_id)
                if not touched:
                    self._model.forget_session(session_id)
                elif cached is not None:
                    self._model.remember_session(
                        ticket,
                        replace(cached, last_active_ts=last_active_ts, expires_at_ms=expires_at_ms),
                    )
        return touched

    async def set_session_presence(
        self, session_id: str, presence: str, status_msg: str | None
    ) -> SessionRecord | None:
        async with self._writes.hold(session_id):
            with writing(self._model.sessions, session_id) as ticket:
                updated = await self._inner.set_session_presence(session_id, presence, status_msg)
                if updated is None:
                    self._model.forget_session(session_id)
                else:
                    self._model.remember_session(ticket, updated)
        return updated

    async def end_session(self, session_id: str) -> SessionRecord | None:
        # Whose session it is may not be known beforehand: the user's entry misses
        # anyway once this session leaves the cache (see list_user_sessions).
        async with self._writes.hold(session_id):
            with writing(self._model.sessions, session_id):
                try:
                    return await self._inner.end_session(session_id)
                finally:
                    self._model.forget_session(session_id)
                    self._model.user_sessions.guard.moved()

    async def end_device_sessions(self, user_id: str, device_id: str) -> list[SessionRecord]:
        try:
            with writing(self._model.user_sessions, user_id):
                try:
                    return await self._inner.end_device_sessions(user_id, device_id)
                finally:
                    self._model.user_sessions.pop(user_id)
        finally:
            self._model.forget_device_sessions(user_id, device_id)

    async def list_user_sessions(self, user_id: str) -> list[SessionRecord]:
        """From memory when the user's session ids and every one of those sessions are
        cached (a session dropped from the cache, ended or expired, makes it a miss);
        else read through, and remember them all."""
        model = self._model
        ids = model.user_sessions.get(user_id)
        if ids is not None:
            records = [model.sessions.peek(session_id) for session_id in ids]
            known = [r for r in records if r is not None]
            if len(known) == len(records):
                return sorted(known, key=lambda s: (s.created_ts, s.session_id))
        with (
            reading(model.user_sessions, user_id) as ticket,
            reading(model.sessions, ANY_KEY) as sessions_ticket,
        ):
            found = await self._inner.list_user_sessions(user_id)
            kept = [model.remember_session(sessions_ticket, s, guarded_by=ANY_KEY) for s in found]
            if all(kept):
                model.user_sessions.fill(ticket, user_id, frozenset(s.session_id for s in found))
        return found

    async def take_expired_sessions(self, now_ms: int, limit: int) -> list[SessionRecord]:
        taken = await self._inner.take_expired_sessions(now_ms, limit)
        model = self._model
        for session in taken:
            # A read of it in flight may come back with it: it must not fill.
            model.sessions.guard.wrote(session.session_id)
            model.user_sessions.guard.wrote(session.user_id)
            model.forget_session(session.session_id)
            model.user_sessions.pop(session.user_id)
        return taken

    async def next_session_deadline(self) -> int | None:
        return await self._inner.next_session_deadline()
