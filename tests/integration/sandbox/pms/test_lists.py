"""Reference PMS over loopback HTTP: lists, cursor, updated_after, changes feed, OpenAPI."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
from openapi_spec_validator import validate


def _make(api: httpx.Client, n: int) -> list[dict[str, Any]]:
    return [
        api.post("/customers", json={"kind": "company", "name": f"Firma {i} AS"}).json()
        for i in range(n)
    ]


def _all_pages(api: httpx.Client, **params: Any) -> list[list[dict[str, Any]]]:
    pages, cursor = [], None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        body = api.get("/customers", params=query).json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


def test_list_pages_in_updated_at_id_order_and_ends_with_null_cursor(api: httpx.Client) -> None:
    """Paging with limit returns every record once, in (updated_at, id) order, then null."""
    made = _make(api, 7)
    pages = _all_pages(api, limit=3)
    assert [len(p) for p in pages] == [3, 3, 1]
    seen = [r for page in pages for r in page]
    assert [r["id"] for r in seen] == [r["id"] for r in made]
    keys = [(r["updated_at"], r["id"]) for r in seen]
    assert keys == sorted(keys)


def test_updated_at_is_strictly_increasing_per_write(api: httpx.Client) -> None:
    """Back-to-back writes get distinct, increasing microsecond timestamps."""
    made = _make(api, 20)
    stamps = [r["updated_at"] for r in made]
    assert stamps == sorted(set(stamps))
    assert all(len(s) == len("2026-01-01T00:00:00.000000Z") for s in stamps)


def test_updated_after_is_exclusive(api: httpx.Client) -> None:
    """updated_after=T returns only records with updated_at strictly after T."""
    made = _make(api, 4)
    items = api.get("/customers", params={"updated_after": made[1]["updated_at"]}).json()["items"]
    assert [r["id"] for r in items] == [made[2]["id"], made[3]["id"]]


def test_updated_after_accepts_offsets(api: httpx.Client) -> None:
    """An updated_after with a +02:00 offset is compared in UTC."""
    made = _make(api, 2)
    moment = datetime.fromisoformat(made[0]["updated_at"].replace("Z", "+00:00"))
    shifted = moment.astimezone(timezone(timedelta(hours=2))).isoformat()
    items = api.get("/customers", params={"updated_after": shifted}).json()["items"]
    assert [r["id"] for r in items] == [made[1]["id"]]


def test_a_record_updated_while_paging_moves_to_the_end(api: httpx.Client) -> None:
    """An edit during a traversal shows the record again later; nothing is skipped."""
    made = _make(api, 6)
    first = api.get("/customers", params={"limit": 3}).json()
    api.patch(f"/customers/{made[0]['id']}", json={"name": "Endret AS"})
    new = api.post("/customers", json={"kind": "person", "name": "Kari Nordmann"}).json()
    rest = _all_pages(api, limit=3, cursor=first["next_cursor"])
    later = [r["id"] for page in rest for r in page]
    assert later == [made[3]["id"], made[4]["id"], made[5]["id"], made[0]["id"], new["id"]]


def test_external_ref_filter(api: httpx.Client) -> None:
    """?external_ref= returns only the record carrying that PowerOffice id."""
    _make(api, 3)
    tagged = api.post(
        "/customers", json={"kind": "company", "name": "B AS", "external_ref": "po-123"}
    ).json()
    items = api.get("/customers", params={"external_ref": "po-123"}).json()["items"]
    assert [r["id"] for r in items] == [tagged["id"]]


def test_changes_feed_has_upserts_and_tombstones_in_order(api: httpx.Client) -> None:
    """Create, update and delete appear in seq order; the delete is a tombstone."""
    start = api.get("/changes").json()["last_seq"]
    record = api.post("/projects", json={"name": "P"}).json()
    api.patch(f"/projects/{record['id']}", json={"progress": 5})
    api.delete(f"/projects/{record['id']}")
    feed = api.get("/changes", params={"after": start}).json()
    assert [(i["type"], i["id"], i["op"]) for i in feed["items"]] == [
        ("project", record["id"], "upsert"),
        ("project", record["id"], "upsert"),
        ("project", record["id"], "delete"),
    ]
    seqs = [i["seq"] for i in feed["items"]]
    assert seqs == sorted(seqs)
    assert feed["last_seq"] == seqs[-1]
    assert feed["has_more"] is False


def test_changes_feed_pages_with_after_and_limit(api: httpx.Client) -> None:
    """Resuming with after=last_seq reads every change exactly once."""
    _make(api, 5)
    seen: list[int] = []
    after = 0
    while True:
        page = api.get("/changes", params={"after": after, "limit": 2}).json()
        seen += [i["seq"] for i in page["items"]]
        after = page["last_seq"]
        if not page["has_more"]:
            break
    assert len(seen) == len(set(seen)) == 5
    assert api.get("/changes", params={"after": after}).json() == {
        "items": [], "last_seq": after, "has_more": False,
    }  # fmt: skip


def test_openapi_document_is_valid_and_describes_the_contract(base_url: str) -> None:
    """/api/v1/openapi.json is a valid OpenAPI 3 document with the real shapes and no auth."""
    doc = httpx.get(f"{base_url}/api/v1/openapi.json").json()
    validate(doc)
    paths = doc["paths"]
    assert set(paths) == {
        "/api/v1/customers", "/api/v1/customers/{id}", "/api/v1/projects",
        "/api/v1/projects/{id}", "/api/v1/changes", "/api/v1/webhooks", "/api/v1/webhooks/{id}",
    }  # fmt: skip
    schemas = doc["components"]["schemas"]
    assert set(schemas["Customer"]["properties"]) >= {"organization_number", "address", "version"}
    assert set(schemas["Project"]["properties"]) >= {"department_id", "progress", "billable"}
    assert schemas["CustomerPatch"]["additionalProperties"] is False
    patch = paths["/api/v1/projects/{id}"]["patch"]
    assert "application/merge-patch+json" in patch["requestBody"]["content"]
    assert {"412", "422"} <= set(patch["responses"])
    assert doc["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
