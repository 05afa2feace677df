"""OAuth client credentials for PowerOffice Go (reference §2).

The token request is ``POST {token_url}`` with ``Authorization: Basic
base64(application_key:client_key)``, the ``Ocp-Apim-Subscription-Key`` header
and the form ``grant_type=client_credentials``; the answer is
``{"access_token", "token_type", "expires_in"}`` (1200 s). There is no refresh
token: a new token is simply requested. :func:`renew_at` decides, as a pure
function, when a token is due for renewal so it is replaced *before* it
expires; :class:`TokenSource` is the thin, thread-safe shell around it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from tolken.connectors.poweroffice._errors import SYSTEM
from tolken.errors import ServerError

__all__ = ["Token", "TokenSource", "needs_renewal", "renew_at"]

DEFAULT_MARGIN = 60.0
"""Renew this many seconds before expiry (at most a quarter of the lifetime)."""


@dataclass(frozen=True)
class Token:
    """An access token and the clock reading at which to replace it."""

    value: str
    renew_at: float


def renew_at(issued_at: float, expires_in: float, *, margin: float = DEFAULT_MARGIN) -> float:
    """When a token issued at ``issued_at`` living ``expires_in`` seconds should be replaced.

    ``margin`` seconds early, but never more than a quarter of the lifetime, so a
    short-lived token is still used for most of its life rather than renewed
    on every request.
    """
    lifetime = max(0.0, expires_in)
    return issued_at + lifetime - min(margin, lifetime / 4)


def needs_renewal(token: Token | None, now: float) -> bool:
    """True when there is no token or ``now`` has reached its renewal time."""
    return token is None or now >= token.renew_at


class TokenSource:
    """Hands out a valid access token, fetching a new one when due or when told it was refused.

    ``fetch`` performs the token request (rate limiting, classification and
    retries are the caller's) and returns ``(access_token, expires_in)``.
    """

    def __init__(
        self,
        fetch: Callable[[], tuple[str, float]],
        *,
        clock: Callable[[], float] = time.monotonic,
        margin: float = DEFAULT_MARGIN,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._margin = margin
        self._lock = threading.Lock()
        self._token: Token | None = None
        self.fetched = 0
        """How many tokens were requested (for tests and metrics)."""

    @property
    def current(self) -> str | None:
        """The token in use, if any (for redaction)."""
        token = self._token
        return token.value if token else None

    def get(self) -> str:
        """A token valid for a while yet."""
        with self._lock:
            if needs_renewal(self._token, self._clock()):
                issued = self._clock()
                value, expires_in = self._fetch()
                self.fetched += 1
                self._token = Token(value, renew_at(issued, expires_in, margin=self._margin))
            assert self._token is not None
            return self._token.value

    def invalidate(self, value: str) -> None:
        """Drop ``value`` if it is still the current token (a 401 said it is no longer good)."""
        with self._lock:
            if self._token is not None and self._token.value == value:
                self._token = None


def parse_token_response(response: httpx.Response) -> tuple[str, float]:
    """``(access_token, expires_in)`` from a successful token answer; ServerError if malformed."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        fields = {str(key).lower(): value for key, value in body.items()}
        token = fields.get("access_token")
        expires = fields.get("expires_in", 1200)
        try:
            lifetime = float(expires)
        except (TypeError, ValueError):
            lifetime = 1200.0
        if isinstance(token, str) and token:
            return token, lifetime
    raise ServerError(
        "PowerOffice token endpoint answered without an access_token",
        system=SYSTEM,
        status=response.status_code,
    )
