"""Rules about records: auth, reading, paging, ``updated_after``, writes and errors."""

from __future__ import annotations

import secrets
from collections import Counter
from datetime import datetime
from itertools import pairwise
from typing import Any

from tolken.conformance._context import CheckContext, Listing, describe
from tolken.conformance._registry import RuleFailed, expect, rule
from tolken.connectors.pms import parse_timestamp


def _order_key(item: dict[str, Any]) -> tuple[datetime, str]:
    stamp = parse_timestamp(item.get("updated_at"))
    if stamp is None:
        raise RuleFailed(
            f"record {item.get('id')!r} has no ISO updated_at: {item.get('updated_at')!r}"
        )
    return stamp, str(item.get("id"))


def _check_order(listing: Listing) -> None:
    keys = [_order_key(item) for item in listing.items]
    for before, after in pairwise(keys):
        expect(
            before <= after,
            f"items are not in (updated_at, id) order: {after[1]} came after {before[1]}",
        )


def _ids(listing: Listing) -> list[str]:
    return [str(item.get("id")) for item in listing.items]


@rule("auth", "401 without the API key or with a wrong one; 200 with it")
def check_auth(ctx: CheckContext) -> str:
    """The API is closed to callers without the key."""
    for label, header in (("without a key", None), ("with a wrong key", "Bearer wrong-key")):
        response = ctx.call("GET", "customers", params={"limit": 1}, auth=header)
        expect(
            response.status_code == 401,
            f"GET /customers {label} gave {describe(response)}, expected 401",
        )
    response = ctx.call("GET", "customers", params={"limit": 1})
    expect(response.status_code == 200, f"GET /customers with the key gave {describe(response)}")
    return "401 without a key and with a wrong key, 200 with the key"


@rule(
    "create-and-read",
    "POST 201 returns the record with id, version, timestamps; GET 200/404",
    creates={"customers": 1},
)
def check_create_and_read(ctx: CheckContext) -> str:
    """A created record can be read back as it was returned."""
    response = ctx.call(
        "POST",
        "customers",
        json={"kind": "company", "name": ctx.name("read")},
        headers={"Idempotency-Key": f"tolken-check-{ctx.tag}-read"},
    )
    if response.is_success:
        ctx.track("customers", response.json())
    expect(response.status_code == 201, f"POST /customers gave {describe(response)}, expected 201")
    record = response.json()
    expect(
        isinstance(record.get("id"), str), f"the record id is not a string: {record.get('id')!r}"
    )
    expect(
        isinstance(record.get("version"), int),
        f"version is not an integer: {record.get('version')!r}",
    )
    for stamp in ("created_at", "updated_at"):
        expect(
            parse_timestamp(record.get(stamp)) is not None,
            f"{stamp} is not ISO 8601: {record.get(stamp)!r}",
        )
    again = ctx.get("customers", record["id"])
    expect(again == record, f"GET returned {again} but POST returned {record}")
    missing = ctx.call("GET", f"customers/tolken-check-missing-{ctx.tag}")
    expect(
        missing.status_code == 404, f"GET of an unknown id gave {describe(missing)}, expected 404"
    )
    return "201 with id, version and timestamps; GET returns the same record; unknown id is 404"


@rule(
    "paging",
    "limit respected, (updated_at, id) order, every record once, next_cursor null at the end",
    batch=True,
)
def check_paging(ctx: CheckContext) -> str:
    """Paging through a listing returns each record exactly once, in order."""
    marker, records = ctx.batch()
    listing = ctx.list_all("customers", limit=2, updated_after=marker["updated_at"])
    ids = _ids(listing)
    for record in records:
        count = ids.count(record["id"])
        expect(
            count == 1,
            f"record {record['id']} appeared {count} times over {len(listing.pages)} pages of 2",
        )
    repeated = [i for i, n in Counter(ids).items() if n > 1]
    expect(not repeated, f"records repeated across pages: {', '.join(repeated)}")
    _check_order(listing)
    return f"{len(listing.pages)} pages of at most 2, each record once, in (updated_at, id) order"


