"""The gateway in front of the simulated API: keys, tokens, throttling (reference §2, §8.2).

Token endpoint (``/OAuth/Token``, ``/Demo/OAuth/Token``, any casing):
``Authorization: Basic base64(application key:client key)``, header
``Ocp-Apim-Subscription-Key``, form ``grant_type=client_credentials``. Real
OAuth libraries also put ``client_id``/``client_secret`` (often empty) in the
form: empty values are ignored, and when the Basic header is absent the form
credentials are used (client_secret_post). Success:
``{"access_token", "token_type": "bearer", "expires_in": 1200}``; failures are
RFC 6749 §5.2 bodies with status 400 (``invalid_request``,
``invalid_client``, ``unsupported_grant_type``). Every client key of the
form ``sandbox-client-key[-<name>]`` is accepted (`clients`). Tokens are
opaque, live ``token_ttl_seconds``, are bound to their environment (a demo
token does not open ``/v2``; §2.1, "fully separate") and to the client whose
key got them: every API call with the token reads and writes that client's
data only.

API calls need the subscription key (header, or APIM's ``subscription-key``
query parameter) and a valid bearer token; otherwise API Management answers
401 ``{"statusCode": 401, "message": …}``.

Throttling is a token bucket per subscription key (capacity and refill =
``rate_limit_per_second``), over the token endpoint, the API and onboarding,
shared by every client the subscription serves (as the real API); above it
→ 429 ``{"statusCode": 429, "message": "Rate limit is exceeded. Try again in 1
seconds."}`` with ``Retry-After``. A client pacing itself with the same bucket
never sees a 429. Rejected calls do not consume capacity.
"""

from __future__ import annotations

import base64
import binascii
import math
import secrets
import threading
import time
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Scope

from tolken.sandbox.credentials import APPLICATION_KEY, SUBSCRIPTION_KEY
from tolken.sandbox.poweroffice.clients import is_client_key
from tolken.sandbox.poweroffice.problems import gateway_response

__all__ = [
    "RateLimiter",
    "TokenIssuer",
    "check_api_call",
    "check_subscription",
    "client_of_headers",
    "token_endpoint",
]

SUBSCRIPTION_HEADER = "ocp-apim-subscription-key"


class TokenIssuer:
    """Opaque access tokens with an expiry, per environment and client."""

    def __init__(self, ttl_seconds: int) -> None:
        self.ttl_seconds = ttl_seconds
        self._tokens: dict[str, tuple[float, str, str]] = {}
        self._lock = threading.Lock()

    def issue(self, environment: str, client: str) -> str:
        """A new token of ``client`` for ``environment`` (``prod`` or ``demo``)."""
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            # Drop expired tokens so a long benchmark does not grow the table.
            self._tokens = {k: v for k, v in self._tokens.items() if v[0] > now}
            self._tokens[token] = (now + self.ttl_seconds, environment, client)
        return token

    def client(self, token: str, environment: str | None = None) -> str | None:
        """The client key of an unexpired ``token`` (of ``environment``, when given)."""
        with self._lock:
            entry = self._tokens.get(token)
        if entry is None or entry[0] <= time.monotonic():
            return None
        if environment is not None and entry[1] != environment:
            return None
        return entry[2]


class RateLimiter:
    """Token bucket per subscription key; ``rate=None`` disables it."""

    def __init__(self, rate: float | None) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}
        self.rate = rate

    @property
    def rate(self) -> float | None:
        """Requests per second allowed per key."""
        return self._rate

    @rate.setter
    def rate(self, value: float | None) -> None:
        if value is not None and value <= 0:
            raise ValueError("rate_limit_per_second must be positive or null")
        with self._lock:
            self._rate = value
            self._buckets.clear()

    def acquire(self, key: str) -> float | None:
        """None when the call may proceed, else seconds until it could."""
        with self._lock:
            rate = self._rate
            if rate is None:
                return None
            now = time.monotonic()
            level, stamp = self._buckets.get(key, (rate, now))
            level = min(rate, level + (now - stamp) * rate)
            if level >= 1.0:
                self._buckets[key] = (level - 1.0, now)
                return None
            self._buckets[key] = (level, now)
            return (1.0 - level) / rate


