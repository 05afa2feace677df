"""Reference PMS over loopback HTTP: field-level 422s, 400 on bad JSON, 413, nothing stored."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tolken.sandbox.pms.schema import PROJECT_STATUSES


def _fields(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return {e["field"]: e["message"] for e in response.json()["errors"]}


def _count(api: httpx.Client, collection: str) -> int:
    return len(api.get(f"/{collection}").json()["items"])


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"kind": "shop", "name": "A"}, "kind", "must be one of: company, person, department"),
        ({"kind": "company"}, "name", "is required"),
        ({"kind": "company", "name": "  "}, "name", "is required"),
        (
            {"kind": "company", "name": "A", "email": "not-an-email"},
            "email",
            "must be an e-mail address",
        ),
        ({"kind": "company", "name": "A", "active": "yes"}, "active", "must be true or false"),
        ({"kind": "company", "name": "A", "number": 10001}, "number", "must be a string"),
        ({"kind": "company", "name": "A", "color": "red"}, "color", "unknown field"),
        ({"kind": "company", "name": "A", "id": "cus_x"}, "id", "is read-only"),
        ({"kind": "company", "name": "A", "version": 3}, "version", "is read-only"),
        ({"kind": "company", "name": "A", "address": "Oslo"}, "address", "must be an object"),
        (
            {"kind": "company", "name": "A", "address": {"zip": "0150"}},
            "address.zip",
            "unknown field",
        ),
        (
            {"kind": "company", "name": "A", "address": {"city": 5}},
            "address.city",
            "must be a string",
        ),
    ],
)
def test_customer_field_errors(
    api: httpx.Client, body: dict[str, Any], field: str, message: str
) -> None:
    """Each invalid customer field is named with its message, and nothing is stored."""
    assert _fields(api.post("/customers", json=body))[field] == message
    assert _count(api, "customers") == 0


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            {"name": "P", "status": "done"},
            "status",
            "must be one of: " + ", ".join(PROJECT_STATUSES),
        ),
        ({"name": "P", "progress": 101}, "progress", "must be between 0 and 100"),
        ({"name": "P", "progress": -1}, "progress", "must be between 0 and 100"),
        ({"name": "P", "progress": 50.5}, "progress", "must be an integer"),
        ({"name": "P", "progress": True}, "progress", "must be an integer"),
        ({"name": "P", "billable": 1}, "billable", "must be true or false"),
        ({"name": "P", "start_date": "2024-02-30"}, "start_date", "must be a date (YYYY-MM-DD)"),
        ({"name": "P", "start_date": "01.02.2024"}, "start_date", "must be a date (YYYY-MM-DD)"),
        (
            {"name": "P", "start_date": "2024-03-01", "end_date": "2024-02-29"},
            "end_date",
            "must not be before start_date",
        ),
        (
            {"name": "P", "customer_id": "cus_missing"},
            "customer_id",
            "no customer with id cus_missing",
        ),
        (
            {"name": "P", "department_id": "cus_missing"},
            "department_id",
            "no customer with id cus_missing",
        ),
    ],
)
def test_project_field_errors(
    api: httpx.Client, body: dict[str, Any], field: str, message: str
) -> None:
    """Each invalid project field is named with its message, and nothing is stored."""
    assert _fields(api.post("/projects", json=body))[field] == message
    assert _count(api, "projects") == 0


def test_all_problems_are_reported_at_once(api: httpx.Client) -> None:
    """A body with several faults lists every faulty field in one 422."""
    body = {"name": "P", "status": "x", "progress": 500, "start_date": "nope", "extra": 1}
    assert set(_fields(api.post("/projects", json=body))) == {
        "status", "progress", "start_date", "extra",
    }  # fmt: skip


def test_department_id_must_be_a_department(api: httpx.Client) -> None:
    """department_id pointing at a company is refused; at a department it is accepted."""
    company = api.post("/customers", json={"kind": "company", "name": "A AS"}).json()
    dept = api.post("/customers", json={"kind": "department", "name": "Oslo"}).json()
    fields = _fields(api.post("/projects", json={"name": "P", "department_id": company["id"]}))
    assert fields["department_id"] == f"customer {company['id']} is a company, not a department"
    ok = api.post("/projects", json={"name": "P", "department_id": dept["id"]})
    assert ok.status_code == 201


def test_a_department_in_use_cannot_change_kind(api: httpx.Client) -> None:
    """Turning a referenced department into a company is a 422 on kind."""
    dept = api.post("/customers", json={"kind": "department", "name": "Oslo"}).json()
    api.post("/projects", json={"name": "P", "department_id": dept["id"]})
    fields = _fields(api.patch(f"/customers/{dept['id']}", json={"kind": "company"}))
    assert "department of 1 project" in fields["kind"]


def test_invalid_patch_stores_nothing(api: httpx.Client) -> None:
    """A PATCH with one bad field changes no field, not the version, and logs no change."""
    record = api.post("/projects", json={"name": "P", "progress": 10}).json()
    seq = api.get("/changes").json()["last_seq"]
    _fields(api.patch(f"/projects/{record['id']}", json={"name": "Q", "progress": 300}))
    assert api.get(f"/projects/{record['id']}").json() == record
    assert api.get("/changes").json()["last_seq"] == seq


@pytest.mark.parametrize("raw", [b"{", b"not json", b'{"a": }', b"\xff\xfe", b"[" * 100_000])
def test_malformed_json_is_400(api: httpx.Client, raw: bytes) -> None:
    """A body that is not JSON is a 400 with the error shape."""
    response = api.post("/customers", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"].startswith("malformed JSON")


def test_json_that_is_not_an_object_is_422(api: httpx.Client) -> None:
    """A JSON array or string body is a 422."""
    assert api.post("/customers", json=[1, 2]).status_code == 422


def test_body_over_one_megabyte_is_413(api: httpx.Client) -> None:
    """A body over 1 MB is refused with 413, also when sent without Content-Length."""
    big = {"kind": "company", "name": "x" * (1024 * 1024)}
    assert api.post("/customers", json=big).status_code == 413

    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b" " * 60_000

    streamed = api.post("/customers", content=chunks())
    assert streamed.status_code == 413
    assert _count(api, "customers") == 0


def test_bad_query_parameters_are_422_with_the_field(api: httpx.Client) -> None:
    """limit out of range, a bad updated_after or a foreign cursor name the parameter."""
    assert "limit" in _fields(api.get("/customers", params={"limit": 0}))
    assert "updated_after" in _fields(api.get("/customers", params={"updated_after": "soon"}))
    edge = {"updated_after": "0001-01-01T00:00:00+01:00"}
    assert "updated_after" in _fields(api.get("/customers", params=edge))
    assert "cursor" in _fields(api.get("/customers", params={"cursor": "bm9wZQ"}))
    assert "after" in _fields(api.get("/changes", params={"after": -1}))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
field_names = st.sampled_from(
    ["kind", "name", "email", "address", "progress", "start_date", "end_date", "customer_id",
     "department_id", "status", "billable", "active", "number", "id", "unknown"]
)  # fmt: skip
plausible = st.sampled_from(["company", "department", "2024-01-01", "a@b.no", "P", 50])
bodies = st.dictionaries(field_names, json_values | plausible, max_size=6) | json_values


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, collection=st.sampled_from(["customers", "projects"]))
def test_any_body_is_created_or_refused_without_a_trace(
    api: httpx.Client, body: Any, collection: str
) -> None:
    """Arbitrary JSON never causes a 5xx; a refused POST or PATCH changes nothing at all."""
    target = api.post("/customers", json={"kind": "company", "name": "Mål AS"}).json()
    before = api.get("/changes").json()["last_seq"]
    created = api.post(f"/{collection}", json=body)
    assert created.status_code in (201, 400, 422), created.text
    if created.status_code != 201:
        assert api.get("/changes").json()["last_seq"] == before
    before = api.get("/changes").json()["last_seq"]
    patched = api.patch(f"/customers/{target['id']}", json=body)
    assert patched.status_code in (200, 400, 422), patched.text
    if patched.status_code != 200:
        assert api.get(f"/customers/{target['id']}").json() == target
        assert api.get("/changes").json()["last_seq"] == before
