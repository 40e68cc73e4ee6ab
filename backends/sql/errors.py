"""Driver exceptions as `backends.errors`, mapped at the SQL backend's edge."""

from __future__ import annotations

import sqlalchemy.exc

from backends.errors import BackendUnavailable, Conflict, StorageError


def map_error(exc: BaseException, conflict: str | None = None) -> StorageError:
    """The `backends.errors` exception for a driver (or other) exception.

    Messages carry the driver's first line only: SQLAlchemy's own text includes the
    statement's parameters, which may hold secrets such as access tokens.
    """
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        detail = first_line(exc.orig) if exc.orig is not None else type(exc).__name__
        if isinstance(exc, sqlalchemy.exc.IntegrityError):
            if conflict is not None:
                return Conflict(conflict)
            return StorageError(f"integrity error: {detail}")
        if exc.connection_invalidated or isinstance(
            exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError
        ):
            return BackendUnavailable(f"database unavailable: {detail}")
        return StorageError(f"database error: {detail}")
    if isinstance(exc, sqlalchemy.exc.TimeoutError | sqlalchemy.exc.DisconnectionError):
        return BackendUnavailable(f"database unavailable: {first_line(exc)}")
    return StorageError(f"database error ({type(exc).__name__}): {first_line(exc)}")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
