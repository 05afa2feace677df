"""End to end over loopback: each flow creates, links, and carries edits both ways."""

from __future__ import annotations

import pytest

from integration.sync_harness import PMS_CONNECTORS, Sandbox
from tolken.engine.cursor import content_hash
from tolken.vocabulary import FlowId

# Every flow both ways, through the built-in PMS connector and through `connector: rest`.
pytestmark = pytest.mark.parametrize("sb", PMS_CONNECTORS, indirect=True)


def _seed_basic(sb: Sandbox) -> tuple[str, str, str]:
    dept = sb.po_create("Departments", {"Code": "D1", "Name": "Sales", "IsActive": True})
    cust = sb.po_create(
        "Customers",
        {"Name": "Acme AS", "OrganizationNumber": "912345678", "EmailAddress": "post@acme.no"},
    )
    proj = sb.po_create(
        "Projects",
        {
            "Code": "P1",
            "Name": "Website",
            "CustomerId": int(cust),
            "DepartmentId": int(dept),
            "StartDate": "2025-01-06",
            "ProjectStatus": "Active",
            "IsBillable": True,
        },
    )
    return dept, cust, proj


def test_poweroffice_records_of_every_flow_are_created_in_the_pms(sb: Sandbox) -> None:
    """A department, a customer and a project in PowerOffice each appear once in the PMS."""
    _seed_basic(sb)
    with sb.engine() as engine:
        report = engine.run_cycle()
    counts = {flow: r.counts for flow, r in report.flows.items()}
    assert list(report.flows) == ["departments", "customers", "projects"]
    assert all(c["created"] == 1 and c["failed"] == 0 for c in counts.values()), counts
    [dept] = sb.pms_list("customers", kind="department")
    assert (dept["number"], dept["name"], dept["active"]) == ("D1", "Sales", True)
    [cust] = sb.pms_list("customers", kind="company")
    assert cust["name"] == "Acme AS"
    assert cust["organization_number"] == "912345678"
    [proj] = sb.pms_list("projects")
    assert proj["code"] == "P1"
    assert proj["status"] == "active"
    assert proj["billable"] is True
    assert proj["customer_id"] == cust["id"]
    assert proj["department_id"] == dept["id"]
    assert report.requests["poweroffice"] > 0
    assert report.requests["pms"] > 0


def test_existing_pms_records_are_linked_not_duplicated(sb: Sandbox) -> None:
    """A first run over two populated systems links matching records instead of copying them."""
    pms_dept = sb.pms_create("customers", {"kind": "department", "number": "D1", "name": "Sales"})
    pms_cust = sb.pms_create(
        "customers",
        {"kind": "company", "name": "Acme", "organization_number": "NO 912 345 678 MVA"},
    )
    pms_proj = sb.pms_create("projects", {"code": "P1", "name": "Web"})
    _seed_basic(sb)
    with sb.engine() as engine:
        report = engine.run_cycle()
        links = {f: engine.store.link_map(f) for f in engine.flows()}
    for flow in ("departments", "customers", "projects"):
        assert report.flows[flow].counts["linked"] == 1, report.to_json()
        assert report.flows[flow].counts["created"] == 0
    assert list(links["departments"].values()) == [pms_dept]
    assert list(links["customers"].values()) == [pms_cust]
    assert list(links["projects"].values()) == [pms_proj]
    assert len(sb.pms_list("customers")) == 2
    assert len(sb.pms_list("projects")) == 1
    # Two different names at first link: newest-wins, and PowerOffice's record is the newer one.
    assert sb.pms_get("customers", pms_cust)["name"] == "Acme AS"
    assert sb.pms_get("projects", pms_proj)["customer_id"] == pms_cust


