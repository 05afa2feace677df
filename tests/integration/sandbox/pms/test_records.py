"""Reference PMS over real loopback HTTP: auth, create, get, merge patch, If-Match, delete."""

from __future__ import annotations

import httpx
import pytest

from tolken.sandbox.credentials import PMS_API_KEY

COMPANY = {
    "kind": "company",
    "name": "Fjord Bygg AS",
    "number": "10001",
    "organization_number": "912345678",
    "email": "post@fjordbygg.no",
    "address": {"line1": "Storgata 1", "postal_code": "0150", "city": "Oslo", "country": "NO"},
}


@pytest.mark.parametrize("header", [None, "Bearer wrong-key", PMS_API_KEY, "Basic abc"])
def test_requests_without_the_api_key_get_401(base_url: str, header: str | None) -> None:
    """Anything but `Authorization: Bearer <api key>` is answered 401 with the error shape."""
    headers = {"Authorization": header} if header else {}
    response = httpx.get(f"{base_url}/api/v1/customers", headers=headers)
    assert response.status_code == 401
    assert response.json()["errors"][0]["field"] == "Authorization"


def test_create_returns_201_with_every_contract_field(api: httpx.Client) -> None:
    """POST answers 201 with id, version 1, timestamps, defaults and the full address shape."""
    response = api.post("/customers", json=COMPANY)
    assert response.status_code == 201
    record = response.json()
    assert set(record) == {
        "id", "kind", "number", "name", "first_name", "last_name", "organization_number",
        "email", "phone", "website", "address", "active", "external_ref", "version",
        "created_at", "updated_at",
    }  # fmt: skip
    assert record["version"] == 1
    assert record["active"] is True
    assert record["created_at"] == record["updated_at"]
    assert record["address"] == {**COMPANY["address"], "line2": None}  # type: ignore[dict-item]
    assert response.headers["ETag"] == '"1"'
    assert api.get(f"/customers/{record['id']}").json() == record


def test_project_has_every_contract_field_and_defaults(api: httpx.Client) -> None:
    """A new project has status planned, billable false, active true and all listed fields."""
    record = api.post("/projects", json={"name": "Nybygg", "code": "P-1"}).json()
    assert set(record) == {
        "id", "code", "name", "customer_id", "department_id", "start_date", "end_date",
        "status", "billable", "progress", "active", "external_ref", "version",
        "created_at", "updated_at",
    }  # fmt: skip
    assert (record["status"], record["billable"], record["active"]) == ("planned", False, True)


def test_get_unknown_id_is_404(api: httpx.Client) -> None:
    """GET of an id that does not exist answers 404 with the error shape."""
    response = api.get("/projects/prj_missing")
    assert response.status_code == 404
    assert response.json()["errors"][0]["message"] == "no project with id prj_missing"


def test_idempotency_key_returns_the_same_record_without_a_duplicate(api: httpx.Client) -> None:
    """The same Idempotency-Key and body give the same record; only one exists."""
    key = {"Idempotency-Key": "create-42"}
    first = api.post("/customers", json=COMPANY, headers=key)
    second = api.post("/customers", json=COMPANY, headers=key)
    assert (first.status_code, second.status_code) == (201, 201)
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert len(api.get("/customers").json()["items"]) == 1


def test_idempotency_key_with_a_different_body_is_422(api: httpx.Client) -> None:
    """Reusing a key for another body is refused with 422 on Idempotency-Key, nothing created."""
    key = {"Idempotency-Key": "create-43"}
    api.post("/customers", json=COMPANY, headers=key)
    response = api.post("/customers", json={**COMPANY, "name": "Other AS"}, headers=key)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "Idempotency-Key"
    assert len(api.get("/customers").json()["items"]) == 1


def test_idempotency_keys_are_per_resource(api: httpx.Client) -> None:
    """The same key on customers and projects creates one of each."""
    key = {"Idempotency-Key": "same"}
    assert api.post("/customers", json=COMPANY, headers=key).status_code == 201
    assert api.post("/projects", json={"name": "X"}, headers=key).status_code == 201


def test_failed_create_does_not_burn_the_idempotency_key(api: httpx.Client) -> None:
    """A 422 stores nothing, so the key can be reused with a corrected body."""
    key = {"Idempotency-Key": "fix-me"}
    assert api.post("/customers", json={"kind": "company"}, headers=key).status_code == 422
    assert api.post("/customers", json=COMPANY, headers=key).status_code == 201


