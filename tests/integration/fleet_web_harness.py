"""A fleet config over a PostgreSQL schema, tenants with recognisable secrets, the job table."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr
from sqlalchemy import text

from tolken.config import (
    FleetConfig,
    FleetPMSSettings,
    FleetSettings,
    PowerOfficeApplicationSettings,
    ServeSettings,
    TenantSettings,
)
from tolken.fleet import Fleet
from tolken.sandbox import credentials

TOKEN = "fleet-dash-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PASSPHRASE = "a fleet passphrase of more than thirty-two characters"


def fleet_config(store_url: str, po_url: str = "http://127.0.0.1:9", **serve: Any) -> FleetConfig:
    """Fleet mode on ``store_url``, PowerOffice at ``po_url``, the dashboard on any free port."""
    return FleetConfig(
        store=store_url,
        poweroffice=PowerOfficeApplicationSettings(
            base_url=f"{po_url}/v2",
            token_url=f"{po_url}/OAuth/Token",
            application_key=SecretStr(credentials.APPLICATION_KEY),
            subscription_key=SecretStr(credentials.SUBSCRIPTION_KEY),
        ),
        pms=FleetPMSSettings(base_url="http://127.0.0.1:9/api/v1"),
        fleet=FleetSettings(secret_key=SecretStr(PASSPHRASE)),
        serve=ServeSettings(port=0, token=SecretStr(TOKEN), **serve),
    )


def tenant(tenant_id: str, **changes: Any) -> TenantSettings:
    """A tenant whose secrets are recognisable strings, to grep for."""
    values: dict[str, Any] = {
        "id": tenant_id,
        "poweroffice_client_key": f"client-key-of-{tenant_id}-7f3a",
        "pms_api_key": f"pms-api-key-of-{tenant_id}-9c1e",
        "webhook_secret": f"webhook-secret-of-{tenant_id}-4d2b",
    }
    return TenantSettings.model_validate(values | changes)


def secrets_of(*tenant_ids: str) -> list[str]:
    """Every secret of the fleet config and of these tenants."""
    found = [credentials.APPLICATION_KEY, credentials.SUBSCRIPTION_KEY, PASSPHRASE, TOKEN]
    for tenant_id in tenant_ids:
        found += tenant(tenant_id).secrets()
    return found


def jobs(fleet: Fleet, tenant_id: str) -> list[dict[str, Any]]:
    """The tenant's jobs in procrastinate's table: status, priority, args."""
    with fleet.store.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT status, priority, args FROM procrastinate_jobs "
                "WHERE lock = :tenant ORDER BY id"
            ),
            {"tenant": tenant_id},
        ).mappings()
        return [dict(row) for row in rows]
