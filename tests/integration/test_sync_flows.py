"""End to end over loopback: each flow creates, links, and carries edits both ways."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.sync_harness import Sandbox, no_waits, running_sandbox


@pytest.fixture(scope="module")
def urls() -> Iterator[tuple[str, str]]:
    with running_sandbox() as found:
        yield found


@pytest.fixture
def sb(urls: tuple[str, str], tmp_path: Path) -> Iterator[Sandbox]:
    sandbox = Sandbox(urls[0], urls[1], tmp_path)
    sandbox.reset()
    with no_waits():
        yield sandbox


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
    assert [f for f in report.flows] == ["departments", "customers", "projects"]
    assert all(c["created"] == 1 and c["failed"] == 0 for c in counts.values()), counts
    [dept] = sb.pms_list("customers", kind="department")
    assert (dept["number"], dept["name"], dept["active"]) == ("D1", "Sales", True)
    [cust] = sb.pms_list("customers", kind="company")
    assert cust["name"] == "Acme AS" and cust["organization_number"] == "912345678"
    [proj] = sb.pms_list("projects")
    assert proj["code"] == "P1" and proj["status"] == "active" and proj["billable"] is True
    assert proj["customer_id"] == cust["id"]
    assert proj["department_id"] == dept["id"]
    assert report.requests["poweroffice"] > 0 and report.requests["pms"] > 0
