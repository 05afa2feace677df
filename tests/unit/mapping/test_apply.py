"""Applying the mapping: values cross between the systems the way DESIGN §3 says."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tolken.connectors.poweroffice import build_patch
from tolken.errors import RecordError
from tolken.mapping import (
    Flow,
    MappingValueError,
    UnresolvedReference,
    belongs,
    canonical,
    default_mapping,
    merge_key_flat,
    merge_keys,
    pms_changes,
    pms_fields,
    po_projector,
    poweroffice_changes,
    project,
    to_pms,
    to_pms_flat,
    to_poweroffice,
)
from tolken.mapping.paths import get_path
from tolken.mapping.transforms import ApplyContext, StringTransform


class Links:
    """A fake resolver over fixed link tables."""

    def __init__(self, links: dict[str, dict[str, str]]) -> None:
        self.links = links

    def to_pms(self, flow: str, po_id: str) -> str | None:
        return self.links.get(flow, {}).get(po_id)

    def to_poweroffice(self, flow: str, pms_id: str) -> str | None:
        back = {v: k for k, v in self.links.get(flow, {}).items()}
        return back.get(pms_id)


LINKS = Links({"customers": {"5": "c_5"}, "departments": {"7": "c_7"}})
MAPPING = default_mapping()
CUSTOMERS = MAPPING.flow("customers")
DEPARTMENTS = MAPPING.flow("departments")
PROJECTS = MAPPING.flow("projects")

ACME: dict[str, Any] = {
    "Id": 1,
    "Number": 10001,
    "Name": "Acme AS",
    "IsPerson": False,
    "OrganizationNumber": "912 345 678",
    "EmailAddress": "Post@Acme.no",
    "PhoneNumber": "",
    "MailAddress": {"AddressLine1": "Storgata 1", "ZipCode": "0150", "City": "Oslo"},
    "IsArchived": True,
    "CurrencyCode": "NOK",
}

PROJECT: dict[str, Any] = {
    "Id": 3,
    "Code": "P-1",
    "Name": "Bygg",
    "CustomerId": 5,
    "DepartmentId": 7,
    "StartDate": "2024-01-02T00:00:00.0000000+01:00",
    "EndDate": "2024-06-30",
    "ProjectStatus": "Complete",
    "IsBillable": True,
    "Progress": 40,
}

SAMPLES: dict[str, list[dict[str, Any]]] = {
    "departments": [{"Code": 4, "Name": "", "IsActive": False}, {"Code": "D", "name": "Salg"}, {}],
    "customers": [
        ACME,
        {**ACME, "Number": "10002", "Name": 77, "IsPerson": True, "IsArchived": None},
        {"number": 3, "mailaddress": {"city": "Bergen"}, "MailAddress": None},
    ],
    "projects": [
        PROJECT,
        {**PROJECT, "CustomerId": 404, "DepartmentId": None, "EndDate": ""},
        {"Code": 12, "CustomerId": "", "StartDate": None, "ProjectStatus": None},
    ],
}


def test_customer_to_pms_nests_address_and_inverts_archive() -> None:
    """A PowerOffice customer becomes a PMS body: nested address, kind, active = not archived."""
    body = to_pms(CUSTOMERS, ACME)
    assert body["number"] == "10001"
    assert body["kind"] == "company"
    assert body["active"] is False
    assert body["phone"] is None  # empty text and null are the same value
    assert body["address"] == {
        "line1": "Storgata 1",
        "line2": None,
        "postal_code": "0150",
        "city": "Oslo",
        "country": None,
    }
    assert "CurrencyCode" not in body
    assert "currency" not in body


def test_camelcase_poweroffice_keys_are_read() -> None:
    """PowerOffice answers seen in camelCase map the same as PascalCase ones."""
    camel = {"name": "Acme AS", "isPerson": True, "mailAddress": {"city": "Bergen"}}
    body = to_pms(CUSTOMERS, camel)
    assert (body["name"], body["kind"], body["address"]["city"]) == ("Acme AS", "person", "Bergen")


def test_pms_record_to_poweroffice_pascal_case() -> None:
    """A PMS customer becomes PascalCase PowerOffice values with a nested MailAddress."""
    pms = {
        "id": "c_1",
        "kind": "person",
        "number": "10002",
        "first_name": "Kari",
        "address": {"city": "Tromsø", "postal_code": "9008"},
        "active": True,
        "version": 3,
    }
    body = to_poweroffice(CUSTOMERS, pms)
    assert body["Number"] == 10002
    assert body["IsPerson"] is True
    assert body["FirstName"] == "Kari"
    assert body["IsArchived"] is False
    assert body["MailAddress"]["City"] == "Tromsø"
    assert body["MailAddress"]["ZipCode"] == "9008"
    assert "Version" not in body
    assert "version" not in body


def test_department_constant_goes_to_pms_only() -> None:
    """Departments carry kind=department into the PMS; nothing constant goes to PowerOffice."""
    body = to_pms(DEPARTMENTS, {"Code": "10", "Name": "Research", "IsActive": True})
    assert body == {"number": "10", "name": "Research", "active": True, "kind": "department"}
    back = to_poweroffice(DEPARTMENTS, body)
    assert back == {"Code": "10", "Name": "Research", "IsActive": True}
    assert pms_fields(DEPARTMENTS, writable_to="poweroffice") == ["number", "name", "active"]


def test_project_references_dates_and_status() -> None:
    """Project references go through links, midnight timestamps become dates, status is mapped."""
    body = to_pms(PROJECTS, PROJECT, LINKS)
    assert body["customer_id"] == "c_5"
    assert body["department_id"] == "c_7"
    assert body["start_date"] == "2024-01-02"
    assert body["status"] == "completed"
    back = to_poweroffice(PROJECTS, body, LINKS)
    assert back["CustomerId"] == 5
    assert back["DepartmentId"] == 7
    assert back["StartDate"] == "2024-01-02"
    assert back["ProjectStatus"] == "Complete"


def test_unlinked_reference_is_reported_distinctly() -> None:
    """A project whose customer is not linked raises UnresolvedReference, never a dangling id."""
    with pytest.raises(UnresolvedReference) as info:
        to_pms(PROJECTS, {**PROJECT, "CustomerId": 99}, LINKS)
    assert info.value.field == "customer_id"
    assert info.value.target_flow == "customers"
    assert info.value.value == 99
    assert isinstance(info.value, RecordError)
    with pytest.raises(UnresolvedReference):
        to_poweroffice(PROJECTS, {"customer_id": "c_404"}, LINKS)


def test_unresolved_can_be_collected_instead_of_raised() -> None:
    """The engine may collect unresolved fields; they are left out of the values."""
    missing: set[str] = set()
    values = to_pms_flat(PROJECTS, {**PROJECT, "DepartmentId": 8}, LINKS, unresolved=missing)
    assert missing == {"department_id"}
    assert "department_id" not in values
    assert values["customer_id"] == "c_5"


def _one_property_at_a_time(
    flow: Flow, record: dict[str, Any], unresolved: set[str]
) -> dict[str, Any]:
    """The mapping spelled out per property: read the path, convert, make canonical."""
    out: dict[str, Any] = {}
    for prop in flow.properties:
        if not prop.writes_pms:
            continue
        ctx = ApplyContext(flow=flow.poweroffice, field=prop.pms, resolver=LINKS)
        raw = get_path(record, prop.poweroffice) if prop.poweroffice else None
        try:
            out[prop.pms] = canonical(prop, prop.converter.to_pms(raw, ctx))
        except UnresolvedReference:
            unresolved.add(prop.pms)
    return out


@pytest.mark.parametrize("flow_id", ["departments", "customers", "projects"])
def test_a_projector_maps_as_to_pms_flat(flow_id: str) -> None:
    """One projector for many records gives what to_pms_flat gives each (values, their types and
    order, unresolved fields, errors)."""
    flow = default_mapping().flow(flow_id)
    projector = po_projector(flow, LINKS)
    for record in SAMPLES[flow_id]:
        missing: set[str] = set()
        wanted_missing: set[str] = set()
        got = projector(record, missing)
        wanted = _one_property_at_a_time(flow, record, wanted_missing)
        assert list(got.items()) == list(wanted.items())
        assert [type(v) for v in got.values()] == [type(v) for v in wanted.values()]
        assert missing == wanted_missing
    with pytest.raises(MappingValueError):
        projector({**SAMPLES[flow_id][0], "Name": ["not", "text"]}, set())


def test_empty_reference_is_not_unresolved() -> None:
    """A project without a customer maps to customer_id None without asking the links."""
    assert to_pms_flat(PROJECTS, {**PROJECT, "CustomerId": None}, LINKS)["customer_id"] is None


@pytest.mark.parametrize(
    ("flow_id", "record", "wanted"),
    [
        ("projects", {**PROJECT, "ProjectStatus": "Paused"}, "status: 'Paused'"),
        ("projects", {**PROJECT, "StartDate": "02.01.2024"}, "start_date: '02.01.2024'"),
        ("projects", {**PROJECT, "StartDate": "2024-02-30"}, "start_date: '2024-02-30'"),
        ("projects", {**PROJECT, "Progress": "ten"}, "progress: 'ten'"),
        ("departments", {"IsActive": "yes"}, "active: 'yes'"),
    ],
)
def test_bad_values_park_the_record(flow_id: str, record: dict[str, Any], wanted: str) -> None:
    """A value that cannot be converted raises a record-level error naming field and value."""
    with pytest.raises(MappingValueError, match=wanted):
        to_pms(MAPPING.flow(flow_id), record, LINKS)


def test_non_numeric_pms_number_cannot_reach_poweroffice() -> None:
    """PowerOffice customer numbers are integers: a PMS number like 'A-1' parks the record."""
    with pytest.raises(MappingValueError, match="number: 'A-1' is not a whole number"):
        poweroffice_changes(CUSTOMERS, {"number": "A-1"})


def test_flat_projection_matches_both_sides() -> None:
    """A PowerOffice record and the PMS record made from it project to the same flat values."""
    po_flat = to_pms_flat(CUSTOMERS, ACME)
    pms_record = {"id": "c_1", "version": 1, **to_pms(CUSTOMERS, ACME)}
    assert project(CUSTOMERS, pms_record) == po_flat
    assert po_flat["address.city"] == "Oslo"
    pms_record["website"] = ""
    assert project(CUSTOMERS, pms_record)["website"] is None


def test_pms_projection_canonicalises_types() -> None:
    """PMS values are compared in canonical form: dates as YYYY-MM-DD, numbers as text."""
    values = project(PROJECTS, {"start_date": "2024-01-02T00:00:00Z", "progress": "5"})
    assert values["start_date"] == "2024-01-02"
    assert values["progress"] == 5
    assert project(CUSTOMERS, {"number": 10001})["number"] == "10001"


def test_changes_only_carry_writable_fields() -> None:
    """Partial changes: flat PMS paths for the PMS, flat PascalCase paths for PowerOffice,
    one-way properties kept to their side."""
    assert pms_changes(CUSTOMERS, {"address.city": "Oslo", "name": "X"}) == {
        "address.city": "Oslo",
        "name": "X",
    }
    assert pms_changes(DEPARTMENTS, {"kind": "department", "name": "R&D"}) == {
        "kind": "department",
        "name": "R&D",
    }
    assert poweroffice_changes(DEPARTMENTS, {"kind": "department", "name": "R&D"}) == {
        "Name": "R&D"
    }
    assert poweroffice_changes(CUSTOMERS, {"address.postal_code": "5003"}) == {
        "MailAddress.ZipCode": "5003"
    }
    with pytest.raises(KeyError):
        pms_changes(CUSTOMERS, {"nickname": "x"})


def test_poweroffice_changes_are_flat_converted_paths() -> None:
    """Every mapped PMS change becomes one PowerOffice path with the converted value, address
    fields included, ready for the connector's JSON Patch; cleared fields stay None."""
    changes = poweroffice_changes(
        CUSTOMERS,
        {"address.city": "Bergen", "address.line2": None, "active": False, "phone": None},
    )
    assert changes == {
        "MailAddress.City": "Bergen",
        "MailAddress.AddressLine2": None,
        "IsArchived": True,
        "PhoneNumber": None,
    }


