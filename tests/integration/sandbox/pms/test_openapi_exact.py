"""The reference PMS's OpenAPI document states exactly what the server enforces (issue 11).

A PMS vendor generates code from that document: a body the document allows is
accepted, and a body the server refuses is one the document forbids.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from loopback import serve
from tolken.sandbox.credentials import PMS_API_KEY
from tolken.sandbox.pms import create_app

AUTH = {"Authorization": f"Bearer {PMS_API_KEY}"}


@pytest.fixture(scope="module")
def api() -> Iterator[httpx.Client]:
    with serve(create_app()) as url, httpx.Client(base_url=f"{url}/api/v1", headers=AUTH) as c:
        yield c


@pytest.fixture(scope="module")
def doc(api: httpx.Client) -> dict[str, Any]:
    return dict(api.get("/openapi.json").json())


def _allows(doc: dict[str, Any], path: str, method: str, body: Any) -> bool:
    content = doc["paths"][f"/api/v1{path}"][method]["requestBody"]["content"]
    (media,) = content.values()
    schema = {"$ref": media["schema"]["$ref"], "components": doc["components"]}
    return Draft202012Validator(schema).is_valid(body)


CUSTOMER_BODIES = [
    {},
    {"kind": "person"},
    {"kind": "person", "name": " "},
    {"kind": "person", "name": "\x1d"},
    {"kind": "person", "name": "A", "email": "a@b.c"},
    {"kind": "person", "name": "A", "email": "a@b.c\x1d"},
    {"kind": "person", "name": "A", "email": "a b@c.d"},
    {"kind": "person", "name": "A", "email": "nope"},
    {"kind": "person", "name": "A", "phone": "1" * 1000},
    {"kind": "person", "name": "A", "phone": "1" * 1001},
    {"kind": "person", "name": "A", "address": {"city": "x" * 1001}},
    {"kind": "person", "name": "A", "id": "cus_1"},
]
PROJECT_BODIES = [
    {"name": "P", "start_date": "2026-02-28"},
    {"name": "P", "progress": 82.0},
    {"name": "P", "progress": 101},
    {"name": "P", "code": "c" * 1001},
]
WEBHOOK_BODIES = [
    {"url": "http://example.test/hook", "secret": "s"},
    {"url": "http://example.test/hook", "secret": ""},
    {"url": "http://\x1e\x8a", "secret": "s"},
    {"url": "http:// x", "secret": "s"},
    {"url": "", "secret": "s"},
]


@pytest.mark.parametrize(
    ("path", "body"),
    [("/customers", b) for b in CUSTOMER_BODIES]
    + [("/projects", b) for b in PROJECT_BODIES]
    + [("/webhooks", b) for b in WEBHOOK_BODIES],
)
def test_a_post_body_is_accepted_exactly_when_the_document_allows_it(
    api: httpx.Client, doc: dict[str, Any], path: str, body: dict[str, Any]
) -> None:
    """Required fields, lengths, e-mail, URL and secret rules: document and server agree."""
    response = api.post(path, json=body)
    assert response.status_code in (201, 422), response.text
    assert (response.status_code == 201) == _allows(doc, path, "post", body), response.text


@pytest.mark.parametrize(
    "patch",
    [{"name": None}, {"kind": None}, {"name": ""}, {"email": None}, {"name": "B"}, {}],
)
def test_a_patch_is_accepted_exactly_when_the_document_allows_it(
    api: httpx.Client, doc: dict[str, Any], patch: dict[str, Any]
) -> None:
    """A merge patch may leave kind and name out but not remove them; the document says so."""
    record = api.post("/customers", json={"kind": "person", "name": "A"}).json()
    response = api.patch(
        f"/customers/{record['id']}",
        json=patch,
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert response.status_code in (200, 422), response.text
    allowed = _allows(doc, "/customers/{id}", "patch", patch)
    assert (response.status_code == 200) == allowed, response.text


def test_an_integral_progress_written_as_a_float_is_the_integer(api: httpx.Client) -> None:
    """progress 82.0 is the JSON integer 82, as JSON Schema's integer type allows."""
    response = api.post("/projects", json={"name": "P", "progress": 82.0})
    assert response.status_code == 201, response.text
    assert response.json()["progress"] == 82
    assert api.post("/projects", json={"name": "P", "progress": 82.5}).status_code == 422


def test_query_limits_are_documented_and_never_a_server_error(
    api: httpx.Client, doc: dict[str, Any]
) -> None:
    """An empty cursor and a changes `after` beyond 64 bits are 422s the document foretells."""
    params = {p["name"]: p["schema"] for p in doc["paths"]["/api/v1/changes"]["get"]["parameters"]}
    assert params["after"]["maximum"] == 2**63 - 1
    assert api.get("/changes", params={"after": 2**63 - 1}).status_code == 200
    assert api.get("/changes", params={"after": 2**64}).status_code == 422
    listed = {p["name"]: p for p in doc["paths"]["/api/v1/customers"]["get"]["parameters"]}
    assert listed["cursor"]["schema"]["anyOf"][0]["minLength"] == 1
    assert api.get("/customers", params={"cursor": ""}).status_code == 422


@pytest.mark.parametrize("path", ["/customers", "/webhooks"])
def test_malformed_json_is_a_documented_400(
    api: httpx.Client, doc: dict[str, Any], path: str
) -> None:
    """A body that is not JSON answers 400, a status the operation documents."""
    response = api.post(path, content=b"{", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "400" in doc["paths"][f"/api/v1{path}"]["post"]["responses"]


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/customers", "GET, POST"),
        ("/customers/x", "DELETE, GET, PATCH"),
        ("/projects/x", "DELETE, GET, PATCH"),
        ("/webhooks", "GET, POST"),
    ],
)
def test_an_unsupported_method_answers_405_with_every_allowed_method(
    api: httpx.Client, doc: dict[str, Any], path: str, methods: str
) -> None:
    """OPTIONS (or any other method) gets 405 and an Allow header with all documented methods."""
    response = api.options(path)
    assert response.status_code == 405
    assert response.headers["Allow"] == methods
    template = "/api/v1" + path.replace("/x", "/{id}")
    assert ", ".join(sorted(m.upper() for m in doc["paths"][template])) == methods
