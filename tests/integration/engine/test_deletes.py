"""Deletes: confirmed PowerOffice deletes deactivate, the breaker and outage guard, PMS deletes."""

from __future__ import annotations

import httpx
import pytest

from integration.sync_harness import PMS_CONNECTORS, Sandbox

# Through the built-in PMS connector and through `connector: rest`.
pytestmark = pytest.mark.parametrize("sb", PMS_CONNECTORS, indirect=True)


def _po_delete(sb: Sandbox, resource: str, record_id: str) -> None:
    with sb.po() as client:
        client.delete(resource, record_id)


def _customers(sb: Sandbox, n: int) -> list[str]:
    return [sb.po_create("Customers", {"Name": f"Customer {i}"}) for i in range(n)]


def test_a_poweroffice_delete_deactivates_the_pms_record_at_the_reconcile(sb: Sandbox) -> None:
    """A customer deleted in PowerOffice is made inactive in the PMS, never deleted there."""
    ids = _customers(sb, 4)
    with sb.engine(mass_delete_threshold=0.5) as engine:
        engine.run_cycle()
        pms_id = engine.store.link_map("customers")[ids[0]]
        _po_delete(sb, "Customers", ids[0])
        quiet = engine.run_cycle()
        report = engine.run_cycle(reconcile=True)
        [link] = engine.store.list_links("customers", state="source-deleted")
    assert quiet.flows["customers"].counts["deactivated"] == 0  # only a full listing sees deletes
    assert report.flows["customers"].counts["deactivated"] == 1
    assert sb.pms_get("customers", pms_id)["active"] is False
    assert link.pms_id == pms_id
    assert len(sb.pms_list("customers")) == 4


def test_the_mass_delete_breaker_stops_the_flow(sb: Sandbox) -> None:
    """Losing more than the threshold of a flow at once changes nothing and says why."""
    ids = _customers(sb, 4)
    with sb.engine(mass_delete_threshold=0.3) as engine:
        engine.run_cycle()
        for record_id in ids[:2]:
            _po_delete(sb, "Customers", record_id)
        sb.reset_stats()
        report = engine.run_cycle(reconcile=True)
        blocked_writes = sb.writes_since_baseline("pms")
        active = engine.store.list_links("customers", state="active")
        confirmed = engine.run_cycle(reconcile=True, confirm_deletes=True)
        run = engine.store.last_runs(limit=2)[1]
    stopped = report.flows["customers"].stopped
    assert stopped is not None
    assert "mass-delete breaker" in stopped
    assert blocked_writes == {}
    assert run.status == "stopped"
    assert len(active) == 4
    assert confirmed.flows["customers"].counts["deactivated"] == 2


def test_an_empty_listing_is_an_outage_not_a_delete(sb: Sandbox) -> None:
    """If PowerOffice lists no customers at all while links exist, nothing is deactivated."""
    ids = _customers(sb, 2)
    with sb.engine(mass_delete_threshold=1.0) as engine:
        engine.run_cycle()
        pms_ids = list(engine.store.link_map("customers").values())
        for record_id in ids:
            _po_delete(sb, "Customers", record_id)
        report = engine.run_cycle(reconcile=True)
    stopped = report.flows["customers"].stopped
    assert stopped is not None
    assert "outage" in stopped
    assert all(sb.pms_get("customers", i)["active"] is True for i in pms_ids)


def test_a_pms_delete_marks_the_link_and_keeps_accounting_data(sb: Sandbox) -> None:
    """Deleting the PMS twin marks the link pms-deleted; the PowerOffice customer stays."""
    [cust] = _customers(sb, 1)
    with sb.engine() as engine:
        engine.run_cycle()
        pms_id = engine.store.link_map("customers")[cust]
        httpx.delete(
            f"{sb.pms_url}/api/v1/customers/{pms_id}",
            headers={"Authorization": "Bearer sandbox-pms-key"},
        ).raise_for_status()
        report = engine.run_cycle()
        [link] = engine.store.list_links("customers")
    assert report.flows["customers"].counts["pms_deleted"] == 1
    assert link.state == "pms-deleted"
    assert sb.po_get("Customers", cust)["Name"] == "Customer 0"
