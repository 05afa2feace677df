"""PowerOffice's Onboarding API: add the integration to new clients (public spec ``/Onboarding``).

1. :meth:`OnboardingClient.initiate` posts ``InitiateOnboardingPostDto``
   {``ApplicationKey``, ``RedirectUri``, ``ClientOrganizationNo``} and gets the
   ``TemporaryUrl`` a person opens to consent in PowerOffice Go.
2. PowerOffice redirects that person's browser to ``RedirectUri`` with
   ``status=Success`` and ``token=<onboarding token>`` added to its query.
3. :meth:`OnboardingClient.finalize` posts ``FinalizeOnboardingPostDto``
   {``OnboardingToken``} and gets one client key per consented client.

Both calls carry the subscription key only (no client, no access token).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from tolken.config import PowerOfficeApplicationSettings
from tolken.connectors.poweroffice._errors import classify
from tolken.errors import ServerError

__all__ = ["OnboardedClient", "OnboardingClient"]


@dataclass(frozen=True)
class OnboardedClient:
    """One client the integration was added to: its key (secret), name and organisation number."""

    client_key: SecretStr
    name: str
    organization_number: str | None


class OnboardingClient:
    """Initiate and finalize onboardings for the application in ``settings``."""

    def __init__(self, settings: PowerOfficeApplicationSettings, http: httpx.Client) -> None:
        self._settings = settings
        self._http = http
        self._base = settings.base_url.rstrip("/")
        self._secrets = (
            settings.application_key.get_secret_value(),
            settings.subscription_key.get_secret_value(),
        )

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        headers = {"Ocp-Apim-Subscription-Key": self._settings.subscription_key.get_secret_value()}
        try:
            response = self._http.post(
                f"{self._base}{path}",
                json=body,
                headers=headers,
                timeout=self._settings.timeout_seconds,
            )
        except httpx.HTTPError as exc:
            error = classify(exc, secrets=self._secrets)
            assert error is not None
            raise error from None
        error = classify(response, secrets=self._secrets)
        if error is not None:
            raise error
        try:
            return response.json()
        except ValueError:
            raise ServerError(
                f"PowerOffice answered {path} with no JSON", system="poweroffice"
            ) from None

    def initiate(self, redirect_uri: str, organization_number: str | None = None) -> str:
        """Where a person consents; PowerOffice then redirects them to ``redirect_uri``."""
        body: dict[str, Any] = {
            "ApplicationKey": self._settings.application_key.get_secret_value(),
            "RedirectUri": redirect_uri,
        }
        if organization_number:
            body["ClientOrganizationNo"] = organization_number
        found = self._post("/Onboarding/Initiate", body)
        url = found.get("TemporaryUrl") if isinstance(found, dict) else None
        if not isinstance(url, str) or not url:
            raise ServerError(
                "PowerOffice's Initiate answer has no TemporaryUrl", system="poweroffice"
            )
        return url

    def finalize(self, onboarding_token: str) -> list[OnboardedClient]:
        """The clients a person consented for, with their new client keys (token used up)."""
        found = self._post("/Onboarding/Finalize", {"OnboardingToken": onboarding_token})
        rows = found.get("OnboardedClientsInformation") if isinstance(found, dict) else None
        if not isinstance(rows, list):
            raise ServerError(
                "PowerOffice's Finalize answer has no OnboardedClientsInformation",
                system="poweroffice",
            )
        clients = []
        for row in rows:
            key = row.get("ClientKey") if isinstance(row, dict) else None
            if not isinstance(key, str) or not key:
                raise ServerError("an onboarded client has no ClientKey", system="poweroffice")
            org = row.get("ClientOrganizationNumber")
            clients.append(
                OnboardedClient(
                    client_key=SecretStr(key),
                    name=str(row.get("ClientName") or ""),
                    organization_number=str(org) if org else None,
                )
            )
        return clients
