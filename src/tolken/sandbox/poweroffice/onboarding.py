"""PowerOffice's onboarding of an integration on new clients, simulated (DESIGN §7).

The real flow (public spec ``/Onboarding/Initiate`` and ``/Onboarding/Finalize``;
the developer portal's "Adding the integration to a client"):

1. The integration POSTs ``InitiateOnboardingPostDto`` {``ApplicationKey``,
   ``RedirectUri``, ``ClientOrganizationNo`` (optional: only that client may
   be chosen)} and gets {``TemporaryUrl``, ``ValidUntilDateTimeOffset``}.
2. A person opens the temporary URL, logs in to Go and consents for one or
   more clients. PowerOffice then redirects the browser to ``RedirectUri``
   with ``status=Success`` and ``token=<onboarding token>`` added to its query
   (its own parameters are kept), as third-party clients of the flow read it
   (stianwe/PowerOfficeGoV2Onboarding, ``PowerOfficeGoOnboardingController``).
3. The integration POSTs ``FinalizeOnboardingPostDto`` {``OnboardingToken``}
   and gets ``FinalizeOnboardingResponseDto`` with one ``ClientKey`` per client.

In the sandbox, step 2 is ``POST /_sandbox/onboarding/consent``
{``temporary_url``, ``clients``: [{``name``, ``organization_number``}]} →
{``redirect``, ``onboarding_token``}; ``GET`` of the temporary URL describes
the pending session. Finalize registers one fresh client per consented
client, with a new key ``sandbox-client-key-<uuid>`` and empty data.
Temporary URLs are valid for ``ttl_seconds`` (one hour); each consent and
each onboarding token is usable once. Sessions live in memory: a restart or
a full ``/_sandbox/reset`` forgets unfinished onboardings (finished ones are
clients in the registry).
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tolken.sandbox.credentials import APPLICATION_KEY
from tolken.sandbox.poweroffice.clients import Clients
from tolken.sandbox.poweroffice.problems import ApiError

__all__ = ["CONSENT_PATH", "SESSION_PATH", "Onboarding"]

SESSION_PATH = "/_sandbox/onboarding"
CONSENT_PATH = "/_sandbox/onboarding/consent"
USER_EMAIL = "sandbox.user@example.no"


def _invalid(detail: str) -> ApiError:
    return ApiError(400, "Onboarding validation error(s)", detail)


def _is_web_url(text: Any) -> bool:
    if not isinstance(text, str):
        return False
    parts = urlsplit(text)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def with_query(url: str, extra: dict[str, str]) -> str:
    """``url`` with ``extra`` added to its query string (its own parameters kept)."""
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *extra.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


@dataclass
class _Session:
    redirect_uri: str
    organization_number: str | None
    expires: float
    valid_until: datetime
    clients: list[tuple[str, str | None]] = field(default_factory=list)
    onboarding_token: str | None = None


class Onboarding:
    """Pending onboardings of one simulator and the clients they create."""

    def __init__(self, clients: Clients, *, ttl_seconds: float = 3600) -> None:
        self._clients = clients
        self.ttl_seconds = ttl_seconds
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}

    def clear(self) -> None:
        """Forget every pending onboarding (``/_sandbox/reset``)."""
        with self._lock:
            self._sessions.clear()

    def initiate(self, body: Any, base_url: str) -> dict[str, Any]:
        """``POST /Onboarding/Initiate``: the temporary URL; ApiError 400 on a bad body."""
        if not isinstance(body, dict):
            raise _invalid("The request body must be an InitiateOnboardingPostDto object.")
        unknown = set(body) - {"ApplicationKey", "ClientOrganizationNo", "RedirectUri"}
        if unknown:
            raise _invalid(f"Unknown properties: {', '.join(sorted(unknown))}.")
        if body.get("ApplicationKey") != APPLICATION_KEY:
            raise _invalid("ApplicationKey does not identify a registered integration.")
        redirect = body.get("RedirectUri")
        if not _is_web_url(redirect):
            raise _invalid("RedirectUri must be an absolute http(s) URL.")
        org = body.get("ClientOrganizationNo")
        if org is not None and (not isinstance(org, str) or not org.strip()):
            raise _invalid("ClientOrganizationNo must be a non-empty string or null.")
        session_id = secrets.token_urlsafe(32)
        valid_until = datetime.now(UTC) + timedelta(seconds=self.ttl_seconds)
        with self._lock:
            now = time.monotonic()
            self._sessions = {k: s for k, s in self._sessions.items() if s.expires > now}
            self._sessions[session_id] = _Session(
                str(redirect), org.strip() if org else None, now + self.ttl_seconds, valid_until
            )
        url = with_query(base_url.rstrip("/") + SESSION_PATH, {"token": session_id})
        return {
            "TemporaryUrl": url,
            "ValidUntilDateTimeOffset": valid_until.strftime("%Y-%m-%dT%H:%M:%S.%f0Z"),
        }

    def _session(self, temporary_url: Any) -> tuple[str, _Session]:
        if not isinstance(temporary_url, str):
            raise ValueError("'temporary_url' must be the TemporaryUrl Initiate returned.")
        session_id = dict(parse_qsl(urlsplit(temporary_url).query)).get("token", "")
        session = self._sessions.get(session_id)
        if session is None or session.expires <= time.monotonic():
            raise ValueError("No pending onboarding has this temporary URL (or it expired).")
        return session_id, session

    def describe(self, temporary_url: str) -> dict[str, Any]:
        """What the person is asked to consent to (``GET`` of the temporary URL)."""
        with self._lock:
            _, session = self._session(temporary_url)
            return {
                "redirect_uri": session.redirect_uri,
                "client_organization_number": session.organization_number,
                "valid_until": session.valid_until.isoformat(),
                "consented": session.onboarding_token is not None,
                "consent": f"POST {CONSENT_PATH} "
                '{"temporary_url": "<this URL>", "clients": [{"name", "organization_number"}]}',
            }

    def consent(self, body: dict[str, Any]) -> dict[str, Any]:
        """The person's consent for ``clients``: the redirect and the onboarding token.

        ValueError (a 400) for an unknown or used temporary URL and bad clients.
        """
        clients = body.get("clients")
        if not isinstance(clients, list) or not clients:
            raise ValueError("'clients' must be a non-empty list of {name, organization_number}.")
        chosen: list[tuple[str, str | None]] = []
        for entry in clients:
            name = entry.get("name") if isinstance(entry, dict) else None
            org = entry.get("organization_number") if isinstance(entry, dict) else None
            if not isinstance(name, str) or not name.strip():
                raise ValueError("Every client needs a non-empty 'name'.")
            if org is not None and not isinstance(org, str):
                raise ValueError("'organization_number' must be a string or null.")
            chosen.append((name.strip(), org))
        with self._lock:
            _, session = self._session(body.get("temporary_url"))
            if session.onboarding_token is not None:
                raise ValueError("This onboarding has already been consented to.")
            wanted = session.organization_number
            if wanted is not None and any(org != wanted for _, org in chosen):
                raise ValueError(
                    f"Only the client with organization number {wanted} may be chosen."
                )
            token = secrets.token_urlsafe(64)
            session.clients = chosen
            session.onboarding_token = token
            pending = session
        redirect = with_query(pending.redirect_uri, {"status": "Success", "token": token})
        return {"redirect": redirect, "onboarding_token": token}

    def finalize(self, body: Any) -> dict[str, Any]:
        """``POST /Onboarding/Finalize``: one new client key per consented client."""
        if not isinstance(body, dict) or set(body) - {"OnboardingToken"}:
            raise _invalid("The request body must be a FinalizeOnboardingPostDto object.")
        token = body.get("OnboardingToken")
        now = time.monotonic()
        with self._lock:
            found = next(
                (
                    key
                    for key, s in self._sessions.items()
                    if token is not None and s.onboarding_token == token and s.expires > now
                ),
                None,
            )
            if found is None:
                raise _invalid("The onboarding token is unknown, expired or already used.")
            session = self._sessions.pop(found)
        onboarded = []
        for name, org in session.clients:
            client = self._clients.create(name, org)
            onboarded.append(
                {
                    "ClientKey": client.key,
                    "ClientName": client.name,
                    "ClientOrganizationNumber": client.organization_number,
                }
            )
        return {"OnboardedClientsInformation": onboarded, "UserEmail": USER_EMAIL}
