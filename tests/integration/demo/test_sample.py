"""The demo's sample data as it lands in the sandbox: valid, realistic and set up for the story."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator

import pytest

from integration.sync_harness import Sandbox, no_waits, running_sandbox
from tolken.demo import sample
from tolken.demo.seed import Seeded, seed_sandbox

POSTAL_CODE = re.compile(r"^\d{4}$")


_RATE_AFTER_SEED: dict[str, object] = {}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, Seeded]]:
    with running_sandbox() as (po_url, pms_url), no_waits():
        sb = Sandbox(po_url, pms_url, tmp_path_factory.mktemp("sample"))
        seeded = seed_sandbox(po_url, sb.po_settings(), sb.pms_settings())
        # Seen now, then lifted: these tests read back quickly, with retry waits switched off.
        _RATE_AFTER_SEED.update(sb.control("poweroffice", "settings"))
        sb.control("poweroffice", "settings", {"rate_limit_per_second": None})
        yield sb, seeded


def test_org_number_check_rejects_a_wrong_check_digit() -> None:
    """The mod-11 check accepts a real organisation number and refuses altered ones."""
    assert sample.is_valid_org_number("923609016")  # Equinor ASA, from the register
    assert not sample.is_valid_org_number("923609017")
    assert not sample.is_valid_org_number("92360901")
    assert not sample.is_valid_org_number("92360901x")


def test_seeded_org_numbers_are_valid_mod_11(loaded: tuple[Sandbox, Seeded]) -> None:
    """Every organisation number in both systems after seeding has a valid mod-11 check digit."""
    sb, _ = loaded
    po = [c["OrganizationNumber"] for c in sb.po_list("Customers") if c.get("OrganizationNumber")]
    pms = [
        c["organization_number"] for c in sb.pms_list("customers") if c.get("organization_number")
    ]
    assert len(po) == len(sample.COMPANIES)
    assert len(pms) >= len(sample.PMS_COMPANIES)
    invalid = [n for n in [*po, *pms] if not sample.is_valid_org_number(n)]
    assert invalid == []
    assert len(set(po)) == len(po)  # one company, one number in PowerOffice


def test_seeded_customers_have_norwegian_addresses(loaded: tuple[Sandbox, Seeded]) -> None:
    """Every PowerOffice customer has a street, a 4-digit postal code, a city and country NO."""
    sb, _ = loaded
    customers = sb.po_list("Customers")
    assert len(customers) == len(sample.COMPANIES) + len(sample.PERSONS)
    for customer in customers:
        address = customer["MailAddress"]
        assert address["AddressLine1"]
        assert POSTAL_CODE.match(address["ZipCode"]), address
        assert address["City"]
        assert address["CountryCode"] == "NO"
    persons = [c for c in customers if c["IsPerson"]]
    assert persons
    assert all(p["FirstName"] and p["LastName"] and "@" in p["EmailAddress"] for p in persons)


def test_seeded_projects_refer_to_customers_and_departments(
    loaded: tuple[Sandbox, Seeded],
) -> None:
    """Every PowerOffice project has a customer and a department that exist."""
    sb, seeded = loaded
    customers = set(seeded.po_customers.values())
    departments = set(seeded.po_departments.values())
    projects = sb.po_list("Projects")
    assert len(projects) == len(sample.PROJECTS)
    for project in projects:
        assert str(project["CustomerId"]) in customers
        assert str(project["DepartmentId"]) in departments


def test_pms_holds_matches_and_one_ambiguous_pair(loaded: tuple[Sandbox, Seeded]) -> None:
    """The PMS shares org numbers, department numbers and project codes; one org number twice."""
    sb, _ = loaded
    po_numbers = {n for c in sb.po_list("Customers") if (n := c.get("OrganizationNumber"))}
    pms = sb.pms_list("customers")
    shared = Counter(
        c["organization_number"] for c in pms if c.get("organization_number") in po_numbers
    )
    twice = [number for number, n in shared.items() if n == 2]
    assert len(twice) == 1  # the ambiguous match
    assert len(shared) == len(sample.PMS_COMPANIES) + 1
    po_codes = {d["Code"] for d in sb.po_list("Departments")}
    assert {c["number"] for c in pms if c["kind"] == "department"} <= po_codes
    project_codes = {p["Code"] for p in sb.po_list("Projects")}
    assert {p["code"] for p in sb.pms_list("projects")} == set(sample.PMS_PROJECTS)
    assert set(sample.PMS_PROJECTS) <= project_codes


def test_seeding_puts_the_rate_limit_back(loaded: tuple[Sandbox, Seeded]) -> None:
    """After seeding, the simulator enforces PowerOffice's 10 requests/second again."""
    assert loaded
    assert _RATE_AFTER_SEED["rate_limit_per_second"] == 10
