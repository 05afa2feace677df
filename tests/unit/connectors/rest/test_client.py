"""The ``rest`` connector against loopback APIs of each auth, body, update, version and
idempotency variant a ``pms.rest`` section can describe."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr

from loopback import serve
from restapi import KEY, USER, Connect, RestApi, Shape
from tolken.config import PMSSettings
from tolken.connectors.base import ChangeFeed, Connector, UpdatedAfterListing
from tolken.connectors.rest import RestConnector, reference_pms_rest
from tolken.errors import (
    AuthError,
    ConfigError,
    InUse,
    NotFound,
    StaleVersion,
    ValidationFailed,
)
from tolken.sandbox.credentials import PMS_API_KEY
from tolken.sandbox.pms import create_app as create_pms

AUTH: list[tuple[str, dict[str, Any]]] = [
    ("bearer", {"type": "bearer"}),
    ("header", {"type": "api-key", "header": "X-API-Key"}),
    ("query", {"type": "api-key", "query": "api_key"}),
    ("basic", {"type": "basic", "username": USER}),
    ("none", {"type": "none"}),
]


@pytest.mark.parametrize(("kind", "auth"), AUTH)
def test_each_auth_variant_is_accepted_by_an_api_that_demands_it(
    api: RestApi, connect: Connect, kind: Any, auth: dict[str, Any]
) -> None:
    """Bearer, API key in a header or query, basic and none each reach records of such an API."""
    api.shape = Shape(auth=kind, body="root")
    api.add("customers", name="Acme")
    connector = connect({"auth": auth})
    assert [r.data["name"] for r in connector.list("customers")] == ["Acme"]


@pytest.mark.parametrize(("kind", "auth"), AUTH[:4])
def test_a_wrong_key_is_fatal_and_never_shown(
    api: RestApi, connect: Connect, kind: Any, auth: dict[str, Any]
) -> None:
    """An API that refuses the credentials stops the run (AuthError) with its message, no key."""
    api.shape = Shape(auth="bearer" if kind != "bearer" else "basic", body="root")
    connector = connect({"auth": auth, "errors": {"message_path": "error.message"}})
    with pytest.raises(AuthError) as caught:
        list(connector.list("customers"))
    assert "bad credentials" in str(caught.value)
    assert KEY not in str(caught.value)


def test_ids_that_are_numbers_become_strings(api: RestApi, connect: Connect) -> None:
    """A numeric id reads as text, and reads back through get."""
    api.shape = Shape(body="root")
    made = api.add("customers", name="Acme")
    connector = connect({})
    (listed,) = list(connector.list("customers"))
    assert listed.id == str(made["id"])
    assert connector.get("customers", listed.id).data["name"] == "Acme"
    with pytest.raises(NotFound):
        connector.get("customers", "999")


JSONAPI = {
    "body": {
        "list_path": "data",
        "record_path": "data",
        "fields_path": "attributes",
        "request_path": "data.attributes",
        "request_type_path": "data.type",
        "request_id_path": "data.id",
        "content_type": "application/vnd.api+json",
    },
    "paging": {"type": "cursor", "cursor_path": "links.next"},
    "resources": {"customers": {"path": "/customers", "type": "customers"}},
}

BODIES: list[tuple[Any, dict[str, Any]]] = [
    ("root", {}),
    ("items", {"body": {"list_path": "items"}}),
    ("jsonapi", JSONAPI),
]


@pytest.mark.parametrize(("body", "rest"), BODIES)
def test_each_body_shape_round_trips_create_read_update(
    api: RestApi, connect: Connect, body: Any, rest: dict[str, Any]
) -> None:
    """Root array, records under ``items`` and JSON:API documents: create, list, get, update."""
    api.shape = Shape(body=body, paging="cursor" if body == "jsonapi" else "page")
    connector = connect({**rest, "identity": {"version_field": "version"}}, page_size=2)
    made = connector.create(
        "customers", {"name": "Acme", "address.city": "Oslo"}, idempotency_key="k1"
    )
    assert made.data["name"] == "Acme"
    assert made.version == 1
    for i in range(3):
        api.add("customers", name=f"other {i}")
    assert sorted(r.data["name"] for r in connector.list("customers"))[0] == "Acme"
    changed = connector.update("customers", made.id, {"address.city": "Bergen"}, version=1)
    assert changed.data["address"] == {"city": "Bergen"}
    assert connector.get("customers", made.id).data["name"] == "Acme"
    assert api.records["customers"][int(made.id)]["address"] == {"city": "Bergen"}


def test_json_api_requests_are_typed_documents(api: RestApi, connect: Connect) -> None:
    """A JSON:API create sends ``{"data": {"type", "attributes"}}`` with the JSON:API media type."""
    api.shape = Shape(body="jsonapi", paging="cursor")
    connector = connect(JSONAPI)
    made = connector.create("customers", {"name": "Acme"}, idempotency_key="k1")
    connector.update("customers", made.id, {"name": "Acme AS"})
    post, patch = api.writes()
    assert post.body == {
        "data": {"type": "customers", "attributes": {"name": "Acme", "external_ref": "k1"}}
    }
    assert patch.body == {
        "data": {"type": "customers", "attributes": {"name": "Acme AS"}, "id": made.id}
    }
    assert post.headers["content-type"] == "application/vnd.api+json"


def test_merge_patch_sends_only_the_changes_and_null_clears(api: RestApi, connect: Connect) -> None:
    """Update mode merge-patch PATCHes a merge patch: other fields stay, ``None`` removes one."""
    api.shape = Shape(body="root")
    made = api.add("customers", name="Acme", email="a@acme.no", phone="123")
    connector = connect({"update_mode": "merge-patch"})
    connector.update("customers", str(made["id"]), {"email": None, "phone": "456"})
    (patch,) = api.writes()
    assert patch.method == "PATCH"
    assert patch.headers["content-type"] == "application/merge-patch+json"
    assert patch.body == {"email": None, "phone": "456"}
    assert api.records["customers"][made["id"]] | {"updated_at": 0} == {
        "id": made["id"],
        "name": "Acme",
        "phone": "456",
        "version": 2,
        "updated_at": 0,
    }


def test_plain_patch_is_sent_as_plain_json(api: RestApi, connect: Connect) -> None:
    """Update mode patch PATCHes the changed fields as ``application/json``."""
    api.shape = Shape(body="root")
    made = api.add("customers", name="Acme")
    connector = connect({"update_mode": "patch"})
    connector.update("customers", str(made["id"]), {"name": "Acme AS"})
    (patch,) = api.writes()
    assert patch.headers["content-type"] == "application/json"
    assert patch.body == {"name": "Acme AS"}


def test_put_reads_merges_and_writes_the_whole_record(api: RestApi, connect: Connect) -> None:
    """Update mode put GETs the record and PUTs it whole with the change: nothing else is lost."""
    api.shape = Shape(body="root", put_replaces=True)
    made = api.add(
        "customers", name="Acme", email="a@acme.no", address={"city": "Oslo", "line1": "Gate 1"}
    )
    connector = connect({"update_mode": "put"})
    connector.update("customers", str(made["id"]), {"address.city": "Bergen", "email": None})
    (put,) = api.writes()
    assert put.method == "PUT"
    record = api.records["customers"][made["id"]]
    assert record["name"] == "Acme"
    assert "email" not in record
    assert record["address"] == {"city": "Bergen", "line1": "Gate 1"}


def test_a_stale_version_is_refused_by_if_match(api: RestApi, connect: Connect) -> None:
    """``version_field`` goes back as ``If-Match``; a record that moved on raises StaleVersion."""
    api.shape = Shape(body="root")
    made = api.add("customers", name="Acme")
    connector = connect({"identity": {"version_field": "version"}})
    connector.update("customers", str(made["id"]), {"name": "B"}, version=1)
    with pytest.raises(StaleVersion):
        connector.update("customers", str(made["id"]), {"name": "C"}, version=1)
    assert api.records["customers"][made["id"]]["name"] == "B"


def test_a_version_in_the_body_is_sent_there(api: RestApi, connect: Connect) -> None:
    """``version_in: body`` puts the version into the update body, and the API checks it."""
    api.shape = Shape(body="root", version_in_body=True)
    made = api.add("customers", name="Acme")
    connector = connect({"identity": {"version_field": "version", "version_in": "body"}})
    connector.update("customers", str(made["id"]), {"name": "B"}, version=1)
    assert api.writes()[0].body == {"name": "B", "version": 1}
    assert "if-match" not in api.writes()[0].headers
    with pytest.raises(InUse):
        connector.update("customers", str(made["id"]), {"name": "C"}, version=1)


def test_etag_guards_updates(api: RestApi, connect: Connect) -> None:
    """With ``etag: true`` a listed or read record has one version; an update sends the ETag as
    ``If-Match``, and an update after someone else's edit is stale and changes nothing."""
    api.shape = Shape(body="root", version="etag")
    made = api.add("customers", name="Acme")
    connector = connect({"identity": {"etag": True}})
    (listed,) = list(connector.list("customers"))
    seen = connector.get("customers", str(made["id"]))
    assert listed.version is not None
    assert seen.version == listed.version
    written = connector.update("customers", seen.id, {"name": "B"}, version=seen.version)
    assert api.writes()[0].headers["if-match"] == 'W/"1"'
    api.records["customers"][made["id"]]["name"] = "someone else"
    with pytest.raises(StaleVersion):
        connector.update("customers", seen.id, {"name": "C"}, version=written.version)
    assert api.records["customers"][made["id"]]["name"] == "someone else"


