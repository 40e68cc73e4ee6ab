"""Users, devices, access tokens and profiles."""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass

import trio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from backends import Conflict, NotFound, Storage
from backends.records import AccessToken, DeviceRecord, UserRecord
from homeserver.clock import Clock
from homeserver.errors import Forbidden, MatrixError, NotFoundError
from homeserver.types import (
    LOCALPART_RE,
    MAX_USER_ID_LENGTH,
    is_user_id,
    localpart_of,
    server_name_of,
)
from plugins.api import UserRegistered

MAX_PASSWORD_LENGTH = 512
MAX_DEVICE_ID_LENGTH = 255
MAX_DISPLAY_NAME_LENGTH = 256


@dataclass(frozen=True)
class LoginResult:
    user_id: str
    device_id: str
    access_token: str


def new_access_token() -> str:
    # 256 random bits; the prefix makes leaked tokens recognisable to secret scanners.
    return "hs_" + secrets.token_urlsafe(32)


def new_device_id() -> str:
    return "".join(secrets.choice(string.ascii_uppercase) for _ in range(10))


class Accounts:
    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        server_name: str,
        *,
        hash_time_cost: int,
        hash_memory_kib: int,
        signal: Callable[[str, object], None] = lambda kind, payload: None,
        reserved_localparts: frozenset[str] = frozenset(),
    ) -> None:
        self._storage = storage
        self._signal = signal
        # Names the server keeps for itself (the server-notices user).
        self.reserved_localparts = reserved_localparts
        self._clock = clock
        self.server_name = server_name
        self._hasher = PasswordHasher(time_cost=hash_time_cost, memory_cost=hash_memory_kib)
        self._hash_limiter = trio.CapacityLimiter(2)
        self._dummy_hash: str | None = None

    # -- identifiers -------------------------------------------------------------------

    def user_id_for(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    def validate_localpart(self, localpart: str) -> str:
        if not LOCALPART_RE.fullmatch(localpart):
            raise MatrixError(
                400,
                "M_INVALID_USERNAME",
                "User ID can only contain characters a-z, 0-9, or '=_-.+'",
            )
        if "/" in localpart:
            # The grammar allows '/', but such a user id cannot be a path segment: ASGI
            # servers decode %2F before routing, so /user/{userId}/... would not match.
            raise MatrixError(400, "M_INVALID_USERNAME", "User ID may not contain '/'")
        if localpart.startswith("_"):
            raise MatrixError(400, "M_INVALID_USERNAME", "User ID may not begin with '_'")
        if len(self.user_id_for(localpart)) > MAX_USER_ID_LENGTH:
            raise MatrixError(400, "M_INVALID_USERNAME", "User ID is too long")
        return localpart

    def is_local(self, user_id: str) -> bool:
        return is_user_id(user_id) and server_name_of(user_id) == self.server_name

    # -- hashing (argon2id, in a worker thread: it costs tens of ms of CPU) ------------

    async def _hash(self, password: str) -> str:
        return await trio.to_thread.run_sync(
            self._hasher.hash, password, limiter=self._hash_limiter
        )

    async def _verify(self, password_hash: str, password: str) -> bool:
        def verify() -> bool:
            try:
                return self._hasher.verify(password_hash, password)
            except (VerificationError, InvalidHashError):
                return False

        return await trio.to_thread.run_sync(verify, limiter=self._hash_limiter)

    # -- registration and login -------------------------------------------------------

    async def is_available(self, localpart: str) -> bool:
        self.validate_localpart(localpart)
        if localpart in self.reserved_localparts:
            return False
        return await self._storage.users.get_user(self.user_id_for(localpart)) is None

    async def register(
        self,
        localpart: str,
        password: str,
        *,
        device_id: str | None,
        device_display_name: str | None,
        inhibit_login: bool,
    ) -> tuple[str, LoginResult | None]:
        self.validate_localpart(localpart)
        user_id = self.user_id_for(localpart)
        if localpart in self.reserved_localparts:
            raise MatrixError(400, "M_USER_IN_USE", "User ID reserved by the server.")
        if await self._storage.users.get_user(user_id) is not None:
            raise MatrixError(400, "M_USER_IN_USE", "User ID already taken.")
        password_hash = await self._hash(password)
        user = UserRecord(
            user_id=user_id, password_hash=password_hash, created_ts=self._clock.now_ms()
        )
        try:
            await self._storage.users.create_user(user)
        except Conflict:
            raise MatrixError(400, "M_USER_IN_USE", "User ID already taken.") from None
        self._signal("on_user_registered", UserRegistered(user_id))
        if inhibit_login:
            return user_id, None
        return user_id, await self._new_login(user_id, device_id, device_display_name)

    async def login_password(
        self,
        user: str,
        password: str,
        *,
        device_id: str | None,
        device_display_name: str | None,
    ) -> LoginResult:
        user_id = user if user.startswith("@") else self.user_id_for(user.lower())
        record = await self._storage.users.get_user(user_id) if self.is_local(user_id) else None
        if record is None or record.password_hash is None:
            # Spend the same work as a real check so timing does not reveal who exists.
            if self._dummy_hash is None:
                self._dummy_hash = await self._hash(secrets.token_hex(16))
            await self._verify(self._dummy_hash, password)
            raise Forbidden("Invalid username or password")
        if not await self._verify(record.password_hash, password):
            raise Forbidden("Invalid username or password")
        return await self._new_login(user_id, device_id, device_display_name)

    async def _new_login(
        self, user_id: str, device_id: str | None, display_name: str | None
    ) -> LoginResult:
        device_id = device_id or new_device_id()
        now = self._clock.now_ms()
        token = AccessToken(
            token=new_access_token(), user_id=user_id, device_id=device_id, created_ts=now
        )
        device = DeviceRecord(
            user_id=user_id, device_id=device_id, display_name=display_name, created_ts=now
        )
        await self._storage.devices.add_device_with_token(device, token)
        return LoginResult(user_id=user_id, device_id=device_id, access_token=token.token)

    # -- tokens and devices -----------------------------------------------------------

    async def list_devices(self, user_id: str) -> list[DeviceRecord]:
        return await self._storage.devices.list_devices(user_id)

    async def get_device(self, user_id: str, device_id: str) -> DeviceRecord:
        device = await self._storage.devices.get_device(user_id, device_id)
        if device is None:
            raise NotFoundError("Device not found")
        return device

    async def set_device_display_name(
        self, user_id: str, device_id: str, display_name: str | None
    ) -> None:
        try:
            await self._storage.devices.update_device_display_name(user_id, device_id, display_name)
        except NotFound:
            raise NotFoundError("Device not found") from None

    # -- profiles ---------------------------------------------------------------------

    async def get_profile(self, user_id: str) -> UserRecord:
        user = await self._storage.users.get_user(user_id) if is_user_id(user_id) else None
        if user is None:
            raise NotFoundError("Profile not found")
        return user

    async def displayname_of(self, user_id: str) -> str:
        user = await self._storage.users.get_user(user_id)
        if user is not None and user.displayname:
            return user.displayname
        return localpart_of(user_id)
