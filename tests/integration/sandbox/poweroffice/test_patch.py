"""PowerOffice simulator: JSON Patch on PatchDto fields, timestamps and failed patches."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from tolken.sandbox.credentials import APPLICATION_KEY, CLIENT_KEY, SUBSCRIPTION_KEY
from tolken.sandbox.poweroffice import create_app

STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}\+00:00$")
PATCH_TYPE = {"Content-Type": "application/json-patch+json"}


@pytest.fixture
def customer(po: TestClient) -> dict[str, Any]:
    """One stored customer with an address."""
    created = po.post(
        "/v2/Customers",
        json={
            "Name": "Havblikk AS",
            "EmailAddress": "post@havblikk.no",
            "MailAddress": {"AddressLine1": "Strandveien 4", "ZipCode": "5003", "City": "Bergen"},
        },
    )
    assert created.status_code == 201
    return dict(created.json())


def _patch(po: TestClient, path: str, ops: Any) -> Any:
    return po.patch(path, json=ops, headers=PATCH_TYPE)


def test_paths_are_case_insensitive_and_values_coerced(
    po: TestClient, customer: dict[str, Any]
) -> None:
    """'/phonenumber', '/EXTERNALNUMBER' with "12345" and '/isarchived' with "true" all apply."""
    response = _patch(
        po,
        f"/v2/Customers/{customer['Id']}",
        [
            {"op": "add", "path": "/phonenumber", "value": "+4791234567"},
            {"op": "replace", "path": "/EXTERNALNUMBER", "value": "12345"},
            {"op": "replace", "path": "/isArchived", "value": "true"},
        ],
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["PhoneNumber"], body["ExternalNumber"], body["IsArchived"]) == (
        "+4791234567",
        12345,
        True,
    )
    assert body["LastChangedDateTimeOffset"] > customer["LastChangedDateTimeOffset"]
    assert STAMP.match(body["LastChangedDateTimeOffset"])
    assert po.get(f"/v2/Customers/{customer['Id']}").json() == body


def test_address_only_change_keeps_customer_timestamp(
    po: TestClient, customer: dict[str, Any]
) -> None:
    """Changing only /MailAddress/City moves the address timestamp, not the customer's."""
    response = _patch(
        po,
        f"/v2/Customers/{customer['Id']}",
        [{"op": "replace", "path": "/MailAddress/city", "value": "Oslo"}],
    )
    body = response.json()
    assert body["MailAddress"]["City"] == "Oslo"
    assert body["LastChangedDateTimeOffset"] == customer["LastChangedDateTimeOffset"]
    address_stamp = body["MailAddress"]["LastChangedDateTimeOffset"]
    assert address_stamp > customer["MailAddress"]["LastChangedDateTimeOffset"]
    since = po.get(
        "/v2/Customers",
        params={"lastChangedDateTimeOffsetGreaterThan": customer["LastChangedDateTimeOffset"]},
    )
    assert since.status_code == 204


def test_contact_group_array_operations(po: TestClient, customer: dict[str, Any]) -> None:
    """Whole-array add, '/-' append, index replace and remove follow RFC 6902."""
    path = f"/v2/Customers/{customer['Id']}"
    _patch(po, path, [{"op": "add", "path": "/ContactGroupIds", "value": [3, 1001]}])
    _patch(po, path, [{"op": "add", "path": "/ContactGroupIds/-", "value": "7"}])
    _patch(po, path, [{"op": "replace", "path": "/ContactGroupIds/0", "value": 1002}])
    body = _patch(po, path, [{"op": "remove", "path": "/ContactGroupIds/1"}]).json()
    assert body["ContactGroupIds"] == [1002, 7]
    body = _patch(po, path, [{"op": "remove", "path": "/ContactGroupIds/-"}]).json()
    assert body["ContactGroupIds"] == [1002]


def test_copy_move_and_test_operations(po: TestClient) -> None:
    """copy and move between PatchDto fields work; a failing test op rejects the whole patch."""
    person = po.post(
        "/v2/Customers", json={"IsPerson": True, "FirstName": "Kari", "LastName": "Nordmann"}
    ).json()
    path = f"/v2/Customers/{person['Id']}"
    body = _patch(po, path, [{"op": "copy", "from": "/firstname", "path": "/lastname"}]).json()
    assert body["LastName"] == "Kari"
    failed = _patch(
        po,
        path,
        [
            {"op": "replace", "path": "/LastName", "value": "Hansen"},
            {"op": "test", "path": "/FirstName", "value": "Ola"},
        ],
    )
    assert failed.status_code == 400
    assert po.get(path).json()["LastName"] == "Kari"
    body = _patch(
        po,
        path,
        [
            {"op": "test", "path": "/FirstName", "value": "Kari"},
            {"op": "move", "from": "/EmailAddress", "path": "/InvoiceEmailAddress"},
            {"op": "replace", "path": "/EmailAddress", "value": "kari@example.no"},
        ],
    ).json()
    assert body["EmailAddress"] == "kari@example.no"


def test_non_patchable_path_is_documented_400_and_changes_nothing(
    po: TestClient, customer: dict[str, Any]
) -> None:
    """Read-only or unknown targets give '<Entity>PatchDto: ... segment ... not found.'."""
    department = po.post("/v2/Departments", json={"Name": "Salg", "Code": "10"}).json()
    response = _patch(
        po,
        f"/v2/Departments/{department['Id']}",
        [
            {"op": "replace", "path": "/Name", "value": "Endret"},
            {"op": "replace", "path": "/ManagerEmployeeNo", "value": 2},
        ],
    )
    assert response.status_code == 400
    problem = response.json()
    assert problem["title"] == "Department validation error(s)"
    assert problem["detail"] == (
        "DepartmentPatchDto: The target location specified by path segment "
        "'manageremployeeno' was not found."
    )
    assert po.get(f"/v2/Departments/{department['Id']}").json() == department
    for ops in (
        [{"op": "replace", "path": "/Id", "value": 1}],
        [{"op": "replace", "path": "/DepartmentCode", "value": "10"}],
        [{"op": "replace", "path": "/MailAddress/Street", "value": "x"}],
        [{"op": "replace", "path": "/Number", "value": "many"}],
        [{"op": "replace", "path": "/Name", "value": ""}],
        [{"op": "jump", "path": "/Name", "value": "x"}],
        {"op": "replace", "path": "/Name", "value": "x"},
    ):
        bad = _patch(po, f"/v2/Customers/{customer['Id']}", ops)
        assert bad.status_code == 400, ops
        assert bad.json()["title"] == "Customer validation error(s)"
    assert po.get(f"/v2/Customers/{customer['Id']}").json() == customer


def test_patch_uniqueness_and_references(po: TestClient, customer: dict[str, Any]) -> None:
    """A patch cannot take another customer's reference or point at a missing department."""
    other = po.post("/v2/Customers", json={"Name": "Annen AS", "ExternalImportReference": "X1"})
    path = f"/v2/Customers/{customer['Id']}"
    clash = _patch(po, path, [{"op": "add", "path": "/ExternalImportReference", "value": "X1"}])
    assert clash.status_code == 400
    assert clash.json()["detail"] == (
        f"ExternalImportReference is already in use. 'X1' is used on (contact) "
        f"Id = {other.json()['Id']}."
    )
    missing = _patch(po, path, [{"op": "replace", "path": "/DepartmentId", "value": 4242}])
    assert missing.status_code == 404
    assert po.get(path).json() == customer


def test_plain_json_content_type_and_project_rules(po: TestClient) -> None:
    """PATCH with application/json works; '.' in Code and Progress 150 are refused."""
    project = po.post("/v2/Projects", json={"Name": "Prosjekt", "Code": "100"}).json()
    path = f"/v2/Projects/{project['Id']}"
    ok = po.patch(path, json=[{"op": "replace", "path": "/progress", "value": "40"}])
    assert ok.status_code == 200
    assert ok.json()["Progress"] == 40
    assert _patch(po, path, [{"op": "replace", "path": "/Code", "value": "1.1"}]).status_code == 400
    assert (
        _patch(po, path, [{"op": "replace", "path": "/Progress", "value": 150}]).status_code == 400
    )
    status = _patch(po, path, [{"op": "replace", "path": "/ProjectStatus", "value": "archived"}])
    assert status.json()["ProjectStatus"] == "Archived"
    assert po.get(path).json()["Progress"] == 40


def test_no_op_patch_keeps_timestamp_and_edits_order(po: TestClient) -> None:
    """Patching a value to itself changes nothing; rapid edits get strictly increasing stamps."""
    department = po.post("/v2/Departments", json={"Name": "Salg", "Code": "10"}).json()
    path = f"/v2/Departments/{department['Id']}"
    same = _patch(po, path, [{"op": "replace", "path": "/Name", "value": "Salg"}]).json()
    assert same["LastChangedDateTimeOffset"] == department["LastChangedDateTimeOffset"]
    stamps = [
        _patch(po, path, [{"op": "replace", "path": "/Name", "value": f"Salg {i}"}]).json()[
            "LastChangedDateTimeOffset"
        ]
        for i in range(20)
    ]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == len(stamps)


_fields = st.sampled_from(
    ["/Name", "/name", "/EmailAddress", "/Number", "/ExternalNumber", "/IsArchived",
     "/MailAddress/City", "/mailaddress/zipcode", "/ContactGroupIds/-", "/ContactGroupIds/0",
     "/Id", "/DepartmentCode", "/Nope"]
)  # fmt: skip
_values = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 20000), st.text(max_size=8), st.just("12345")
)
_operation = st.fixed_dictionaries(
    {"op": st.sampled_from(["add", "replace", "remove", "test", "copy", "move"]), "path": _fields},
    optional={"value": _values, "from": _fields},
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(operations=st.lists(_operation, max_size=4))
def test_patch_is_all_or_nothing(operations: list[dict[str, Any]]) -> None:
    """Any patch either applies whole (200, stored as returned) or fails and stores nothing."""
    with TestClient(create_app(rate_limit_per_second=None)) as po:
        token = po.post(
            "/OAuth/Token",
            auth=(APPLICATION_KEY, CLIENT_KEY),
            headers={"Ocp-Apim-Subscription-Key": SUBSCRIPTION_KEY},
            data={"grant_type": "client_credentials"},
        ).json()["access_token"]
        po.headers.update(
            {"Authorization": f"Bearer {token}", "Ocp-Apim-Subscription-Key": SUBSCRIPTION_KEY}
        )
        before = po.post(
            "/v2/Customers",
            json={"Name": "Atom AS", "MailAddress": {"City": "Oslo", "ZipCode": "0150"}},
        ).json()
        path = f"/v2/Customers/{before['Id']}"
        response = _patch(po, path, operations)
        after = po.get(path).json()
        if response.status_code == 200:
            assert after == response.json()
        else:
            assert response.status_code in (400, 404), response.text
            assert after == before