def test_an_idempotency_header_makes_a_repeated_create_return_the_first_record(
    api: RestApi, connect: Connect
) -> None:
    """The same key twice through an idempotency header: one record."""
    api.shape = Shape(body="root", idempotency_header="Idempotency-Key")
    connector = connect({"idempotency": {"header": "Idempotency-Key"}})
    first = connector.create("customers", {"name": "Acme"}, idempotency_key="k1")
    again = connector.create("customers", {"name": "Acme"}, idempotency_key="k1")
    assert first.id == again.id
    assert len(api.records["customers"]) == 1
    assert connector.find_by_idempotency_key("customers", "k1") is None


@pytest.mark.parametrize("ref_filter", ["honour", "ignore", "refuse"])
def test_a_create_is_found_again_by_its_reference(
    api: RestApi, connect: Connect, ref_filter: Any
) -> None:
    """The key written into ``external_ref`` finds the record, whether the API filters by it,
    ignores the filter, or refuses it."""
    api.shape = Shape(body="root", ref_filter=ref_filter)
    api.add("customers", name="Other", external_ref="someone else")
    connector = connect({"idempotency": {"reference_field": "external_ref"}})
    made = connector.create("customers", {"name": "Acme"}, idempotency_key="tk-1")
    found = connector.find_by_idempotency_key("customers", "tk-1")
    assert found is not None
    assert found.id == made.id
    assert connector.find_by_idempotency_key("customers", "tk-2") is None