@rule(
    "cursor-stability",
    "a cursor survives writes during paging: nothing skipped or repeated",
    creates={"customers": 7},
)
def check_cursor_stability(ctx: CheckContext) -> str:
    """Updates and inserts while paging do not make the traversal skip records."""
    marker = ctx.create_customer("stable-marker")
    records = [ctx.create_customer(f"stable-{n}") for n in range(1, 6)]
    ours = {r["id"] for r in records}
    moved: list[str] = []
    inserted: list[str] = []

    def write_between(listing: Listing) -> None:
        first = next((i for i in _ids(listing) if i in ours), None)
        expect(
            first is not None, "the first page held none of the records written after the marker"
        )
        response = ctx.call(
            "PATCH",
            f"customers/{first}",
            json={"name": ctx.name("stable-moved")},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        expect(response.status_code == 200, f"PATCH during paging gave {describe(response)}")
        moved.append(str(first))
        inserted.append(ctx.create_customer("stable-6")["id"])

    listing = ctx.list_all(
        "customers", limit=2, updated_after=marker["updated_at"], between_pages=write_between
    )
    counts = Counter(_ids(listing))
    for record_id in sorted((ours | set(inserted)) - set(moved)):
        expect(
            counts[record_id] == 1,
            f"record {record_id} appeared {counts[record_id]} times while "
            f"{moved[0]} was updated and {inserted[0]} inserted during paging (expected once)",
        )
    expect(
        1 <= counts[moved[0]] <= 2,
        f"the record updated during paging appeared {counts[moved[0]]} times",
    )
    _check_order(listing)
    return "an update and an insert during paging skipped and repeated nothing"


@rule(
    "updated-after-exclusive",
    "updated_after=T returns exactly the records with updated_at > T",
    batch=True,
)
def check_updated_after(ctx: CheckContext) -> str:
    """``updated_after`` is a strict lower bound, compared as time."""
    _, records = ctx.batch()
    pivot = records[2]
    listing = ctx.list_all("customers", limit=100, updated_after=pivot["updated_at"])
    ids = set(_ids(listing))
    expect(
        pivot["id"] not in ids,
        f"updated_after={pivot['updated_at']} returned the record updated at exactly that "
        "time (it must be exclusive)",
    )
    bound = _order_key(pivot)[0]
    for item in listing.items:
        expect(
            _order_key(item)[0] > bound,
            f"record {item.get('id')} with updated_at {item.get('updated_at')} "
            f"is not after {pivot['updated_at']}",
        )
    for record in records:
        if _order_key(record)[0] > bound:
            expect(record["id"] in ids, f"record {record['id']} updated after the bound is missing")
        else:
            expect(
                record["id"] not in ids,
                f"record {record['id']} updated before the bound was returned",
            )
    return f"updated_after={pivot['updated_at']} excluded that record and everything older"


@rule(
    "idempotent-post",
    "the same Idempotency-Key returns the same record and creates no duplicate",
    creates={"customers": 2},
)
def check_idempotent_post(ctx: CheckContext) -> str:
    """Retrying a create with its key never makes a second record."""
    marker = ctx.create_customer("idem-marker")
    key = f"tolken-check-{ctx.tag}-idem-{secrets.token_hex(4)}"
    body = {"kind": "company", "name": ctx.name("idempotent")}
    first = ctx.call("POST", "customers", json=body, headers={"Idempotency-Key": key})
    if first.is_success:
        ctx.track("customers", first.json())
    expect(first.status_code == 201, f"the first POST gave {describe(first)}, expected 201")
    second = ctx.call("POST", "customers", json=body, headers={"Idempotency-Key": key})
    if second.is_success:
        ctx.track("customers", second.json())
    expect(
        second.status_code in (200, 201),
        f"repeating the POST with the same key gave {describe(second)}",
    )
    expect(
        second.json().get("id") == first.json()["id"],
        f"the same key gave two records: {first.json()['id']} and {second.json().get('id')}",
    )
    listing = ctx.list_all("customers", limit=100, updated_after=marker["updated_at"])
    same = [i for i in listing.items if i.get("name") == body["name"]]
    expect(
        len(same) == 1,
        f"{len(same)} records named {body['name']!r} exist after two POSTs with one key",
    )
    return (
        f"the repeated POST answered {second.status_code} with the same record; one record exists"
    )


@rule(
    "if-match",
    "PATCH with a stale If-Match is 412 and changes nothing; version +1 per change",
    creates={"customers": 1},
)
def check_if_match(ctx: CheckContext) -> str:
    """Optimistic concurrency: a write based on an old version is refused."""
    record = ctx.create_customer("if-match")
    version = record["version"]
    merge = {"Content-Type": "application/merge-patch+json"}
    ok = ctx.call(
        "PATCH",
        f"customers/{record['id']}",
        json={"name": ctx.name("if-match-1")},
        headers={**merge, "If-Match": f'"{version}"'},
    )
    expect(ok.status_code == 200, f"PATCH with the current If-Match gave {describe(ok)}")
    expect(
        ok.json().get("version") == version + 1,
        f"version went from {version} to {ok.json().get('version')!r}, expected {version + 1}",
    )
    stale = ctx.call(
        "PATCH",
        f"customers/{record['id']}",
        json={"name": ctx.name("if-match-2")},
        headers={**merge, "If-Match": f'"{version}"'},
    )
    expect(
        stale.status_code == 412,
        f'PATCH with the stale If-Match "{version}" gave {describe(stale)}, expected 412',
    )
    now = ctx.get("customers", record["id"])
    expect(
        now.get("name") == ctx.name("if-match-1") and now.get("version") == version + 1,
        f"the refused PATCH changed the record: {now.get('name')!r} version {now.get('version')!r}",
    )
    return "current If-Match 200 (version +1); stale If-Match 412 and the record unchanged"


@rule(
    "merge-patch",
    "PATCH is JSON Merge Patch: nested objects merge, null clears, the rest stays",
    creates={"customers": 1},
)
def check_merge_patch(ctx: CheckContext) -> str:
    """RFC 7396 semantics, including null."""
    record = ctx.create_customer(
        "merge",
        email="merge@example.com",
        phone="+47 22 00 00 00",
        address={"line1": "Storgata 1", "line2": "c/o Test", "postal_code": "0155", "city": "Oslo"},
    )
    response = ctx.call(
        "PATCH",
        f"customers/{record['id']}",
        json={"phone": None, "address": {"city": "Bergen", "line2": None}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    expect(response.status_code == 200, f"the merge patch gave {describe(response)}")
    for source, now in (
        ("the PATCH answer", response.json()),
        ("a GET after it", ctx.get("customers", record["id"])),
    ):
        address = now.get("address") or {}
        expect(
            now.get("phone") is None,
            f"{source}: phone is {now.get('phone')!r} after patching it to null",
        )
        expect(
            address.get("city") == "Bergen",
            f"{source}: address.city is {address.get('city')!r}, expected 'Bergen'",
        )
        expect(
            address.get("line2") is None,
            f"{source}: address.line2 is {address.get('line2')!r} after patching it to null",
        )
        expect(
            address.get("line1") == "Storgata 1" and address.get("postal_code") == "0155",
            f"{source}: the nested patch replaced the address instead of merging: {address}",
        )
        expect(
            now.get("email") == "merge@example.com" and now.get("name") == record["name"],
            f"{source}: fields the patch did not name changed",
        )
    return "nested address merged, null cleared phone and address.line2, other fields kept"


@rule(
    "validation-422",
    "a bad body is 422 (malformed JSON 400/422) with {errors: [{field, message}]}, nothing stored",
    creates={"customers": 1},
)
def check_validation(ctx: CheckContext) -> str:
    """Invalid writes are refused with field errors and leave no trace."""
    marker = ctx.create_customer("invalid-marker")
    name = ctx.name("invalid")
    bad = ctx.call(
        "POST", "customers", json={"kind": "no-such-kind", "name": name, "email": "not-an-address"}
    )
    if bad.is_success:
        ctx.track("customers", bad.json())
    expect(
        bad.status_code == 422,
        f"POST with kind 'no-such-kind' and a bad email gave {describe(bad)}, expected 422",
    )
    errors = _errors_shape(bad)
    fields = {str(e.get("field")) for e in errors}
    expect("kind" in fields, f"the 422 errors do not name the field 'kind': {errors}")
    malformed = ctx.call(
        "POST",
        "customers",
        content=b'{"kind": "company", "name": ',
        headers={"Content-Type": "application/json"},
    )
    if malformed.is_success:
        ctx.track("customers", malformed.json())
    expect(
        malformed.status_code in (400, 422),
        f"malformed JSON gave {describe(malformed)}, expected 400",
    )
    _errors_shape(malformed)
    listing = ctx.list_all("customers", limit=100, updated_after=marker["updated_at"])
    stored = [i.get("id") for i in listing.items if i.get("name") == name]
    expect(not stored, f"the refused body was stored anyway: {stored}")
    named = ", ".join(sorted(fields))
    return f"422 naming {named}; malformed JSON {malformed.status_code}; nothing stored"


def _errors_shape(response: Any) -> list[dict[str, Any]]:
    try:
        body = response.json()
    except ValueError as exc:
        raise RuleFailed(f"the error body is not JSON: {describe(response)}") from exc
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list) or not errors:
        raise RuleFailed(f"the error body has no non-empty errors list: {describe(response)}")
    for entry in errors:
        expect(
            isinstance(entry, dict)
            and "field" in entry
            and isinstance(entry.get("message"), str)
            and entry["message"],
            f"an error entry lacks field/message: {entry!r}",
        )
    return list(errors)


@rule("delete", "DELETE is 204 and the record is then 404", creates={"customers": 1})
def check_delete(ctx: CheckContext) -> str:
    """Deleting removes the record."""
    record = ctx.create_customer("delete")
    response = ctx.call("DELETE", f"customers/{record['id']}")
    expect(response.status_code == 204, f"DELETE gave {describe(response)}, expected 204")
    after = ctx.call("GET", f"customers/{record['id']}")
    expect(after.status_code == 404, f"GET after DELETE gave {describe(after)}, expected 404")
    ctx.forget("customers", record["id"])
    return "DELETE 204, then GET 404"


@rule(
    "projects",
    "projects round-trip every field, reference customers, and refuse bad values",
    creates={"customers": 2, "projects": 1},
)
def check_projects(ctx: CheckContext) -> str:
    """The second resource: typed fields, references, merge patch and 422 on bad values."""
    department = ctx.create_customer("project-department", kind="department")
    customer = ctx.create_customer("project-customer")
    body = {
        "code": f"TC-{ctx.tag}",
        "name": ctx.name("project"),
        "customer_id": customer["id"],
        "department_id": department["id"],
        "start_date": "2026-01-01",
        "end_date": "2026-12-31",
        "status": "active",
        "billable": True,
        "progress": 10,
    }
    response = ctx.call(
        "POST", "projects", json=body, headers={"Idempotency-Key": f"tolken-check-{ctx.tag}-prj"}
    )
    if response.is_success:
        ctx.track("projects", response.json())
    expect(response.status_code == 201, f"POST /projects gave {describe(response)}, expected 201")
    project = ctx.get("projects", response.json()["id"])
    differ = {k: project.get(k) for k, v in body.items() if project.get(k) != v}
    expect(not differ, f"the project read back differs from what was written: {differ}")
    patched = ctx.call(
        "PATCH",
        f"projects/{project['id']}",
        json={"progress": 55, "status": "completed"},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    expect(patched.status_code == 200, f"PATCH /projects/{{id}} gave {describe(patched)}")
    now = patched.json()
    expect(
        now.get("progress") == 55
        and now.get("status") == "completed"
        and now.get("code") == body["code"],
        f"the project patch gave progress {now.get('progress')!r}, status {now.get('status')!r}",
    )
    bad = ctx.call(
        "POST",
        "projects",
        json={
            "name": ctx.name("bad-project"),
            "progress": 150,
            "customer_id": f"missing-{ctx.tag}",
        },
    )
    if bad.is_success:
        ctx.track("projects", bad.json())
    expect(
        bad.status_code == 422,
        f"a project with progress 150 and an unknown customer gave {describe(bad)}",
    )
    fields = {str(e.get("field")) for e in _errors_shape(bad)}
    expect(
        {"progress", "customer_id"} <= fields,
        f"the 422 should name progress and customer_id, it names {sorted(fields)}",
    )
    return "every field read back, merge patch applied, bad progress and unknown customer refused"
