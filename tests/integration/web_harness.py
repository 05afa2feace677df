"""A config, a settable clock and seeded store rows for the web tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import SecretStr

from tolken.config import PMSSettings, PowerOfficeSettings, ServeSettings, TolkenConfig
from tolken.store import TenantStore

TOKEN = "dash-token-0123456789"
WEBHOOK_SECRET = "hook-secret-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MESSAGE = 'email: must be an e-mail address <"not-an-email">'


class Clock:
    """A settable store clock."""

    def __init__(self) -> None:
        self.now = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def make_config(tmp_path: Path, token: str | None = TOKEN) -> TolkenConfig:
    return TolkenConfig(
        store=f"sqlite:///{tmp_path / 'tolken.db'}",
        poweroffice=PowerOfficeSettings(
            application_key=SecretStr("app-key-1"),
            client_key=SecretStr("client-key-1"),
            subscription_key=SecretStr("sub-key-1"),
        ),
        pms=PMSSettings(base_url="http://127.0.0.1:9/api/v1", api_key=SecretStr("pms-key-1")),
        serve=ServeSettings(
            token=SecretStr(token) if token else None, webhook_secret=SecretStr(WEBHOOK_SECRET)
        ),
    )


def seed(store: TenantStore, clock: Clock) -> dict[str, int]:
    """Two customer links and a department, a parked customer, a conflict and an ok run."""
    dept = store.create_link("departments", "1", "cus_d1")
    acme = store.create_link("customers", "10001", "cus_a")
    store.create_link("customers", "10002", "cus_b")
    store.add_history(acme.id, "to_pms", "create", {"name": "Acme AS"}, "new PowerOffice record")
    store.add_history(acme.id, "to_poweroffice", "update", {"Name": "Acme Holding"}, "PMS edit")
    failure = store.record_failure(
        "customers",
        "poweroffice",
        "10003",
        "ValidationFailed",
        MESSAGE,
        status=422,
        retry_base_seconds=3600,
    )
    won = store.record_conflict(
        "customers",
        acme.id,
        "name",
        poweroffice_value="Acme AS",
        pms_value="Acme Holding",
        shadow_value="Acme",
        policy="newest-wins",
        winner="pms",
    )
    parked = store.record_conflict(
        "customers",
        acme.id,
        "phone",
        poweroffice_value="+47 22 00 00 00",
        pms_value="+47 99 99 99 99",
        shadow_value=None,
        policy="manual",
        winner="parked",
    )
    run = store.start_run()
    clock.now += timedelta(seconds=2)
    store.finish_run(
        run,
        "ok",
        counts={"departments": {"created": 1}, "customers": {"created": 2, "failed": 1}},
        requests={"poweroffice": 9, "pms": 7},
    )
    clock.now += timedelta(seconds=88)
    return {
        "dept": dept.id,
        "acme": acme.id,
        "failure": failure.id,
        "won": won.id,
        "parked": parked.id,
    }
