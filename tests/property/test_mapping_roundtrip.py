"""Round trips through the mapping lose nothing that is mapped, for every flow (Hypothesis)."""

from __future__ import annotations

from typing import Any, ClassVar

from hypothesis import given
from hypothesis import strategies as st

from tolken.mapping import (
    default_mapping,
    get_path,
    project,
    to_pms,
    to_pms_flat,
    to_poweroffice,
)
from tolken.mapping.transforms import normalise_date

MAPPING = default_mapping()

# Linked ids: PowerOffice int ids <-> PMS string ids, per referenced flow.
CUSTOMER_LINKS = {str(n): f"c_{n}" for n in range(1, 30)}
DEPARTMENT_LINKS = {str(n): f"d_{n}" for n in range(100, 110)}


class FakeLinks:
    """Resolver over the fixed link tables above."""

    tables: ClassVar[dict[str, dict[str, str]]] = {
        "customers": CUSTOMER_LINKS,
        "departments": DEPARTMENT_LINKS,
    }

    def to_pms(self, flow: str, po_id: str) -> str | None:
        return self.tables[flow].get(po_id)

    def to_poweroffice(self, flow: str, pms_id: str) -> str | None:
        return {v: k for k, v in self.tables[flow].items()}.get(pms_id)


LINKS = FakeLinks()

text = st.text(min_size=1, max_size=20)
maybe_text = st.none() | text
dates = st.dates()
date_text = st.one_of(
    dates.map(lambda d: d.isoformat()),
    dates.map(lambda d: f"{d.isoformat()}T00:00:00"),
    dates.map(lambda d: f"{d.isoformat()}T00:00:00.0000000+01:00"),
    dates.map(lambda d: f"{d.isoformat()}T00:00:00Z"),
)

departments = st.fixed_dictionaries(
    {"Id": st.integers(1, 10**6), "Code": maybe_text, "Name": text, "IsActive": st.booleans()}
)

addresses = st.none() | st.fixed_dictionaries(
    {},
    optional={
        "AddressLine1": maybe_text,
        "AddressLine2": maybe_text,
        "ZipCode": maybe_text,
        "City": maybe_text,
        "CountryCode": maybe_text,
    },
)

customers = st.fixed_dictionaries(
    {
        "Id": st.integers(1, 10**6),
        "Number": st.none() | st.integers(0, 10**12),
        "Name": maybe_text,
        "FirstName": maybe_text,
        "LastName": maybe_text,
        "IsPerson": st.booleans(),
        "OrganizationNumber": maybe_text,
        "EmailAddress": maybe_text,
        "PhoneNumber": maybe_text,
        "WebsiteUrl": maybe_text,
        "MailAddress": addresses,
        "IsArchived": st.booleans(),
    }
)

projects = st.fixed_dictionaries(
    {
        "Id": st.integers(1, 10**6),
        "Code": maybe_text,
        "Name": text,
        "CustomerId": st.none() | st.sampled_from(sorted(CUSTOMER_LINKS)).map(int),
        "DepartmentId": st.none() | st.sampled_from(sorted(DEPARTMENT_LINKS)).map(int),
        "StartDate": st.none() | date_text,
        "EndDate": st.none() | date_text,
        "ProjectStatus": st.sampled_from(
            ["NotStarted", "Active", "Complete", "Archived", "Tentative"]
        ),
        "IsBillable": st.booleans(),
        "Progress": st.integers(0, 100),
    }
)


def assert_poweroffice_round_trip(flow_id: str, record: dict[str, Any]) -> None:
    flow = MAPPING.flow(flow_id)
    back = to_poweroffice(flow, to_pms(flow, record, LINKS), LINKS)
    for prop in flow.properties:
        if not prop.writes_poweroffice or prop.poweroffice is None:
            continue
        original = get_path(record, prop.poweroffice)
        if prop.type == "date":
            original = normalise_date(original)
        assert get_path(back, prop.poweroffice) == original, prop.poweroffice


@given(departments)
def test_departments_round_trip(record: dict[str, Any]) -> None:
    """PowerOffice department -> PMS -> PowerOffice gives back every mapped field."""
    assert_poweroffice_round_trip("departments", record)


@given(customers)
def test_customers_round_trip(record: dict[str, Any]) -> None:
    """Customers keep number, kind, inverted archive flag and every nested address field."""
    assert_poweroffice_round_trip("customers", record)


@given(projects)
def test_projects_round_trip(record: dict[str, Any]) -> None:
    """Projects keep references (through links), dates, status enum, billable and progress."""
    assert_poweroffice_round_trip("projects", record)


pms_projects = st.fixed_dictionaries(
    {
        "id": st.just("p_1"),
        "code": maybe_text,
        "name": text,
        "customer_id": st.none() | st.sampled_from(sorted(CUSTOMER_LINKS.values())),
        "department_id": st.none() | st.sampled_from(sorted(DEPARTMENT_LINKS.values())),
        "start_date": st.none() | dates.map(lambda d: d.isoformat()),
        "end_date": st.none() | dates.map(lambda d: d.isoformat()),
        "status": st.sampled_from(["planned", "active", "completed", "archived", "tentative"]),
        "billable": st.booleans(),
        "progress": st.integers(0, 100),
        "version": st.integers(1, 50),
    }
)

pms_customers = st.fixed_dictionaries(
    {
        "id": st.just("c_1"),
        "kind": st.sampled_from(["company", "person"]),
        "number": st.none() | st.integers(0, 10**9).map(str),
        "name": maybe_text,
        "email": maybe_text,
        "address": st.fixed_dictionaries(
            {"line1": maybe_text, "postal_code": maybe_text, "city": maybe_text}
        ),
        "active": st.booleans(),
    }
)


@given(
    st.sampled_from(["customers", "projects"]).flatmap(
        lambda flow_id: st.tuples(
            st.just(flow_id), pms_customers if flow_id == "customers" else pms_projects
        )
    )
)
def test_pms_side_round_trip(case: tuple[str, dict[str, Any]]) -> None:
    """PMS record -> PowerOffice -> PMS-path values equals the PMS record's own projection."""
    flow_id, record = case
    flow = MAPPING.flow(flow_id)
    back = to_pms_flat(flow, to_poweroffice(flow, record, LINKS), LINKS)
    expected = {k: v for k, v in project(flow, record).items() if k in back}
    assert back == expected
