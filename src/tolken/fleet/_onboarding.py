"""Adding tenants through PowerOffice's onboarding, and checking a tenant's access.

PowerOffice's onboarding (public spec ``/Onboarding/Initiate`` and
``/Onboarding/Finalize``): the integration asks for a temporary consent URL
(:func:`initiate_onboarding`), a person consents there for one or more
clients and PowerOffice redirects to the ``redirect_uri`` with an onboarding
token, which :func:`finalize_onboarding` exchanges for one client key per
client and turns into one tenant each (``tenants onboard``, and the fleet's
``serve`` at ``/onboarding/callback``). :func:`check_tenant` asks PowerOffice
which privileges the tenant's client granted (``ClientIntegrationInformation``)
and makes one authorised PMS request.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from pydantic import SecretStr

from tolken._redact import shared as shared_redactor
from tolken.compose import open_engine
from tolken.config import FleetConfig, TenantSettings
from tolken.connectors.poweroffice import PowerOfficeClient
from tolken.connectors.ratelimit import postgres_limiter
from tolken.errors import Fatal, TolkenError, Unreachable
from tolken.fleet._fleet import Fleet
from tolken.store import DuplicateTenant, Tenant
from tolken.vocabulary import ConflictPolicy

__all__ = [
    "ConsentUrl",
    "TenantCheck",
    "check_tenant",
    "finalize_onboarding",
    "initiate_onboarding",
    "tenant_id_for",
]

_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class ConsentUrl:
    """Where the person consents, and until when the URL works."""

    url: str
    valid_until: str


def _post(config: FleetConfig, path: str, body: dict[str, object]) -> dict[str, object]:
    settings = config.poweroffice
    url = settings.base_url.rstrip("/") + path
    headers = {"Ocp-Apim-Subscription-Key": settings.subscription_key.get_secret_value()}
    try:
        response = httpx.post(url, json=body, headers=headers, timeout=_TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        raise Unreachable(f"PowerOffice cannot be reached: {exc}", system="poweroffice") from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail") or response.text
        except ValueError:
            detail = response.text
        detail = shared_redactor().text(str(detail))[:500]
        raise Fatal(f"{path} answered {response.status_code}: {detail}", system="poweroffice")
    found: dict[str, object] = response.json()
    return found


def initiate_onboarding(
    config: FleetConfig, redirect_uri: str, *, organization_number: str | None = None
) -> ConsentUrl:
    """Ask PowerOffice for the URL where a person consents to add clients to the integration."""
    body: dict[str, object] = {
        "ApplicationKey": config.poweroffice.application_key.get_secret_value(),
        "RedirectUri": redirect_uri,
    }
    if organization_number:
        body["ClientOrganizationNo"] = organization_number
    found = _post(config, "/Onboarding/Initiate", body)
    return ConsentUrl(str(found["TemporaryUrl"]), str(found.get("ValidUntilDateTimeOffset", "")))


def tenant_id_for(name: str, taken: set[str]) -> str:
    """A tenant id from a client's name: lowercase, dashes, unique among ``taken``."""
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:90] or "client"
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def finalize_onboarding(
    fleet: Fleet,
    token: str,
    *,
    pms_api_key: SecretStr,
    pms_base_url: str | None = None,
    interval_seconds: float | None = None,
    conflict_policy: ConflictPolicy | None = None,
) -> list[Tenant]:
    """Exchange the onboarding token for client keys; add one tenant per onboarded client.

    Every new tenant gets the PMS credentials given here; ids come from the
    client names (:func:`tenant_id_for`). One client is due at once. Several
    clients would share the one PMS key given, so all of their records would
    go into one PMS account: they are added paused, to be given each its own
    PMS key (``tenants add``/``update``) and resumed. Paused from the start, so
    no worker can pick one up in between.
    """
    found = _post(fleet.config, "/Onboarding/Finalize", {"OnboardingToken": token})
    onboarded = found.get("OnboardedClientsInformation")
    if not isinstance(onboarded, list):
        raise Fatal("/Onboarding/Finalize answered without clients", system="poweroffice")
    taken = {tenant.id for tenant in fleet.registry.all()}
    several = len(onboarded) > 1
    added = []
    for client in onboarded:
        key = SecretStr(str(client["ClientKey"]))
        shared_redactor().add(key.get_secret_value())
        tenant_id = tenant_id_for(str(client.get("ClientName") or "client"), taken)
        settings = TenantSettings(
            id=tenant_id,
            poweroffice_client_key=key,
            pms_api_key=pms_api_key,
            pms_base_url=pms_base_url,
            interval_seconds=interval_seconds,
            conflict_policy=conflict_policy,
        )
        try:
            added.append(fleet.registry.add(settings, paused=several))
        except DuplicateTenant:  # added by another process meanwhile
            continue
        taken.add(tenant_id)
    return added


@dataclass
class TenantCheck:
    """What ``tenants check`` found: PowerOffice's privileges and whether the PMS answered."""

    tenant: str
    client_name: str | None = None
    valid_privileges: list[str] = field(default_factory=list)
    invalid_privileges: list[str] = field(default_factory=list)
    poweroffice_error: str | None = None
    pms_error: str | None = None

    @property
    def ok(self) -> bool:
        """PowerOffice and the PMS both answered, and no privilege is missing."""
        return not (self.poweroffice_error or self.pms_error or self.invalid_privileges)


def check_tenant(fleet: Fleet, tenant_id: str) -> TenantCheck:
    """Ask PowerOffice for the tenant's privileges and make one authorised PMS request."""
    tenant = fleet.registry.get(tenant_id)
    shared_redactor().add(*tenant.settings.secrets())
    config = fleet.config
    check = TenantCheck(tenant_id)
    stop = threading.Event()
    limiter = postgres_limiter(
        config.store,
        config.poweroffice.subscription_key.get_secret_value(),
        config.poweroffice.requests_per_second,
        stop=stop,
    )
    try:
        with open_engine(
            config.tenant_config(tenant.settings),
            store=fleet.store,
            stop=stop,
            rate_limiter=limiter,
        ) as engine:
            poweroffice = engine.poweroffice
            try:
                if not isinstance(poweroffice, PowerOfficeClient):
                    raise Fatal("not the built-in PowerOffice connector", system="poweroffice")
                info = poweroffice.integration_information()
                check.client_name = info.get("ClientName")
                check.valid_privileges = list(info.get("ValidPrivileges") or [])
                check.invalid_privileges = list(info.get("InvalidPrivileges") or [])
            except TolkenError as exc:
                check.poweroffice_error = str(exc)
            try:
                # One page of what changed from now on: authorised, and usually empty.
                next(
                    iter(engine.pms.list("customers", changed_after=datetime.now().astimezone())),
                    None,
                )
            except TolkenError as exc:
                check.pms_error = str(exc)
    finally:
        limiter.close()
    return check