def test_a_rejected_record_carries_the_apis_message(api: RestApi, connect: Connect) -> None:
    """A 422 is a ValidationFailed whose message is the text at ``errors.message_path``."""
    api.shape = Shape(body="root")
    connector = connect({"errors": {"message_path": "error.message"}})
    with pytest.raises(ValidationFailed) as caught:
        connector.create("customers", {"name": ""}, idempotency_key="k1")
    assert str(caught.value).endswith("name must not be empty")


def test_a_pms_that_cannot_delete_says_so(api: RestApi, connect: Connect) -> None:
    """``delete: false`` makes delete a ConfigError naming the key, sending nothing."""
    api.shape = Shape(body="root")
    made = api.add("customers", name="Acme")
    connector = connect({"resources": {"customers": {"path": "/customers", "delete": False}}})
    with pytest.raises(ConfigError, match="delete"):
        connector.delete("customers", str(made["id"]))
    assert api.writes() == []


def test_endpoints_can_be_given_one_by_one(api: RestApi, connect: Connect) -> None:
    """A resource whose list lives elsewhere is read through the endpoint the section names."""
    api.shape = Shape(body="root")
    api.add("projects", name="Website")
    rest = {
        "resources": {
            "customers": {"path": "/nowhere", "list": {"method": "GET", "path": "/projects"}}
        }
    }
    connector = connect(rest)
    assert [r.data["name"] for r in connector.list("customers")] == ["Website"]


def test_capabilities_follow_the_change_capture(connect: Connect) -> None:
    """feed: a ChangeFeed; updated-since: an UpdatedAfterListing; none: neither; all Connectors."""
    feed = connect({"changes": {"type": "feed"}})
    listing = connect({})
    full = connect({"changes": {"type": "none"}})
    assert isinstance(feed, ChangeFeed)
    assert not isinstance(feed, UpdatedAfterListing)
    assert isinstance(listing, UpdatedAfterListing)
    assert not isinstance(listing, ChangeFeed)
    assert not isinstance(full, ChangeFeed | UpdatedAfterListing)
    assert all(isinstance(c, Connector) for c in (feed, listing, full))


