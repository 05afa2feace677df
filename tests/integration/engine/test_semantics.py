"""End to end over loopback: merge, conflicts, echo suppression, archive, failures, waits."""

from __future__ import annotations

import pytest

from integration.sync_harness import PMS_CONNECTORS, Sandbox

# Through the built-in PMS connector and through `connector: rest`.
pytestmark = pytest.mark.parametrize("sb", PMS_CONNECTORS, indirect=True)

ADDRESS = {"AddressLine1": "Storgata 1", "ZipCode": "0155", "City": "Oslo", "CountryCode": "NO"}


def _customer(sb: Sandbox, name: str = "Acme AS", **extra: object) -> str:
    return sb.po_create("Customers", {"Name": name, **extra})


def test_a_second_idle_run_writes_nothing(sb: Sandbox) -> None:
    """After a sync (and after an edit has been carried over), the next run writes nowhere."""
    dept = sb.po_create("Departments", {"Code": "D1", "Name": "Sales"})
    cust = _customer(sb, OrganizationNumber="912345678", MailAddress=ADDRESS)
    sb.po_create("Projects", {"Code": "P1", "Name": "Web", "CustomerId": int(cust)})
    with sb.engine() as engine:
        engine.run_cycle()
        sb.po_update("Departments", dept, {"Name": "Sales Norway"})
        pms_cust = engine.store.link_map("customers")[cust]
        sb.pms_update("customers", pms_cust, {"website": "https://acme.no"})
        engine.run_cycle()
        sb.reset_stats()
        report = engine.run_cycle()
        again = engine.run_cycle(reconcile=True)
    assert sb.writes_since_baseline("poweroffice") == {}
    assert sb.writes_since_baseline("pms") == {}
    for flow_report in (*report.flows.values(), *again.flows.values()):
        assert flow_report.counts["created"] == flow_report.counts["updated"] == 0


def test_edits_to_different_fields_on_both_sides_both_survive(sb: Sandbox) -> None:
    """PowerOffice changes the e-mail, the PMS the phone: afterwards both sides have both."""
    cust = _customer(sb, EmailAddress="a@acme.no", PhoneNumber="111")
    with sb.engine() as engine:
        engine.run_cycle()
        pms_id = engine.store.link_map("customers")[cust]
        sb.po_update("Customers", cust, {"EmailAddress": "b@acme.no"})
        sb.pms_update("customers", pms_id, {"phone": "222"})
        report = engine.run_cycle()
    assert report.flows["customers"].counts["conflicts"] == 0
    po, pms = sb.po_get("Customers", cust), sb.pms_get("customers", pms_id)
    assert (po["EmailAddress"], po["PhoneNumber"]) == ("b@acme.no", "222")
    assert (pms["email"], pms["phone"]) == ("b@acme.no", "222")


@pytest.mark.parametrize(
    ("policy", "expected"), [("newest-wins", "PMS name"), ("poweroffice-wins", "PO name")]
)
def test_same_field_conflicts_converge_per_policy_and_are_recorded(
    sb: Sandbox, policy: str, expected: str
) -> None:
    """Both sides rename the customer: the policy picks the winner, both values are recorded."""
    cust = _customer(sb)
    with sb.engine(conflict_policy=policy) as engine:
        engine.run_cycle()
        pms_id = engine.store.link_map("customers")[cust]
        sb.po_update("Customers", cust, {"Name": "PO name"})
        sb.pms_update("customers", pms_id, {"name": "PMS name"})  # the later edit
        report = engine.run_cycle()
        [conflict] = engine.store.list_conflicts("customers")
    assert report.flows["customers"].counts["conflicts"] == 1
    assert sb.po_get("Customers", cust)["Name"] == expected
    assert sb.pms_get("customers", pms_id)["name"] == expected
    assert (conflict.field, conflict.poweroffice_value, conflict.pms_value) == (
        "name",
        "PO name",
        "PMS name",
    )
    assert conflict.winner == ("pms" if expected == "PMS name" else "poweroffice")


