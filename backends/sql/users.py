"""Users, devices and access tokens."""

from __future__ import annotations

from sqlalchemy import Connection, delete, func, select, update

from backends.errors import Conflict, NotFound
from backends.protocols import ProfileField
from backends.records import AccessToken, DeviceRecord, UserRecord
from backends.sql.codec import device_from_row, token_from_row, user_from_row
from backends.sql.common import insert_for
from backends.sql.database import Database
from backends.sql.schema import access_tokens, devices, txns, users


class SqlUserStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create_user(self, user: UserRecord) -> None:
        def run(conn: Connection) -> None:
            conn.execute(
                users.insert().values(
                    user_id=user.user_id,
                    password_hash=user.password_hash,
                    created_ts=user.created_ts,
                    displayname=user.displayname,
                    avatar_url=user.avatar_url,
                    is_admin=user.is_admin,
                )
            )

        await self._db.write(run, conflict=f"user {user.user_id} exists")

    async def get_user(self, user_id: str) -> UserRecord | None:
        def run(conn: Connection) -> UserRecord | None:
            row = conn.execute(select(users).where(users.c.user_id == user_id)).first()
            return None if row is None else user_from_row(row)

        return await self._db.read(run)

    async def list_user_ids(self, *, after: str | None, limit: int) -> list[str]:
        if limit <= 0:
            # SQLite reads a negative LIMIT as "no limit"; PostgreSQL rejects it.
            return []
        query = select(users.c.user_id).order_by(users.c.user_id).limit(limit)
        if after is not None:
            # The column's collation ("C" on PostgreSQL, BINARY on SQLite) wins over the
            # parameter's, so both comparison and order are code-point order.
            query = query.where(users.c.user_id > after)

        def run(conn: Connection) -> list[str]:
            return list(conn.execute(query).scalars())

        return await self._db.read(run)

    async def set_profile_field(self, user_id: str, field: ProfileField, value: str | None) -> None:
        column = {"displayname": users.c.displayname, "avatar_url": users.c.avatar_url}[field]

        def run(conn: Connection) -> None:
            result = conn.execute(
                update(users).where(users.c.user_id == user_id).values({column: value})
            )
            if result.rowcount == 0:
                raise NotFound(f"user {user_id}")

        await self._db.write(run)


class SqlDeviceStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add_device_with_token(self, device: DeviceRecord, token: AccessToken) -> None:
        def run(conn: Connection) -> None:
            taken = conn.execute(
                select(access_tokens.c.token).where(access_tokens.c.token == token.token)
            ).first()
            if taken is not None:
                raise Conflict("token exists")
            insert = insert_for(conn, devices).values(
                user_id=device.user_id,
                device_id=device.device_id,
                display_name=device.display_name,
                created_ts=device.created_ts,
                last_seen_ts=device.last_seen_ts,
            )
            # Always DO UPDATE (never DO NOTHING): it locks the device row, so concurrent
            # logins to one device run one after the other and each revokes the
            # tokens of the previous one.
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=[devices.c.user_id, devices.c.device_id],
                    set_={
                        "display_name": func.coalesce(
                            insert.excluded.display_name, devices.c.display_name
                        )
                    },
                )
            )
            conn.execute(
                delete(access_tokens).where(
                    access_tokens.c.user_id == device.user_id,
                    access_tokens.c.device_id == device.device_id,
                )
            )
            conn.execute(
                access_tokens.insert().values(
                    token=token.token,
                    user_id=device.user_id,
                    device_id=device.device_id,
                    created_ts=token.created_ts,
                )
            )

        await self._db.write(run, conflict="token exists")

    async def get_device(self, user_id: str, device_id: str) -> DeviceRecord | None:
        def run(conn: Connection) -> DeviceRecord | None:
            row = conn.execute(
                select(devices).where(
                    devices.c.user_id == user_id, devices.c.device_id == device_id
                )
            ).first()
            return None if row is None else device_from_row(row)

        return await self._db.read(run)

    async def list_devices(self, user_id: str) -> list[DeviceRecord]:
        def run(conn: Connection) -> list[DeviceRecord]:
            rows = conn.execute(
                select(devices).where(devices.c.user_id == user_id).order_by(devices.c.device_id)
            )
            return [device_from_row(row) for row in rows]

        return await self._db.read(run)

    async def update_device_display_name(
        self, user_id: str, device_id: str, display_name: str | None
    ) -> None:
        def run(conn: Connection) -> None:
            result = conn.execute(
                update(devices)
                .where(devices.c.user_id == user_id, devices.c.device_id == device_id)
                .values(display_name=display_name)
            )
            if result.rowcount == 0:
                raise NotFound(f"device {device_id}")

        await self._db.write(run)

    async def delete_device(self, user_id: str, device_id: str) -> bool:
        def run(conn: Connection) -> bool:
            _delete_devices(conn, user_id, [device_id])
            result = conn.execute(
                delete(devices).where(
                    devices.c.user_id == user_id, devices.c.device_id == device_id
                )
            )
            return result.rowcount > 0

        return await self._db.write(run)

    async def delete_all_devices(self, user_id: str) -> list[str]:
        def run(conn: Connection) -> list[str]:
            ids = list(
                conn.execute(
                    delete(devices)
                    .where(devices.c.user_id == user_id)
                    .returning(devices.c.device_id)
                ).scalars()
            )
            _delete_devices(conn, user_id, ids)
            return sorted(ids)

        return await self._db.write(run)

    async def get_token(self, token: str) -> AccessToken | None:
        def run(conn: Connection) -> AccessToken | None:
            row = conn.execute(select(access_tokens).where(access_tokens.c.token == token)).first()
            return None if row is None else token_from_row(row)

        return await self._db.read(run)


def _delete_devices(conn: Connection, user_id: str, device_ids: list[str]) -> None:
    """Delete the tokens and transaction ids of the devices (not the devices)."""
    if not device_ids:
        return
    conn.execute(
        delete(access_tokens).where(
            access_tokens.c.user_id == user_id, access_tokens.c.device_id.in_(device_ids)
        )
    )
    conn.execute(delete(txns).where(txns.c.user_id == user_id, txns.c.device_id.in_(device_ids)))
