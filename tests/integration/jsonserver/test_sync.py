"""tolken syncs PowerOffice with json-server, configured only by docs/pms-rest.md's example."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.jsonserver.conftest import JsonServerSync, json_server_sync
from integration.sync_harness import run_cli, start_tolken


def _seed_poweroffice(sync: JsonServerSync) -> tuple[str, str, str]:
    dept = sync.po.po_create("Departments", {"Code": "D1", "Name": "Sales", "IsActive": True})
    cust = sync.po.po_create(
        "Customers",
        {"Name": "Acme AS", "OrganizationNumber": "912345678", "EmailAddress": "post@acme.no"},
    )
    proj = sync.po.po_create(
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


def test_every_flow_reaches_json_server_in_its_own_field_names(sync: JsonServerSync) -> None:
    """A department, a customer and a project appear once in json-server, named as mapped."""
    _seed_poweroffice(sync)
    with sync.engine() as engine:
        report = engine.run_cycle()
    counts = {flow: r.counts for flow, r in report.flows.items()}
    assert all(c["created"] == 1 and c["failed"] == 0 for c in counts.values()), counts
    [dept] = sync.records("customers", type="department")
    assert (dept["customerNo"], dept["displayName"], dept["isActive"]) == ("D1", "Sales", True)
    [cust] = sync.records("customers", type="company")
    assert (cust["displayName"], cust["orgNo"], cust["email"]) == (
        "Acme AS",
        "912345678",
        "post@acme.no",
    )
    assert cust["externalRef"]
    assert cust["updatedAt"]
    [proj] = sync.records("projects")
    assert (proj["projectCode"], proj["title"], proj["state"], proj["billable"]) == (
        "P1",
        "Website",
        "active",
        True,
    )
    assert proj["clientRef"] == str(cust["id"])
    assert proj["departmentRef"] == str(dept["id"])


def test_edits_travel_both_ways_in_every_flow(sync: JsonServerSync) -> None:
    """Edits made in json-server reach PowerOffice and edits in PowerOffice reach json-server."""
    dept, cust, proj = _seed_poweroffice(sync)
    with sync.engine() as engine:
        engine.run_cycle()
        ids = {f: engine.store.link_map(f) for f in engine.flows()}
        sync.patch("customers", ids["departments"][dept], {"displayName": "Sales Norway"})
        sync.patch("customers", ids["customers"][cust], {"phone": "+47 22 00 00 00"})
        sync.patch("projects", ids["projects"][proj], {"percentDone": 40})
        sync.po.po_update("Customers", cust, {"EmailAddress": "hello@acme.no"})
        sync.po.po_update("Projects", proj, {"Name": "Website v2"})
        sync.po.po_update("Departments", dept, {"IsActive": False})
        report = engine.run_cycle()
    assert {f: r.counts["updated"] for f, r in report.flows.items()} == {
        "departments": 1,
        "customers": 1,
        "projects": 1,
    }, report.to_json()
    assert sync.po.po_get("Departments", dept)["Name"] == "Sales Norway"
    assert sync.po.po_get("Customers", cust)["PhoneNumber"] == "+47 22 00 00 00"
    assert sync.po.po_get("Projects", proj)["Progress"] == 40
    assert sync.get("customers", ids["customers"][cust])["email"] == "hello@acme.no"
    assert sync.get("projects", ids["projects"][proj])["title"] == "Website v2"
    assert sync.get("customers", ids["departments"][dept])["isActive"] is False


@pytest.fixture
def populated(
    po_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[JsonServerSync]:
    """json-server already holding the department, customer and project PowerOffice has."""
    seed = {
        "customers": [
            {"id": 1, "type": "department", "customerNo": "D1", "displayName": "Sales"},
            {"id": 2, "type": "company", "displayName": "Acme", "orgNo": "NO 912 345 678 MVA"},
        ],
        "projects": [{"id": 1, "projectCode": "P1", "title": "Web"}],
    }
    yield from json_server_sync(po_url, tmp_path, monkeypatch, seed=seed)


def test_first_run_links_existing_json_server_records(populated: JsonServerSync) -> None:
    """A first run over two populated systems links json-server's records instead of copying."""
    _seed_poweroffice(populated)
    with populated.engine() as engine:
        report = engine.run_cycle()
        links = {f: engine.store.link_map(f) for f in engine.flows()}
    for flow in links:
        assert report.flows[flow].counts["linked"] == 1, report.to_json()
        assert report.flows[flow].counts["created"] == 0
    assert [list(f.values()) for f in links.values()] == [
        ["1"],
        ["2"],
        ["1"],
    ]
    assert populated.js.counts() == {"customers": 2, "projects": 1}
    project = populated.get("projects", "1")
    assert (project["clientRef"], project["departmentRef"]) == ("2", "1")


def test_a_conflict_goes_to_the_newer_edit_and_the_loser_is_recorded(
    sync: JsonServerSync,
) -> None:
    """The same field edited on both sides: the later edit (json-server's) wins, both kept."""
    _dept, cust, _proj = _seed_poweroffice(sync)
    with sync.engine() as engine:
        engine.run_cycle()
        pms_id = engine.store.link_map("customers")[cust]
        sync.po.po_update("Customers", cust, {"Name": "Acme Norway AS"})
        sync.patch("customers", pms_id, {"displayName": "Acme Group AS"})
        report = engine.run_cycle()
        [conflict] = engine.store.list_conflicts("customers")
    assert report.flows["customers"].counts["conflicts"] == 1
    assert (conflict.poweroffice_value, conflict.pms_value) == ("Acme Norway AS", "Acme Group AS")
    assert conflict.winner == "pms"
    assert sync.po.po_get("Customers", cust)["Name"] == "Acme Group AS"
    assert sync.get("customers", pms_id)["displayName"] == "Acme Group AS"


