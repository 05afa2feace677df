"""The error taxonomy: every error says what the engine does next.

::

    TolkenError                      base of everything tolken raises on purpose
    ├── Fatal                        stop the run; a person must act
    │   ├── ConfigError              bad tolken.yaml or mapping file (exit code 2)
    │   ├── AuthError                credentials refused (401/403, invalid_client)
    │   └── Unreachable              a system cannot be reached at all
    ├── Retriable                    back off and try again (bounded)
    │   ├── RateLimited              429; carries ``retry_after`` seconds
    │   ├── ServerError              5xx from a remote system
    │   └── TransportError           timeout, connection reset, protocol error
    ├── RecordError                  park this record, go on with the others
    │   ├── ValidationFailed         400/422; carries the remote field errors
    │   ├── NotFound                 404 for a record or a referenced record
    │   └── InUse                    409 on delete: the record is referenced
    ├── Conflict                     the record moved under us
    │   └── StaleVersion             412 on If-Match: re-read, re-merge, retry
    └── Stopped                      a stop was asked for (SIGTERM): end the work, never retry

Each HTTP connector classifies responses in exactly one place
(``classify_response``), so the engine never looks at status codes.
Messages carry the remote system's own words (ProblemDetails ``title``/``detail``
or the PMS field errors) verbatim, and never a key or token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "AuthError",
    "ConfigError",
    "Conflict",
    "Fatal",
    "FieldError",
    "InUse",
    "NotFound",
    "RateLimited",
    "RecordError",
    "Retriable",
    "ServerError",
    "StaleVersion",
    "Stopped",
    "TolkenError",
    "TransportError",
    "Unreachable",
    "ValidationFailed",
]


class TolkenError(Exception):
    """Base class; ``system`` names the side the error came from, when known."""

    def __init__(self, message: str, *, system: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.system = system
        self.status = status

    def __str__(self) -> str:
        prefix = f"{self.system}: " if self.system else ""
        return f"{prefix}{self.message}"


class Fatal(TolkenError):
    """The run cannot go on; retrying will not help until a person acts."""


class ConfigError(Fatal):
    """The configuration or mapping is invalid; ``location`` is ``file:line`` when known."""

    def __init__(self, message: str, *, location: str | None = None, key: str | None = None):
        super().__init__(message)
        self.location = location
        self.key = key

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        key = f"{self.key}: " if self.key else ""
        return f"{where}{key}{self.message}"


class AuthError(Fatal):
    """The remote system refused our credentials."""


class Unreachable(Fatal):
    """The remote system did not answer at all (after retries)."""


class Retriable(TolkenError):
    """A transient failure: back off and retry within bounds."""

    def __init__(
        self,
        message: str,
        *,
        system: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message, system=system, status=status)
        self.retry_after = retry_after


class RateLimited(Retriable):
    """429 Too Many Requests; ``retry_after`` is the server's hint in seconds."""


class ServerError(Retriable):
    """5xx from the remote system."""


class TransportError(Retriable):
    """Timeout or connection failure before a response arrived."""


@dataclass(frozen=True)
class FieldError:
    """One field-level complaint from a remote system, kept verbatim."""

    field: str | None
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class RecordError(TolkenError):
    """This record cannot be written now; park it with the remote message."""

    def __init__(
        self,
        message: str,
        *,
        system: str | None = None,
        status: int | None = None,
        field_errors: Sequence[FieldError] = (),
        remote: Mapping[str, object] | None = None,
    ):
        super().__init__(message, system=system, status=status)
        self.field_errors = tuple(field_errors)
        self.remote = dict(remote) if remote is not None else None


class ValidationFailed(RecordError):
    """The remote system rejected the record's content (400/422)."""


class NotFound(RecordError):
    """The record, or a record it references, does not exist (404)."""


class InUse(RecordError):
    """The record is referenced elsewhere and cannot be deleted (409)."""


class Conflict(TolkenError):
    """The record changed between our read and our write."""


class StaleVersion(Conflict):
    """412 Precondition Failed on ``If-Match``: re-read, re-merge, retry."""

    def __init__(
        self,
        message: str = "record version is stale",
        *,
        system: str | None = None,
        current_version: int | None = None,
    ):
        super().__init__(message, system=system, status=412)
        self.current_version = current_version


class Stopped(TolkenError):
    """A stop was asked for (SIGTERM) while waiting, e.g. for the rate limit; not retried."""