def test_updated_since_sends_the_pms_own_stamp_and_reads_only_newer(
    api: RestApi, connect: Connect
) -> None:
    """An exclusive ISO filter gets back the last ``updated_at`` exactly as the API wrote it."""
    api.shape = Shape(body="root")
    first = api.add("customers", name="A")
    connector = connect({"changes": {"type": "updated-since", "param": "updated_after"}})
    (listed,) = list(connector.list_updated_after("customers", None))
    assert listed.stamp == first["updated_at"]
    api.add("customers", name="B")
    newer = list(connector.list_updated_after("customers", listed.stamp))
    assert [entry.record.data["name"] for entry in newer] == ["B"]
    assert api.requests[-1].query["updated_after"] == first["updated_at"]


def test_an_operator_filter_in_unix_seconds_inclusive(api: RestApi, connect: Connect) -> None:
    """``updated_at_gte`` in unix seconds: the stamp is ISO for the engine, the filter a number,
    and the record at the bound itself comes again (inclusive)."""
    api.shape = Shape(body="root", times="unix", since_param="updated_at_gte", since_inclusive=True)
    first = api.add("customers", name="A")
    rest = {"changes": {"param": "updated_at_gte", "format": "unix", "inclusive": True}}
    connector = connect(rest)
    (listed,) = list(connector.list_updated_after("customers", None))
    assert listed.stamp == "2026-01-01T00:00:01+00:00"
    assert listed.record.changed_at is not None
    assert listed.record.changed_at.timestamp() == first["updated_at"]
    api.add("customers", name="B")
    again = list(connector.list_updated_after("customers", listed.stamp))
    assert api.requests[-1].query["updated_at_gte"] == str(first["updated_at"])
    assert [entry.record.data["name"] for entry in again] == ["A", "B"]


def test_the_overlap_reads_back_from_before_the_stamp(api: RestApi, connect: Connect) -> None:
    """``overlap_seconds`` asks from that much before the last stamp, so a record committed late
    with an earlier time is still seen."""
    api.shape = Shape(body="root")
    early = api.add("customers", name="late commit")
    last = api.add("customers", name="seen")
    connector = connect({"changes": {"overlap_seconds": 5}})
    read = list(connector.list_updated_after("customers", last["updated_at"]))
    assert api.requests[-1].query["updated_after"] == "2025-12-31T23:59:57+00:00"
    assert early["id"] in {int(entry.record.id) for entry in read}


def test_without_change_capture_every_cycle_is_a_full_listing(
    api: RestApi, connect: Connect
) -> None:
    """``changes.type: none`` lists every record even when asked for changes after a time."""
    api.shape = Shape(body="root")
    api.add("customers", name="A")
    connector = connect({"changes": {"type": "none"}})
    listed = list(connector.list("customers", changed_after=datetime(2030, 1, 1, tzinfo=UTC)))
    assert [r.data["name"] for r in listed] == ["A"]
    assert "updated_after" not in api.requests[-1].query


def test_the_contracts_changes_feed_is_read_raw() -> None:
    """``changes.type: feed`` reads the reference PMS's feed: an upsert, then a delete."""
    with serve(create_pms()) as url:
        settings = PMSSettings(
            connector="rest",
            base_url=f"{url}/api/v1",
            api_key=SecretStr(PMS_API_KEY),
            rest=reference_pms_rest("feed"),
        )
        with RestConnector(settings) as connector:
            assert isinstance(connector, ChangeFeed)
            made = connector.create(
                "customers", {"kind": "company", "name": "Acme"}, idempotency_key="k"
            )
            connector.delete("customers", made.id)
            page = connector.changes(0, limit=10)
    assert [(item.resource, item.id, item.op) for item in page.items][-2:] == [
        ("customers", made.id, "upsert"),
        ("customers", made.id, "delete"),
    ]


def test_a_create_answered_with_only_a_location_reads_the_record_there(
    api: RestApi, connect: Connect
) -> None:
    """A 201 with no body and a ``Location`` header: the new record is read from that URL."""
    api.shape = Shape(body="root", create_answer="location")
    connector = connect({})
    made = connector.create("customers", {"name": "Acme"}, idempotency_key="k1")
    assert made.data["name"] == "Acme"
    assert [(r.method, r.path) for r in api.requests] == [
        ("POST", "/customers"),
        ("GET", f"/customers/{made.id}"),
    ]