def test_address_only_poweroffice_edit_arrives_with_the_reconcile(sb: Sandbox) -> None:
    """An address edit does not move the customer's timestamp; the reconcile still carries it."""
    cust = _customer(sb, MailAddress=ADDRESS)
    with sb.engine(po={"overlap_seconds": 0}) as engine:
        engine.run_cycle()
        pms_id = engine.store.link_map("customers")[cust]
        sb.po_update("Customers", cust, {"MailAddress": {"City": "Bergen", "ZipCode": "5003"}})
        engine.run_cycle()
        missed = sb.pms_get("customers", pms_id)["address"]["city"]
        report = engine.run_cycle(reconcile=True)
    assert missed == "Oslo"  # the incremental read cannot see it: PowerOffice's timestamp is still
    assert report.flows["customers"].counts["updated"] == 1
    address = sb.pms_get("customers", pms_id)["address"]
    assert (address["city"], address["postal_code"]) == ("Bergen", "5003")


def test_archive_and_inactive_states_map_both_ways(sb: Sandbox) -> None:
    """Archiving a customer in PowerOffice deactivates it in the PMS, and a PMS deactivation of a
    department makes it inactive in PowerOffice."""
    cust = _customer(sb)
    dept = sb.po_create("Departments", {"Code": "D9", "Name": "Old"})
    with sb.engine() as engine:
        engine.run_cycle()
        links = {f: engine.store.link_map(f) for f in engine.flows()}
        sb.po_update("Customers", cust, {"IsArchived": True})
        sb.pms_update("customers", links["departments"][dept], {"active": False})
        engine.run_cycle()
    assert sb.pms_get("customers", links["customers"][cust])["active"] is False
    assert sb.po_get("Departments", dept)["IsActive"] is False


def test_a_record_the_pms_rejects_is_parked_and_the_run_goes_on(sb: Sandbox) -> None:
    """The PMS refuses a bad e-mail: the customer is parked with the PMS's words, others sync,
    its project waits, and fixing the e-mail in PowerOffice lets both through."""
    bad = _customer(sb, "Bad Mail AS", EmailAddress="not-an-email")
    _customer(sb, "Good AS")
    proj = sb.po_create("Projects", {"Code": "P7", "Name": "Waits", "CustomerId": int(bad)})
    with sb.engine() as engine:
        report = engine.run_cycle()
        [failure] = engine.store.list_failures()
        sb.po_update("Customers", bad, {"EmailAddress": "post@bad.no"})
        engine.store.retry_failures_now()
        later = engine.run_cycle()
        remaining = engine.store.list_failures()
        links = {f: engine.store.link_map(f) for f in engine.flows()}
    assert report.flows["customers"].counts["failed"] == 1
    assert report.flows["customers"].counts["created"] == 1
    assert report.flows["projects"].counts["waiting"] == 1
    assert (failure.flow, failure.side, failure.record_id) == ("customers", "poweroffice", bad)
    assert "must be an e-mail address" in failure.message
    assert later.flows["customers"].counts["created"] == 1
    assert later.flows["projects"].counts["created"] == 1
    assert remaining == []
    pms_proj = sb.pms_get("projects", links["projects"][proj])
    assert pms_proj["customer_id"] == links["customers"][bad]


def test_ambiguous_matches_are_reported_and_left_alone(sb: Sandbox) -> None:
    """Two PMS companies share the organisation number: nothing is linked or created."""
    for name in ("Acme A", "Acme B"):
        sb.pms_create(
            "customers", {"kind": "company", "name": name, "organization_number": "912345678"}
        )
    cust = _customer(sb, OrganizationNumber="912 345 678")
    with sb.engine() as engine:
        report = engine.run_cycle()
        failures = engine.store.list_failures("customers")
        linked = engine.store.link_map("customers")
    assert report.flows["customers"].counts["ambiguous"] == 1
    [match] = report.ambiguous
    assert match.record_id == cust
    assert len(match.candidates) == 2
    assert linked == {}
    assert len(sb.pms_list("customers")) == 2
    assert [f.error_class for f in failures] == ["AmbiguousMatch"]


