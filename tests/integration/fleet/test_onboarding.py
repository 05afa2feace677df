"""Tenants through the CLI: PowerOffice onboarding end to end, check, and --tenant on inspect."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from integration.fleet.fleet_harness import FleetSandbox, pms_key, run_tolken, wait_until
from tolken.cli import app as cli_app
from tolken.store import open_store

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_onboarding_through_the_cli_adds_tenants_a_worker_syncs(sandbox: FleetSandbox) -> None:
    """initiate -> consent -> finalize adds one paused tenant per client; given keys, they sync."""
    started = run_tolken(
        sandbox, "tenants", "onboard", "--redirect-uri", "https://integrator.example/callback"
    )
    assert started.returncode == 0, started.stderr
    consent_url = started.stdout.strip()
    assert consent_url.startswith(sandbox.po_url)
    clients = [
        {"name": "Fjord Regnskap AS", "organization_number": "912345678"},
        {"name": "Nord Bygg AS", "organization_number": "987654321"},
    ]
    consent = httpx.post(
        f"{sandbox.po_url}/_sandbox/onboarding/consent",
        json={"temporary_url": consent_url, "clients": clients},
    ).json()

    finished = run_tolken(
        sandbox,
        "tenants",
        "onboard",
        "--finalize",
        consent["onboarding_token"],
        "--pms-api-key",
        pms_key("onboarded"),
        "--json",
    )

    assert finished.returncode == 0, finished.stderr
    assert [row["id"] for row in json.loads(finished.stdout)] == [
        "fjord-regnskap-as",
        "nord-bygg-as",
    ]
    listed = run_tolken(sandbox, "tenants", "list", "--json")
    rows = {row["id"]: row for row in json.loads(listed.stdout)}
    assert set(rows) == {"fjord-regnskap-as", "nord-bygg-as"}
    # Two clients came with one PMS key: both wait, paused, for a key of their own.
    assert {row["state"] for row in rows.values()} == {"paused"}
    for tenant in rows:
        updated = run_tolken(sandbox, "tenants", "update", tenant, "--pms-api-key", pms_key(tenant))
        assert updated.returncode == 0, updated.stderr
        assert run_tolken(sandbox, "tenants", "resume", tenant).returncode == 0
    with sandbox.fleet() as fleet:
        keys = {t.id: t.settings for t in fleet.registry.all()}
    for tenant, settings in keys.items():
        assert settings.pms_api_key.get_secret_value() == pms_key(tenant)
        assert settings.poweroffice_client_key.get_secret_value()  # kept as onboarded
    assert len({s.poweroffice_client_key.get_secret_value() for s in keys.values()}) == 2
    sandbox.start_worker()
    with sandbox.fleet() as fleet:
        for tenant in ("fjord-regnskap-as", "nord-bygg-as"):

            def synced(tenant: str = tenant) -> bool:
                run = fleet.latest_run(tenant)
                return run is not None and run.outcome == "ok"

            wait_until(synced, timeout=30, what=f"{tenant} synced")
            assert fleet.latest_run(tenant).poweroffice_requests > 0  # type: ignore[union-attr]
    assert sandbox.stop_workers() == [0]
    checked = run_tolken(sandbox, "tenants", "check", "nord-bygg-as", "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    report = json.loads(checked.stdout)
    assert report["client_name"] == "Nord Bygg AS"
    assert "Customer_Full" in report["valid_privileges"]
    assert report["invalid_privileges"] == []
    assert report["pms_error"] is None


def test_check_names_a_pms_that_refuses_the_tenants_key(sandbox: FleetSandbox) -> None:
    """tenants check exits 1 and says the PMS refused when the tenant's PMS key is wrong."""
    sandbox.add_tenants("wrong-pms")
    with sandbox.fleet() as fleet:
        tenant = fleet.registry.get("wrong-pms").settings
        fleet.registry.update(
            tenant.model_copy(update={"pms_base_url": f"{sandbox.po_url}/nothing-here"})
        )
    checked = run_tolken(sandbox, "tenants", "check", "wrong-pms")
    assert checked.returncode == 1
    assert "PASS poweroffice" in checked.stdout
    assert "FAIL pms" in checked.stdout