_TEXT_PROPS = [
    p
    for p in CUSTOMERS.properties
    if isinstance(p.transform, StringTransform) and p.transform.poweroffice_type == "string"
]


@given(
    st.dictionaries(
        st.sampled_from([p.pms for p in _TEXT_PROPS]),
        st.none() | st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=6),
    )
)
def test_each_pms_change_is_one_poweroffice_patch_operation(changes: dict[str, Any]) -> None:
    """Any set of PMS text changes reaches PowerOffice as one replace per field, at the field's
    own path (address fields under /MailAddress/), with the same value."""
    writes = poweroffice_changes(CUSTOMERS, changes)
    by_pms = {p.pms: p.poweroffice for p in _TEXT_PROPS}
    assert writes == {by_pms[path]: value for path, value in changes.items()}
    patch = build_patch("Customers", writes)
    assert sorted((op["path"], op["value"]) for op in patch) == sorted(
        ("/" + str(by_pms[path]).replace(".", "/"), value) for path, value in changes.items()
    )


def test_flow_membership_by_kind() -> None:
    """PMS customers are split between flows by kind."""
    assert belongs(DEPARTMENTS, {"kind": "department"})
    assert not belongs(DEPARTMENTS, {"kind": "company"})
    assert belongs(CUSTOMERS, {"kind": "person"})
    assert not belongs(CUSTOMERS, {"kind": "department"})
    assert belongs(PROJECTS, {"code": "P-1"})