def test_pms_only_records_reach_poweroffice_when_the_flow_allows_it(sb: Sandbox) -> None:
    """With create_in_poweroffice on, a PMS-only customer is created once in PowerOffice."""
    from tolken.config import FlowSettings

    pms_id = sb.pms_create(
        "customers", {"kind": "company", "name": "From PMS AS", "email": "hi@pms.no"}
    )
    sb.pms_create("customers", {"kind": "department", "number": "D5", "name": "Not created"})
    flows = {"customers": FlowSettings(create_in_poweroffice=True)}
    with sb.engine(flows=flows) as engine:
        report = engine.run_cycle()
        again = engine.run_cycle()
        links = engine.store.link_map("customers")
    assert report.flows["customers"].counts["created"] == 1
    assert report.flows["departments"].counts["created"] == 0  # off by default
    [po] = sb.po_list("Customers")
    assert (po["Name"], po["EmailAddress"]) == ("From PMS AS", "hi@pms.no")
    assert po["ExternalImportReference"]
    assert links == {str(po["Id"]): pms_id}
    assert again.total("created") == 0


def test_polling_capture_carries_pms_edits_and_sees_deletes_at_the_reconcile(sb: Sandbox) -> None:
    """With `pms.change_capture: polling`, PMS edits still arrive; a PMS delete (which polling
    cannot see) is found by the reconcile's full listing and confirmed by a GET."""
    import httpx

    keep, gone = _customer(sb, "Keep AS"), _customer(sb, "Gone AS")
    with sb.engine(pms={"change_capture": "polling"}, mass_delete_threshold=0.5) as engine:
        engine.run_cycle()
        links = engine.store.link_map("customers")
        sb.pms_update("customers", links[keep], {"name": "Keep Holding AS"})
        httpx.delete(
            f"{sb.pms_url}/api/v1/customers/{links[gone]}",
            headers={"Authorization": "Bearer sandbox-pms-key"},
        ).raise_for_status()
        engine.run_cycle()
        report = engine.run_cycle(reconcile=True)
        [marked] = engine.store.list_links("customers", state="pms-deleted")
    assert sb.po_get("Customers", keep)["Name"] == "Keep Holding AS"
    assert report.flows["customers"].counts["pms_deleted"] == 1
    assert marked.poweroffice_id == gone
    assert sb.po_get("Customers", gone)["Name"] == "Gone AS"


def test_a_manual_conflict_waits_for_a_person_then_the_winner_is_written(sb: Sandbox) -> None:
    """Policy `manual`: both values stay put and the conflict is parked; once a person picks
    the PMS, its value is written to PowerOffice, once."""
    cust = _customer(sb)
    with sb.engine(conflict_policy="manual") as engine:
        engine.run_cycle()
        pms_id = engine.store.link_map("customers")[cust]
        sb.po_update("Customers", cust, {"Name": "PO name"})
        sb.pms_update("customers", pms_id, {"name": "PMS name"})
        engine.run_cycle()
        [parked] = engine.store.list_conflicts(parked_only=True)
        untouched = (sb.po_get("Customers", cust)["Name"], sb.pms_get("customers", pms_id)["name"])
        engine.store.resolve_conflict(parked.id, "pms")
        engine.run_cycle()
        sb.reset_stats()
        engine.run_cycle()
    assert parked.winner == "parked"
    assert untouched == ("PO name", "PMS name")
    assert sb.po_get("Customers", cust)["Name"] == "PMS name"
    assert sb.writes_since_baseline("poweroffice") == {}
    assert sb.writes_since_baseline("pms") == {}
