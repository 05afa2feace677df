"""Tenants through the CLI: PowerOffice onboarding end to end, check, and --tenant on inspect."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from integration.fleet.fleet_harness import FleetSandbox, pms_key, run_tolken, wait_until
from tolken.cli import app as cli_app

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_onboarding_through_the_cli_adds_tenants_a_worker_syncs(sandbox: FleetSandbox) -> None:
    """initiate -> consent -> finalize adds one tenant per client; a worker syncs each of them."""
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
    assert {row["id"] for row in json.loads(listed.stdout)} == {"fjord-regnskap-as", "nord-bygg-as"}
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