def _throttled(wait: float) -> Response:
    seconds = max(1, math.ceil(wait))
    return gateway_response(
        429,
        f"Rate limit is exceeded. Try again in {seconds} seconds.",
        {"Retry-After": str(seconds)},
    )


def check_subscription(request: Request, limiter: RateLimiter) -> Response | None:
    """The gateway's 401 or 429 for the subscription key of ``request``, or None."""
    key = request.headers.get(SUBSCRIPTION_HEADER) or request.query_params.get("subscription-key")
    if not key:
        return gateway_response(
            401,
            "Access denied due to missing subscription key. Make sure to include "
            "subscription key when making requests to an API.",
        )
    if key != SUBSCRIPTION_KEY:
        return gateway_response(
            401,
            "Access denied due to invalid subscription key. Make sure to provide a valid key "
            "for an active subscription.",
        )
    wait = limiter.acquire(key)
    return None if wait is None else _throttled(wait)


def environment_of(path: str) -> str:
    """``demo`` for ``/Demo/...`` paths (already in canonical casing), else ``prod``."""
    return "demo" if path.startswith("/Demo/") else "prod"


def check_api_call(request: Request, limiter: RateLimiter, tokens: TokenIssuer) -> Response | str:
    """The client key the call's token belongs to, or the gateway's refusal."""
    refused = check_subscription(request, limiter)
    if refused is not None:
        return refused
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    client = None
    if scheme.lower() == "bearer":
        client = tokens.client(token.strip(), environment_of(request.url.path))
    if client is None:
        response = gateway_response(401, "Unauthorized. Access token is missing or invalid.")
        response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return response
    return client


def client_of_headers(scope: Scope, tokens: TokenIssuer) -> str | None:
    """The client a request speaks for, from its headers alone (for the statistics):
    the bearer token's client, or the client key of a Basic token request."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credential = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                return tokens.client(credential.strip())
            pair = _basic_credentials(value.decode("latin-1"))
            return pair[1] if pair is not None and is_client_key(pair[1]) else None
    return None


def _oauth_error(error: str, description: str) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=400,
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


async def token_endpoint(request: Request, limiter: RateLimiter, tokens: TokenIssuer) -> Response:
    """``POST /OAuth/Token``: the client-credentials grant."""
    refused = check_subscription(request, limiter)
    if refused is not None:
        return refused
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return _oauth_error(
            "invalid_request",
            "The request must be application/x-www-form-urlencoded.",
        )
    body = (await request.body()).decode("utf-8", errors="replace")
    form = dict(parse_qsl(body, keep_blank_values=True))
    grant = form.get("grant_type", "").strip()
    if not grant:
        return _oauth_error("invalid_request", "The mandatory 'grant_type' parameter is missing.")
    if grant != "client_credentials":
        return _oauth_error(
            "unsupported_grant_type", "The specified 'grant_type' parameter is not supported."
        )
    credentials = None
    header = request.headers.get("authorization")
    if header:
        credentials = _basic_credentials(header)
        if credentials is None:
            return _oauth_error("invalid_request", "The Authorization header is malformed.")
    elif form.get("client_id") and form.get("client_secret"):
        credentials = (form["client_id"], form["client_secret"])
    if (
        credentials is None
        or credentials[0] != APPLICATION_KEY
        or not is_client_key(credentials[1])
    ):
        return _oauth_error(
            "invalid_client",
            "Client integration not found. Please ensure the provided keys are matching "
            "the desired environment.",
        )
    token = tokens.issue(environment_of(request.url.path), credentials[1])
    return JSONResponse(
        {"access_token": token, "token_type": "bearer", "expires_in": tokens.ttl_seconds},
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )
