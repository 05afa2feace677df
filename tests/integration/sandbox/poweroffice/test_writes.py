"""PowerOffice simulator: POST, GET by id and DELETE semantics, and bad input changing nothing."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from loopback import serve
from tolken.sandbox.credentials import APPLICATION_KEY, CLIENT_KEY, SUBSCRIPTION_KEY
from tolken.sandbox.poweroffice import create_app


def _all(po: TestClient, resource: str) -> list[dict[str, Any]]:
    response = po.get(f"/v2/{resource}")
    return [] if response.status_code == 204 else list(response.json())


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def test_customer_post_returns_full_dto_with_auto_number(po: TestClient) -> None:
    """A new customer gets 201, every DTO property, numbers from 10000 and its own address id."""
    first = po.post("/v2/Customers", json={"Name": "Fjordkraft AS"})
    second = po.post("/v2/Customers", json={"name": "Bergen Bygg AS", "Number": 10500})
    third = po.post("/v2/Customers", json={"Name": "Tredje AS"})
    assert first.status_code == second.status_code == third.status_code == 201
    body = first.json()
    assert len(body) == 51
    assert body["Number"] == 10000
    assert body["Name"] == "Fjordkraft AS"
    assert body["CurrencyCode"] == "NOK"
    assert body["OrganizationNumber"] is None
    assert isinstance(body["MailAddress"]["Id"], int)
    assert second.json()["Number"] == 10500
    assert third.json()["Number"] == 10501
    assert po.get(f"/v2/Customers/{body['Id']}").json() == body


def test_customer_post_validation_errors(po: TestClient) -> None:
    """Missing names, half addresses and out-of-range values are 400 with the entity's title."""
    cases: list[dict[str, Any]] = [
        {},
        {"IsPerson": True, "FirstName": "Kari"},
        {"Name": "X AS", "MailAddress": {"AddressLine1": "Storgata 1"}},
        {"Name": "X AS", "Allowance": 500},
        {"Name": "X AS", "InvoiceDeliveryType": "PdfByEmail"},
        {"Name": "X AS", "ExternalImportReference": "x" * 51},
    ]
    for body in cases:
        problem = _problem(po.post("/v2/Customers", json=body), 400)
        assert problem["title"] == "Customer validation error(s)"
    assert _all(po, "Customers") == []
    person = po.post(
        "/v2/Customers", json={"IsPerson": True, "FirstName": "Kari", "LastName": "Nordmann"}
    )
    assert person.status_code == 201


def test_duplicate_external_import_reference_is_refused_and_changes_nothing(po: TestClient) -> None:
    """A second customer with the same ExternalImportReference gets the documented 400 detail."""
    first = po.post("/v2/Customers", json={"Name": "A AS", "ExternalImportReference": "ABC123"})
    before = _all(po, "Customers")
    duplicate = po.post("/v2/Customers", json={"Name": "B AS", "ExternalImportReference": "ABC123"})
    problem = _problem(duplicate, 400)
    assert problem["title"] == "Customer validation error(s)"
    assert problem["detail"] == (
        f"ExternalImportReference is already in use. 'ABC123' is used on (contact) "
        f"Id = {first.json()['Id']}."
    )
    number_clash = po.post("/v2/Customers", json={"Name": "C AS", "ExternalNumber": 7})
    assert number_clash.status_code == 201
    again = _problem(po.post("/v2/Customers", json={"Name": "D AS", "ExternalNumber": 7}), 400)
    assert "ExternalNumber is already in use" in again["detail"]
    assert len(_all(po, "Customers")) == len(before) + 1


def test_malformed_json_and_wrong_types_store_nothing(po: TestClient) -> None:
    """Broken JSON and wrongly typed properties are 400 and leave the tables empty."""
    broken = po.post(
        "/v2/Customers", content=b'{"Name": "A AS",', headers={"Content-Type": "application/json"}
    )
    assert _problem(broken, 400)["detail"].startswith("The request body is not valid JSON")
    for body in (
        {"Name": 5},
        {"Name": "A AS", "Number": "ten"},
        {"Name": "A AS", "IsPerson": "yes"},
        {"Name": "A AS", "MailAddress": "Oslo"},
        {"Name": "A AS", "CustomerSince": "yesterday"},
        [{"Name": "A AS"}],
    ):
        assert po.post("/v2/Customers", json=body).status_code == 400
    form = po.post("/v2/Customers", data={"Name": "A AS"})
    assert _problem(form, 415)["title"] == "Unsupported Media Type"
    assert po.post("/v2/Departments", json={"Name": "Salg", "IsActive": "true"}).status_code == 400
    assert po.post("/v2/Projects", json={"Name": "P", "Progress": "lots"}).status_code == 400
    for resource in ("Customers", "Departments", "Projects"):
        assert po.get(f"/v2/{resource}").status_code == 204


def test_project_rules(po: TestClient) -> None:
    """Project codes refuse '.', Progress stays 0–100, references must exist (404)."""
    assert _problem(po.post("/v2/Projects", json={"Name": "P", "Code": "1.2"}), 400)["title"] == (
        "Project validation error(s)"
    )
    assert po.post("/v2/Projects", json={"Name": "P", "Progress": 101}).status_code == 400
    assert po.post("/v2/Projects", json={"Code": "7"}).status_code == 400
    missing = _problem(po.post("/v2/Projects", json={"Name": "P", "CustomerId": 999}), 404)
    assert missing["detail"] == "Customer with id = 999 not found."
    missing = _problem(po.post("/v2/Projects", json={"Name": "P", "DepartmentCode": "Avd9"}), 404)
    assert missing["detail"] == "Department with code = 'Avd9' not found."
    assert po.get("/v2/Projects").status_code == 204
    customer = po.post("/v2/Customers", json={"Name": "Kunde AS"}).json()
    department = po.post("/v2/Departments", json={"Name": "Salg", "Code": "10"}).json()
    project = po.post(
        "/v2/Projects",
        json={"Name": "P", "CustomerNo": customer["Number"], "DepartmentId": department["Id"]},
    )
    assert project.status_code == 201
    body = project.json()
    assert (body["CustomerId"], body["CustomerNo"]) == (customer["Id"], customer["Number"])
    assert (body["DepartmentId"], body["DepartmentCode"]) == (department["Id"], "10")
    assert body["Code"] == "1"
    sub = po.post("/v2/Projects", json={"Name": "Sub", "Code": "2", "ParentProjectId": body["Id"]})
    assert sub.json()["Code"] == "1.2"
    assert sub.json()["CustomerId"] == customer["Id"]
    assert sub.json()["CustomerNo"] is None


def test_department_defaults_and_unique_code(po: TestClient) -> None:
    """A department is active unless told otherwise; a second department with its code is 400."""
    created = po.post("/v2/Departments", json={"Name": "Salg", "Code": "10"})
    assert created.status_code == 201
    assert created.json()["IsActive"] is True
    assert po.post("/v2/Departments", json={"Name": "Salg 2", "Code": "10"}).status_code == 400
    assert po.post("/v2/Departments", json={"Code": "20"}).status_code == 400
    assert len(_all(po, "Departments")) == 1


def test_get_missing_is_documented_404(po: TestClient) -> None:
    """GET of an unknown id is 404 'Object(s) not found' naming the entity and id."""
    problem = _problem(po.get("/v2/Customers/12345"), 404)
    assert problem["title"] == "Object(s) not found"
    assert problem["detail"] == "Customer with id = 12345 not found."
    assert po.get("/v2/Departments/abc").status_code == 400


def test_delete_in_use_is_409_and_free_is_200(po: TestClient) -> None:
    """Records referenced elsewhere cannot be deleted; free ones can, then they are gone."""
    department = po.post("/v2/Departments", json={"Name": "Drift", "Code": "30"}).json()
    customer = po.post(
        "/v2/Customers", json={"Name": "Kunde AS", "DepartmentId": department["Id"]}
    ).json()
    project = po.post("/v2/Projects", json={"Name": "P", "CustomerId": customer["Id"]}).json()
    conflict = _problem(po.delete(f"/v2/Customers/{customer['Id']}"), 409)
    assert conflict["title"] == "Customer conflict"
    assert (
        conflict["detail"]
        == f"Customer with id = {customer['Id']} is in use and cannot be deleted."
    )
    assert _problem(po.delete(f"/v2/Departments/{department['Id']}"), 409)["title"] == (
        "Department conflict"
    )
    assert po.delete(f"/v2/Projects/{project['Id']}").status_code == 200
    assert po.delete(f"/v2/Customers/{customer['Id']}").status_code == 200
    assert po.delete(f"/v2/Departments/{department['Id']}").status_code == 200
    assert po.get(f"/v2/Customers/{customer['Id']}").status_code == 404
    assert _problem(po.delete(f"/v2/Projects/{project['Id']}"), 404)["detail"] == (
        f"Project with id = {project['Id']} not found."
    )


def test_concurrent_creates_over_loopback_get_distinct_numbers() -> None:
    """Customers created in parallel over real HTTP all get distinct ids and numbers."""
    with serve(create_app(rate_limit_per_second=None)) as url, httpx.Client(base_url=url) as http:
        token = http.post(
            "/OAuth/Token",
            auth=(APPLICATION_KEY, CLIENT_KEY),
            headers={"Ocp-Apim-Subscription-Key": SUBSCRIPTION_KEY},
            data={"grant_type": "client_credentials"},
        ).json()["access_token"]
        http.headers.update(
            {"Authorization": f"Bearer {token}", "Ocp-Apim-Subscription-Key": SUBSCRIPTION_KEY}
        )
        with ThreadPoolExecutor(max_workers=6) as pool:
            created = list(
                pool.map(
                    lambda i: http.post("/v2/Customers", json={"Name": f"Parallell {i} AS"}),
                    range(30),
                )
            )
        assert all(r.status_code == 201 for r in created)
        assert len({r.json()["Id"] for r in created}) == 30
        assert sorted(r.json()["Number"] for r in created) == list(range(10000, 10030))


@pytest.mark.parametrize("resource", ["Customers", "Departments", "Projects"])
@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
@pytest.mark.parametrize("entity_id", ["9223372036854775808", "-9223372036854775809", "1" * 40])
def test_ids_beyond_int64_are_400_not_500(
    po: TestClient, resource: str, method: str, entity_id: str
) -> None:
    """An id the Int64 route cannot bind is a 400 cast error, never a server error."""
    body = [{"op": "replace", "path": "/Name", "value": "x"}] if method == "PATCH" else None
    headers = {"Content-Type": "application/json-patch+json"} if body else {}
    response = po.request(method, f"/v2/{resource}/{entity_id}", json=body, headers=headers)
    problem = _problem(response, 400)
    assert problem["title"] == "Unable to cast object(s)"
    assert po.get(f"/v2/{resource}/9223372036854775807").status_code == 404