def test_inspect_commands_take_the_tenant_of_a_fleet(sandbox: FleetSandbox) -> None:
    """status --tenant reads that tenant; a fleet config without --tenant exits 2 and says so."""
    sandbox.add_tenants("inspected")
    shown = run_tolken(sandbox, "status", "--tenant", "inspected", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["tenant"] == "inspected"
    missing = run_tolken(sandbox, "status")
    assert missing.returncode == 2
    assert "--tenant" in missing.stderr
    unknown = run_tolken(sandbox, "links", "--tenant", "nobody")
    assert unknown.returncode == 2
    assert "no tenant 'nobody'" in unknown.stderr


@pytest.mark.usefixtures("quiet_logs")
def test_a_single_mode_config_refuses_tenant(tmp_path: Path) -> None:
    """--tenant with a single-mode config exits 2: it syncs one client."""
    path = tmp_path / "tolken.yaml"
    path.write_text(
        "poweroffice:\n  application_key: application-key\n  client_key: client-key-1\n"
        "  subscription_key: subscription-key\npms:\n  base_url: http://127.0.0.1:1/api/v1\n"
        "  api_key: pms-api-key\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli_app, ["status", "--tenant", "acme", "--config", str(path)])
    assert result.exit_code == 2
    assert "--tenant is for fleet configs" in result.stderr


def test_update_changes_only_what_is_given_and_refuses_nothing_or_nobody(
    sandbox: FleetSandbox,
) -> None:
    """tenants update replaces the options given, keeps the rest; no option or no tenant: exit 2."""
    sandbox.add_tenants("upd", interval_seconds=120)
    with sandbox.fleet() as fleet:
        before = fleet.registry.get("upd").settings

    changed = run_tolken(sandbox, "tenants", "update", "upd", "--pms-api-key", "a-new-pms-key-123")
    assert changed.returncode == 0, changed.stderr
    nothing = run_tolken(sandbox, "tenants", "update", "upd")
    nobody = run_tolken(sandbox, "tenants", "update", "nobody", "--interval-seconds", "5")

    with sandbox.fleet() as fleet:
        after = fleet.registry.get("upd").settings
    assert after.pms_api_key.get_secret_value() == "a-new-pms-key-123"
    assert after.poweroffice_client_key == before.poweroffice_client_key
    assert after.webhook_secret == before.webhook_secret
    assert after.interval_seconds == 120
    assert (nothing.returncode, nobody.returncode) == (2, 2)
    assert "a-new-pms-key-123" not in changed.stdout + changed.stderr


def test_rekey_through_the_cli_reads_the_new_passphrase_from_the_environment(
    sandbox: FleetSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tenants rekey seals the credentials under the env's new passphrase; missing: exit 2."""
    sandbox.add_tenants("rk")
    new_passphrase = "the next fleet passphrase, rotated yearly 2027"
    missing = run_tolken(sandbox, "tenants", "rekey")
    assert missing.returncode == 2
    assert "TOLKEN_NEW_SECRET_KEY" in missing.stderr

    monkeypatch.setenv("TOLKEN_NEW_SECRET_KEY", new_passphrase)
    rotated = run_tolken(sandbox, "tenants", "rekey", "--json")

    assert rotated.returncode == 0, rotated.stderr
    assert json.loads(rotated.stdout) == {"tenants": 1}
    assert new_passphrase not in rotated.stdout + rotated.stderr
    stale = run_tolken(sandbox, "tenants", "list")
    assert stale.returncode == 2  # the config still names the old passphrase
    assert "does not match" in stale.stderr
    with open_store(sandbox.store_url) as store:
        settings = store.tenant_registry(new_passphrase).get("rk").settings
    assert settings.pms_api_key.get_secret_value() == pms_key("rk")
