"""Client-facing errors. Every one becomes `{"errcode", "error"}` JSON with its status."""

from __future__ import annotations

from typing import Any


class MatrixError(Exception):
    """An error the client is meant to see, with its HTTP status and Matrix errcode."""

    def __init__(
        self,
        status: int,
        errcode: str,
        message: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.errcode = errcode
        self.message = message
        self.extra = extra or {}
        self.headers = headers or {}

    def to_json(self) -> dict[str, Any]:
        return {"errcode": self.errcode, "error": self.message, **self.extra}


class Forbidden(MatrixError):
    def __init__(self, message: str, errcode: str = "M_FORBIDDEN") -> None:
        super().__init__(403, errcode, message)


class NotFoundError(MatrixError):
    def __init__(self, message: str) -> None:
        super().__init__(404, "M_NOT_FOUND", message)


class BadJson(MatrixError):
    def __init__(self, message: str) -> None:
        super().__init__(400, "M_BAD_JSON", message)


class NotJson(MatrixError):
    def __init__(self, message: str = "Content not JSON.") -> None:
        super().__init__(400, "M_NOT_JSON", message)


class InvalidParam(MatrixError):
    def __init__(self, message: str) -> None:
        super().__init__(400, "M_INVALID_PARAM", message)


class MissingParam(MatrixError):
    def __init__(self, message: str) -> None:
        super().__init__(400, "M_MISSING_PARAM", message)


class MissingToken(MatrixError):
    def __init__(self) -> None:
        super().__init__(401, "M_MISSING_TOKEN", "Missing access token")


class UnknownToken(MatrixError):
    def __init__(self, message: str = "Unknown or expired access token") -> None:
        super().__init__(401, "M_UNKNOWN_TOKEN", message, extra={"soft_logout": False})


class Unrecognized(MatrixError):
    def __init__(self, status: int = 404, message: str = "Unrecognized request") -> None:
        super().__init__(status, "M_UNRECOGNIZED", message)


class LimitExceeded(MatrixError):
    def __init__(self, message: str, retry_after_ms: int) -> None:
        super().__init__(429, "M_LIMIT_EXCEEDED", message, extra={"retry_after_ms": retry_after_ms})
