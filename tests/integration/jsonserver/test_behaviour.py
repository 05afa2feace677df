"""What json-server 0.17.4 really does, as docs/pms-rest.md states it (the worked example's PMS)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jsonserver import JsonServer, running_json_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[JsonServer]:
    """json-server with the worked example's middleware over an empty db.json."""
    with running_json_server(tmp_path) as running:
        yield running


def _post(http: httpx.Client, path: str, body: dict[str, object]) -> dict[str, object]:
    response = http.post(path, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_ids_are_numbers_counted_from_the_highest(server: JsonServer) -> None:
    """json-server numbers records 1, 2, ... after the highest id: a deleted last id comes back."""
    with httpx.Client(base_url=server.url) as http:
        first = _post(http, "/customers", {"displayName": "A"})
        second = _post(http, "/customers", {"displayName": "B"})
        assert (first["id"], second["id"]) == (1, 2)
        assert http.delete("/customers/2").status_code == 200
        assert _post(http, "/customers", {"displayName": "C"})["id"] == 2


def test_paging_by_page_and_limit_with_link_and_total(server: JsonServer) -> None:
    """_page/_limit pages carry X-Total-Count and a Link header whose next is absent on the last."""
    with httpx.Client(base_url=server.url) as http:
        for n in range(5):
            _post(http, "/customers", {"displayName": f"C{n}"})
        page = http.get("/customers", params={"_page": 2, "_limit": 2})
        assert [r["displayName"] for r in page.json()] == ["C2", "C3"]
        assert page.headers["X-Total-Count"] == "5"
        assert "_page=3" in page.links["next"]["url"]
        last = http.get("/customers", params={"_page": 3, "_limit": 2})
        assert "next" not in last.links
        sliced = http.get("/customers", params={"_start": 1, "_end": 3})
        assert [r["displayName"] for r in sliced.json()] == ["C1", "C2"]


def test_an_unknown_filter_field_is_ignored(server: JsonServer) -> None:
    """A filter on a field no record has is dropped: json-server then answers every record."""
    with httpx.Client(base_url=server.url) as http:
        _post(http, "/customers", {"displayName": "A"})
        assert len(http.get("/customers", params={"externalRef": "nope"}).json()) == 1
        _post(http, "/customers", {"displayName": "B", "externalRef": "x-1"})
        assert http.get("/customers", params={"externalRef": "nope"}).json() == []
        found = http.get("/customers", params={"externalRef": "x-1"}).json()
        assert [r["displayName"] for r in found] == ["B"]


def test_patch_merges_shallowly_and_put_replaces(server: JsonServer) -> None:
    """PATCH replaces nested objects whole and stores null; PUT replaces the record, keeping id."""
    with httpx.Client(base_url=server.url) as http:
        record = _post(
            http, "/customers", {"displayName": "A", "phone": "1", "postal": {"zip": "0155"}}
        )
        patched = http.patch(
            f"/customers/{record['id']}", json={"phone": None, "postal": {"town": "Oslo"}}
        ).json()
        assert patched["postal"] == {"town": "Oslo"}
        assert "phone" in patched
        assert patched["phone"] is None
        put = http.put(f"/customers/{record['id']}", json={"displayName": "B"}).json()
        assert put["id"] == record["id"]
        assert "phone" not in put
        assert "postal" not in put


def test_middleware_stamps_updated_at_and_gte_filter_is_inclusive(server: JsonServer) -> None:
    """The example middleware stamps updatedAt; updatedAt_gte=T includes the record stamped T."""
    with httpx.Client(base_url=server.url) as http:
        first = _post(http, "/customers", {"displayName": "A", "updatedAt": "1999-01-01"})
        assert str(first["updatedAt"]) > "2000"
        second = _post(http, "/customers", {"displayName": "B"})
        found = http.get(
            "/customers",
            params={"updatedAt_gte": str(second["updatedAt"]), "_sort": "updatedAt,id"},
        ).json()
        assert second["id"] in [r["id"] for r in found]
        assert all(str(r["updatedAt"]) >= str(second["updatedAt"]) for r in found)


def test_errors_and_a_rejected_record(server: JsonServer) -> None:
    """Unknown ids are 404 {}, malformed JSON 400 (HTML), an over-long name 422 with a message."""
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/customers/99").status_code == 404
        assert http.delete("/customers/99").status_code == 404
        malformed = http.post(
            "/customers", content=b'{"displayName": ', headers={"Content-Type": "application/json"}
        )
        assert malformed.status_code == 400
        rejected = http.post("/customers", json={"displayName": "x" * 81})
        assert rejected.status_code == 422
        assert "longer than 80" in rejected.json()["error"]["message"]
    assert server.counts() == {"customers": 0, "projects": 0}


def test_deleting_a_record_deletes_records_whose_name_id_field_points_at_it(
    server: JsonServer,
) -> None:
    """json-server cascades: a project with customerId=N goes when customer N is deleted."""
    with httpx.Client(base_url=server.url) as http:
        customer = _post(http, "/customers", {"displayName": "A"})
        _post(http, "/projects", {"title": "P", "customerId": customer["id"]})
        _post(http, "/projects", {"title": "Q", "clientRef": customer["id"]})
        assert http.delete(f"/customers/{customer['id']}").status_code == 200
    assert [p["title"] for p in server.records("projects")] == ["Q"]