def test_archiving_travels_both_ways(sync: JsonServerSync) -> None:
    """Archiving a customer in PowerOffice deactivates it in json-server, and a project back."""
    _dept, cust, proj = _seed_poweroffice(sync)
    with sync.engine() as engine:
        engine.run_cycle()
        pms_cust = engine.store.link_map("customers")[cust]
        pms_proj = engine.store.link_map("projects")[proj]
        sync.po.po_update("Customers", cust, {"IsArchived": True})
        sync.patch("projects", pms_proj, {"state": "archived"})
        engine.run_cycle()
    assert sync.get("customers", pms_cust)["isActive"] is False
    assert sync.po.po_get("Projects", proj)["ProjectStatus"] == "Archived"


def test_a_record_json_server_rejects_is_parked_with_its_message(sync: JsonServerSync) -> None:
    """A customer json-server refuses (422) is parked with json-server's words; others go on."""
    long_name = "Aktieselskabet " + "Meget Lang " * 7
    sync.po.po_create("Customers", {"Name": long_name, "OrganizationNumber": "911111111"})
    sync.po.po_create("Customers", {"Name": "Short AS", "OrganizationNumber": "922222222"})
    with sync.engine() as engine:
        report = engine.run_cycle()
        [failure] = engine.store.list_failures("customers")
    assert report.flows["customers"].counts["failed"] == 1
    assert report.flows["customers"].counts["created"] == 1
    assert "displayName is longer than 80 characters" in failure.message
    assert [r["displayName"] for r in sync.records("customers")] == ["Short AS"]


@pytest.fixture
def many(po_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[JsonServerSync]:
    """json-server with 250 companies: three pages of the example's page_size 100."""
    seed = {
        "customers": [
            {
                "id": n,
                "type": "company",
                "displayName": f"Company {n}",
                "orgNo": f"9{n:08d}",
                "updatedAt": f"2026-01-01T00:00:{n % 60:02d}.000Z",
            }
            for n in range(1, 251)
        ]
    }
    yield from json_server_sync(po_url, tmp_path, monkeypatch, seed=seed)


def test_paging_reads_every_page_and_links_every_record(many: JsonServerSync) -> None:
    """250 json-server records over three pages are all found: 250 links, no duplicate."""
    with many.po.po() as client:
        for n in range(1, 251):
            client.create(
                "Customers",
                {"Name": f"Company {n}", "OrganizationNumber": f"9{n:08d}"},
                idempotency_key=f"paging-{n}",
            )
    with many.engine() as engine:
        report = engine.run_cycle()
    counts = report.flows["customers"].counts
    assert (counts["linked"], counts["created"], counts["failed"]) == (250, 0, 0), counts
    assert many.js.counts()["customers"] == 250


@pytest.fixture
def without_stamps(
    po_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[JsonServerSync]:
    """Plain json-server: no middleware, so no updatedAt on any record."""
    yield from json_server_sync(po_url, tmp_path, monkeypatch, middlewares=())


def test_plain_json_server_is_read_in_full_and_compared_by_content(
    without_stamps: JsonServerSync,
) -> None:
    """Without updatedAt (changes type none) an edit in json-server is still found and synced."""
    section = (
        (Path(__file__).parents[3] / "docs" / "examples" / "json-server" / "pms.yaml")
        .read_text()
        .replace("      updated_at_field: updatedAt", "      updated_at_field: null")
    )
    start = section.index("    changes:\n")
    end = section.index("    idempotency:\n")
    section = section[:start] + "    changes:\n      type: none\n" + section[end:]
    _dept, cust, _proj = _seed_poweroffice(without_stamps)
    with without_stamps.engine(pms_section=section) as engine:
        engine.run_cycle()
        pms_id = engine.store.link_map("customers")[cust]
        without_stamps.patch("customers", pms_id, {"phone": "+47 99 99 99 99"})
        without_stamps.po.po_update("Customers", cust, {"EmailAddress": "new@acme.no"})
        report = engine.run_cycle()
    assert report.flows["customers"].counts["updated"] == 1, report.to_json()
    assert without_stamps.po.po_get("Customers", cust)["PhoneNumber"] == "+47 99 99 99 99"
    assert without_stamps.get("customers", pms_id)["email"] == "new@acme.no"
    assert "updatedAt" not in without_stamps.get("customers", pms_id)


def _count_customers(sync: JsonServerSync) -> int:
    return sync.js.counts()["customers"]


def test_sigkill_in_the_middle_of_an_initial_sync_makes_no_duplicate(
    sync: JsonServerSync,
) -> None:
    """`tolken sync` killed with SIGKILL mid-way, then rerun: every customer once, none lost."""
    total = 150
    with sync.po.po() as client:
        for n in range(1, total + 1):
            client.create(
                "Customers",
                {"Name": f"Kunde {n}", "OrganizationNumber": f"8{n:08d}"},
                idempotency_key=f"kill-{n}",
            )
    config = str(sync.config_path())
    with start_tolken("sync", "--config", config, "--once") as first:
        deadline = time.monotonic() + 60
        while _count_customers(sync) < 20 and first.poll() is None:
            assert time.monotonic() < deadline, "the sync created nothing in 60 s"
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    assert first.returncode == -signal.SIGKILL, "the sync ended before it could be killed"
    assert 0 < _count_customers(sync) < total
    code, out, err = run_cli("sync", "--config", config, "--once", "--json")
    assert code == 0, out + err
    records = sync.records("customers")
    orgs = Counter(r["orgNo"] for r in records)
    assert len(records) == total
    assert set(orgs) == {f"8{n:08d}" for n in range(1, total + 1)}
    assert max(orgs.values()) == 1
    assert len({r["externalRef"] for r in records}) == total