def test_merge_keys_normalise_and_respect_conditions() -> None:
    """Org numbers match by digits; e-mail matches case-insensitively, for persons only."""
    org, email = CUSTOMERS.merge_rules
    assert merge_keys(CUSTOMERS, org, ACME, "poweroffice") == "912345678"
    assert merge_keys(CUSTOMERS, org, {"organization_number": "NO912345678MVA"}, "pms") == (
        "912345678"
    )
    assert merge_keys(CUSTOMERS, org, {"organization_number": ""}, "pms") is None
    assert merge_keys(CUSTOMERS, email, ACME, "poweroffice") is None  # a company
    person = {**ACME, "IsPerson": True}
    assert merge_keys(CUSTOMERS, email, person, "poweroffice") == "post@acme.no"
    assert merge_keys(CUSTOMERS, email, {"kind": "person", "email": " POST@acme.NO "}, "pms") == (
        "post@acme.no"
    )
    assert merge_keys(CUSTOMERS, email, {"kind": "company", "email": "post@acme.no"}, "pms") is None


def test_merge_keys_in_flat_space() -> None:
    """The same keys come out of flat PMS-path values, whichever side they were projected from."""
    org, email = CUSTOMERS.merge_rules
    person = to_pms_flat(CUSTOMERS, {**ACME, "IsPerson": True})
    assert merge_key_flat(org, person) == "912345678"
    assert merge_key_flat(email, person) == "post@acme.no"
    assert merge_key_flat(email, to_pms_flat(CUSTOMERS, ACME)) is None
    dept = DEPARTMENTS.merge_rules[0]
    assert merge_key_flat(dept, to_pms_flat(DEPARTMENTS, {"Code": " 10 "})) == "10"