def test_a_pms_edit_reaches_poweroffice(sb: Sandbox) -> None:
    """Renaming a customer and a project in the PMS renames them in PowerOffice."""
    _dept, cust, proj = _seed_basic(sb)
    with sb.engine() as engine:
        engine.run_cycle()
        pms_cust = engine.store.link_map("customers")[cust]
        pms_proj = engine.store.link_map("projects")[proj]
        sb.pms_update(
            "customers", pms_cust, {"name": "Acme Holding AS", "phone": "+47 22 00 00 00"}
        )
        sb.pms_update("projects", pms_proj, {"progress": 40})
        report = engine.run_cycle()
    assert report.flows["customers"].counts["updated"] == 1
    assert report.flows["projects"].counts["updated"] == 1
    po_cust = sb.po_get("Customers", cust)
    assert po_cust["Name"] == "Acme Holding AS"
    assert po_cust["PhoneNumber"] == "+47 22 00 00 00"
    assert sb.po_get("Projects", proj)["Progress"] == 40


def test_a_poweroffice_edit_reaches_the_pms(sb: Sandbox) -> None:
    """Editing a department, a customer and a project in PowerOffice updates the PMS records."""
    dept, cust, proj = _seed_basic(sb)
    with sb.engine() as engine:
        engine.run_cycle()
        ids = {f: engine.store.link_map(f) for f in engine.flows()}
        sb.po_update("Departments", dept, {"Name": "Sales Norway"})
        sb.po_update("Customers", cust, {"EmailAddress": "hello@acme.no"})
        sb.po_update("Projects", proj, {"Name": "Website v2", "EndDate": "2025-12-31"})
        report = engine.run_cycle()
    assert {f: r.counts["updated"] for f, r in report.flows.items()} == {
        "departments": 1,
        "customers": 1,
        "projects": 1,
    }
    assert sb.pms_get("customers", ids["departments"][dept])["name"] == "Sales Norway"
    assert sb.pms_get("customers", ids["customers"][cust])["email"] == "hello@acme.no"
    project = sb.pms_get("projects", ids["projects"][proj])
    assert (project["name"], project["end_date"]) == ("Website v2", "2025-12-31")


def test_projects_follow_a_customer_change_through_the_links(sb: Sandbox) -> None:
    """Moving a project to another customer in PowerOffice points the PMS project at its twin."""
    _dept, _cust, proj = _seed_basic(sb)
    other = sb.po_create("Customers", {"Name": "Beta AS", "OrganizationNumber": "998877665"})
    with sb.engine() as engine:
        engine.run_cycle()
        sb.po_update("Projects", proj, {"CustomerId": int(other)})
        engine.run_cycle()
        links = engine.store.link_map("customers")
        pms_proj = engine.store.link_map("projects")[proj]
    assert sb.pms_get("projects", pms_proj)["customer_id"] == links[other]


def test_a_created_pair_keeps_the_hash_of_the_record_as_listed(sb: Sandbox) -> None:
    """Each new pair's shadow holds the content hash of the PowerOffice record as read (the
    listing's, carried along, in a batch of creates and alone), so the next cycle is quiet."""
    ids = [
        sb.po_create("Customers", {"Name": f"Firma {i}", "EmailAddress": f"post@{i}.no"})
        for i in range(3)
    ]
    sb.po_create("Departments", {"Code": "D1", "Name": "Sales", "IsActive": True})
    with sb.engine() as engine:
        engine.run_cycle()
        created: list[tuple[FlowId, str, str]] = [
            *(("customers", "Customers", i) for i in ids),
            ("departments", "Departments", str(sb.po_list("Departments")[0]["Id"])),
        ]
        for flow, resource, po_id in created:
            link = engine.store.get_link_by_po(flow, po_id)
            assert link is not None
            shadow = engine.store.load_shadow(link.id)
            assert shadow is not None
            listed = engine.poweroffice.get(resource, po_id)
            assert shadow.poweroffice_hash == content_hash(listed.data)
        again = engine.run_cycle()
    assert all(not r.counts.get("updated") for r in again.flows.values())
