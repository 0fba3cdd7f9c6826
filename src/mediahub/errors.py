"""Domain errors with stable codes.

Services raise these and know nothing of HTTP; `mediahub.api.errors` maps each
category to a status code, the CLI prints code and message.
"""

from __future__ import annotations

import re
from typing import Any


class MediaHubError(Exception):
    """Base error: a stable machine-readable `code` and a one-line message."""

    category = "invalid"
    default_code = "invalid_input"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = details

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors raised in a pixel worker process cross back by pickle: keep code and details.
        return (_rebuild, (type(self), self.message, self.code, self.details))

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}


class InvalidInput(MediaHubError):
    """The request or file is malformed (corrupt image, bad field, bad id)."""


class MalformedRequest(MediaHubError):
    """The request itself cannot be parsed (broken multipart or JSON framing)."""

    category = "malformed"
    default_code = "malformed_request"


class TooLarge(MediaHubError):
    category = "too_large"
    default_code = "too_large"


class UnsupportedType(MediaHubError):
    category = "unsupported"
    default_code = "unsupported_type"


class LimitExceeded(MediaHubError):
    """Over a pixel, frame or duration limit: refused before decoding."""

    default_code = "too_many_pixels"


class NotFound(MediaHubError):
    category = "not_found"
    default_code = "not_found"


class Unauthenticated(MediaHubError):
    """No credentials, or credentials that do not verify."""

    category = "unauthenticated"
    default_code = "unauthenticated"


class RateLimited(MediaHubError):
    """Too many requests of one kind from one principal; `retry_after` says when to come back."""

    category = "rate_limited"
    default_code = "rate_limited"


class Forbidden(MediaHubError):
    category = "forbidden"
    default_code = "forbidden"


class Conflict(MediaHubError):
    category = "conflict"
    default_code = "conflict"


class RequestTimeout(MediaHubError):
    """The client stopped sending the request body (a chunk did not arrive in time)."""

    category = "timeout"
    default_code = "request_timeout"


class Unavailable(MediaHubError):
    """A backing service (storage, database, queue) cannot be reached."""

    category = "unavailable"
    default_code = "unavailable"


class Busy(MediaHubError):
    """The service is at a limit it sets itself (renders in flight, an item still being made): try later.

    Unlike Unavailable, the message is the caller's to read, and `retry_after` says when.
    """

    category = "busy"
    default_code = "busy"


class Locked(MediaHubError):
    """Another request is working on the same thing (an upload's bytes or its ingest): try again shortly."""

    category = "locked"
    default_code = "locked"


class ChecksumMismatch(MediaHubError):
    """Bytes whose digest is not the one the client declared for them: nothing of them was kept."""

    category = "checksum"
    default_code = "checksum_mismatch"


class PreconditionFailed(MediaHubError):
    """A protocol version or precondition the server does not meet (tus: `Tus-Resumable`)."""

    category = "precondition"
    default_code = "precondition_failed"


class RecordedError(MediaHubError):
    """An error recorded earlier (an upload's outcome) raised again as it was: same category, code and details."""

    def __init__(self, message: str, *, category: str, code: str, **details: Any) -> None:
        super().__init__(message, code=code, **details)
        self.category = category

    @classmethod
    def of(cls, record: dict[str, Any]) -> RecordedError:
        return cls(record["message"], category=record["category"], code=record["code"], **record.get("details", {}))

    @staticmethod
    def record(exc: MediaHubError) -> dict[str, Any]:
        """What `of` rebuilds."""
        return {"category": exc.category, "code": exc.code, "message": exc.message, "details": exc.details}


class StorageUnavailable(Unavailable):
    default_code = "storage_unavailable"


class DatabaseUnavailable(Unavailable):
    default_code = "database_unavailable"


def _rebuild(cls: type[MediaHubError], message: str, code: str, details: dict[str, Any]) -> MediaHubError:
    return cls(message, code=code, **details)


# A file path inside a library's message: quoted (spaces and all), or bare and absolute but not
# part of a word, a number ("91/251") or a URL.
_PATH_IN_MESSAGE = re.compile(
    r"""'(?:/|[A-Za-z]:\\)[^']*'"""  # '/tmp/spool/upload-x'
    r'|"(?:/|[A-Za-z]:\\)[^"]*"'  # "/tmp/spool/upload-x"
    r"""|(?<![\w.:/])(?:/|[A-Za-z]:\\)[^\s'",;]*"""  # /tmp/spool/upload-x
)


def library_reason(exc: BaseException) -> str:
    """What a decoder said went wrong, for a caller: without the spool paths its messages name
    (FFmpeg's strerror drops its file name; other messages have paths cut out)."""
    reason = getattr(exc, "strerror", None)
    if not isinstance(reason, str) or not reason:
        reason = _PATH_IN_MESSAGE.sub("the file", str(exc)).strip()
    return reason or type(exc).__name__
