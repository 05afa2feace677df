"""A PMS value longer than PowerOffice's documented limit parks its record; the rest syncs."""

from __future__ import annotations

import json

import pytest

from integration.sync_harness import Sandbox, run_cli


@pytest.fixture
def sb(sb: Sandbox, quiet_logs: None) -> Sandbox:  # noqa: ARG001 - for its effect
    """The shared loopback sandbox, with the root logger put back after the CLI ran."""
    return sb


def test_an_over_long_city_is_parked_with_the_limit_and_others_sync(sb: Sandbox) -> None:
    """A 900-character PMS city (PowerOffice allows 100) is parked naming the limit; others sync."""
    address = {"line1": "Storgata 1", "postal_code": "0150", "city": "Oslo", "country": "NO"}
    long_city = sb.pms_create(
        "customers", {"kind": "company", "name": "Long AS", "address": address}
    )
    sb.pms_update("customers", long_city, {"address": {**address, "city": "O" * 900}})
    sb.pms_create("customers", {"kind": "company", "name": "Short AS"})
    flows = "  flows:\n    customers: {create_in_poweroffice: true}\n"
    config = sb.write_config(extra=flows)
    sb.reset_stats()
    code, out, err = run_cli("sync", "--config", str(config), "--once", "--json")
    assert code == 0, err
    counts = json.loads(out)["flows"]["customers"]
    assert (counts["created"], counts["failed"]) == (1, 1)
    assert [c["Name"] for c in sb.po_list("Customers")] == ["Short AS"]
    assert sb.writes_since_baseline("poweroffice").get("POST /v2/Customers") == 1
    code, out, _ = run_cli("failures", "--config", str(config), "--json")
    [failure] = json.loads(out)
    assert "MailAddress.City" in failure["message"]
    assert "at most 100" in failure["message"]
    assert "900 characters" in failure["message"]