def test_merge_patch_sets_clears_and_merges_nested_address(api: httpx.Client) -> None:
    """PATCH applies RFC 7396: null clears, nested address merges, version +1."""
    record = api.post("/customers", json=COMPANY).json()
    patch = {
        "email": None,
        "phone": "+47 22 00 00 00",
        "address": {"city": "Bergen", "line1": None},
    }
    response = api.patch(
        f"/customers/{record['id']}",
        json=patch,
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert response.status_code == 200
    updated = response.json()
    assert updated["email"] is None
    assert updated["phone"] == "+47 22 00 00 00"
    assert updated["address"] == {
        "line1": None, "line2": None, "postal_code": "0150", "city": "Bergen", "country": "NO",
    }  # fmt: skip
    assert updated["version"] == 2
    assert updated["updated_at"] > record["updated_at"]
    assert updated["created_at"] == record["created_at"]


def test_merge_patch_null_on_a_defaulted_field_restores_the_default(api: httpx.Client) -> None:
    """Removing `active` makes it true again; removing a required field is 422."""
    record = api.post("/customers", json={**COMPANY, "active": False}).json()
    assert api.patch(f"/customers/{record['id']}", json={"active": None}).json()["active"] is True
    response = api.patch(f"/customers/{record['id']}", json={"name": None})
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "name", "message": "is required"}]


def test_patch_that_changes_nothing_keeps_the_version(api: httpx.Client) -> None:
    """A no-op patch leaves version and updated_at alone and logs no change."""
    record = api.post("/customers", json=COMPANY).json()
    before = api.get("/changes").json()["last_seq"]
    same = api.patch(f"/customers/{record['id']}", json={"name": COMPANY["name"]}).json()
    assert (same["version"], same["updated_at"]) == (1, record["updated_at"])
    assert api.get("/changes").json()["last_seq"] == before


def test_if_match_current_version_succeeds_and_stale_is_412(api: httpx.Client) -> None:
    """If-Match with the current version applies; a stale one is 412 naming the current version."""
    record = api.post("/customers", json=COMPANY).json()
    path = f"/customers/{record['id']}"
    ok = api.patch(path, json={"name": "A AS"}, headers={"If-Match": '"1"'})
    assert ok.status_code == 200
    assert ok.json()["version"] == 2
    stale = api.patch(path, json={"name": "B AS"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    assert stale.json()["current_version"] == 2
    assert "version 2" in stale.json()["errors"][0]["message"]
    assert api.get(path).json()["name"] == "A AS"


def test_malformed_if_match_is_400(api: httpx.Client) -> None:
    """An If-Match that is not a version is 400; W/"1", 1 and * are accepted."""
    record = api.post("/customers", json=COMPANY).json()
    for bad in ("abc", '"1', '"x"', "1, 2"):
        response = api.patch(f"/customers/{record['id']}", json={}, headers={"If-Match": bad})
        assert response.status_code == 400
        assert response.json()["errors"][0]["field"] == "If-Match"
    for good in ('W/"1"', "1", "*"):
        response = api.patch(f"/customers/{record['id']}", json={}, headers={"If-Match": good})
        assert response.status_code == 200


def test_patch_unknown_id_is_404(api: httpx.Client) -> None:
    """PATCH of a missing record answers 404."""
    assert api.patch("/customers/cus_nope", json={"name": "x"}).status_code == 404


def test_delete_is_204_then_404(api: httpx.Client) -> None:
    """DELETE answers 204; the record is gone afterwards."""
    record = api.post("/customers", json=COMPANY).json()
    assert api.delete(f"/customers/{record['id']}").status_code == 204
    assert api.get(f"/customers/{record['id']}").status_code == 404
    assert api.delete(f"/customers/{record['id']}").status_code == 404


def test_delete_of_a_referenced_customer_is_409(api: httpx.Client) -> None:
    """A customer that a project refers to cannot be deleted (409); after the project, it can."""
    customer = api.post("/customers", json=COMPANY).json()
    project = api.post("/projects", json={"name": "X", "customer_id": customer["id"]}).json()
    response = api.delete(f"/customers/{customer['id']}")
    assert response.status_code == 409
    assert "referenced by 1 project" in response.json()["errors"][0]["message"]
    assert api.delete(f"/projects/{project['id']}").status_code == 204
    assert api.delete(f"/customers/{customer['id']}").status_code == 204


def test_replayed_key_of_a_deleted_record_is_409(api: httpx.Client) -> None:
    """An Idempotency-Key whose record was deleted does not silently create a second one."""
    key = {"Idempotency-Key": "gone"}
    record = api.post("/customers", json=COMPANY, headers=key).json()
    api.delete(f"/customers/{record['id']}")
    response = api.post("/customers", json=COMPANY, headers=key)
    assert response.status_code == 409
    assert response.json()["errors"][0]["field"] == "Idempotency-Key"


def test_delete_honours_if_match(api: httpx.Client) -> None:
    """DELETE with a stale If-Match is 412 and keeps the record; the current one deletes."""
    record = api.post("/customers", json=COMPANY).json()
    api.patch(f"/customers/{record['id']}", json={"phone": "1"})
    stale = api.delete(f"/customers/{record['id']}", headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    assert api.get(f"/customers/{record['id']}").status_code == 200
    assert api.delete(f"/customers/{record['id']}", headers={"If-Match": '"2"'}).status_code == 204
