"""The custom connector example in docs/pms-contract.md works as printed, with the engine."""

import json
import types
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from docstext import DOCS, ROOT, fenced, section
from tolken import errors
from tolken.config import PMSSettings, PowerOfficeSettings, TolkenConfig
from tolken.connectors import _http
from tolken.connectors.base import ENTRY_POINT_GROUP, ChangeFeed, Connector
from tolken.connectors.poweroffice import PowerOfficeClient
from tolken.engine import SyncEngine
from tolken.sandbox import credentials
from tolken.sandbox.poweroffice import create_app as create_po_simulator
from tolken.store import open_store

CONTRACT = DOCS["pms-contract.md"]


def _example_module() -> types.ModuleType:
    """Every Python block of the section, in order, in one module (later ones build on earlier)."""
    part = section(CONTRACT, "## Custom connectors")
    module = types.ModuleType("acme_example")
    for source in (body for lang, body in fenced(part) if lang == "python"):
        # Pad so that line numbers in a traceback are those of the Markdown file.
        padded = "\n" * CONTRACT[: CONTRACT.index(source)].count("\n") + source
        exec(compile(padded, str(ROOT / "docs" / "pms-contract.md"), "exec"), module.__dict__)
    return module


class _FakeAcme:
    """The Acme API the example talks to: pages of two, ``modified_after``, ``import_ref``."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, dict[str, Any]]] = {"clients": {}, "jobs": {}}
        self.events: list[dict[str, Any]] = []
        self.clock = datetime(2026, 1, 1, tzinfo=UTC)
        self.next_id = 0

    def event(self, path: str, record_id: str, op: str) -> None:
        """Log a change in Acme's event log (``GET events``)."""
        self.events.append({"n": len(self.events) + 1, "path": path, "id": record_id, "op": op})

    def stamp(self) -> str:
        """A modification time later than every earlier one."""
        self.clock += timedelta(seconds=1)
        return self.clock.isoformat()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("X-Api-Key") != "acme-key":
            return httpx.Response(401, text="bad API key")
        parts = request.url.path.strip("/").split("/")[1:]  # drop the "api" prefix
        if parts == ["events"]:
            since, most = int(request.url.params["since"]), int(request.url.params["max"])
            later = [e for e in self.events if e["n"] > since]
            return httpx.Response(200, json={"data": later[:most], "more": len(later) > most})
        if parts[0] not in self.records:
            return httpx.Response(404, text="no such path")
        records = self.records[parts[0]]
        if len(parts) == 2:
            return self._one(request, records, parts[1])
        if request.method == "POST":
            body = json.loads(request.content)
            if not body.get("name"):
                return httpx.Response(422, text="name: must not be empty")
            self.next_id += 1
            record = {**body, "id": str(self.next_id), "modified": self.stamp()}
            records[record["id"]] = record
            self.event(parts[0], record["id"], "upsert")
            return httpx.Response(201, json=record)
        params = request.url.params
        items = sorted(records.values(), key=lambda r: r["modified"])
        if "modified_after" in params:
            after = datetime.fromisoformat(params["modified_after"])
            items = [r for r in items if datetime.fromisoformat(r["modified"]) > after]
        if "import_ref" in params:
            items = [r for r in items if r.get("import_ref") == params["import_ref"]]
        page = int(params.get("page", "1"))
        chunk = items[(page - 1) * 2 : page * 2]
        return httpx.Response(200, json={"data": chunk, "more": len(items) > page * 2})

    def _one(
        self, request: httpx.Request, records: dict[str, dict[str, Any]], record_id: str
    ) -> httpx.Response:
        record = records.get(record_id)
        if record is None:
            return httpx.Response(404, text=f"no record {record_id}")
        path = request.url.path.strip("/").split("/")[1]
        if request.method == "DELETE":
            del records[record_id]
            self.event(path, record_id, "delete")
            return httpx.Response(204)
        if request.method == "PATCH":
            record.update(json.loads(request.content), modified=self.stamp())
            self.event(path, record_id, "upsert")
        return httpx.Response(200, json=record)


@pytest.fixture
def acme() -> Iterator[tuple[Any, _FakeAcme]]:
    """The example connector, talking to a fresh fake Acme API."""
    fake = _FakeAcme()
    settings = PMSSettings(base_url="https://acme.example.com/api/", api_key="acme-key")
    with httpx.Client(transport=httpx.MockTransport(fake)) as http:
        yield _example_module().AcmeConnector(settings, http=http), fake


def test_custom_connector_example_implements_the_protocol(acme: tuple[Any, _FakeAcme]) -> None:
    """The example connector in docs/pms-contract.md is a Connector the engine can build."""
    connector, _ = acme
    assert isinstance(connector, Connector)
    assert connector.system == "pms"
    assert set(connector.resources()) == {"customers", "projects"}


def test_custom_connector_example_round_trip(acme: tuple[Any, _FakeAcme]) -> None:
    """The example creates, finds by key, lists changes, updates (field paths nested on the
    wire) and classifies errors."""
    connector, _ = acme
    made = [
        connector.create("customers", {"name": f"Firma {i}"}, idempotency_key=f"tk-{i}")
        for i in range(5)
    ]
    listed = list(connector.list("customers"))
    assert [r.id for r in listed] == [r.id for r in made]  # three pages of at most two
    assert connector.find_by_idempotency_key("customers", "tk-3").id == made[3].id
    assert connector.find_by_idempotency_key("customers", "tk-missing") is None
    after = list(connector.list("customers", changed_after=made[2].changed_at))
    assert [r.id for r in after] == [made[3].id, made[4].id]
    updated = connector.update(
        "customers", made[0].id, {"phone": "+47 22 00 00 00", "address.city": "Oslo"}
    )
    assert updated.data["phone"] == "+47 22 00 00 00"
    assert updated.data["address"] == {"city": "Oslo"}
    assert updated.changed_at > made[4].changed_at
    assert list(connector.list("projects")) == []  # another Acme path
    connector.delete("customers", made[1].id)
    with pytest.raises(errors.NotFound):
        connector.get("customers", made[1].id)
    with pytest.raises(errors.ValidationFailed, match="name: must not be empty"):
        connector.create("customers", {"name": ""}, idempotency_key="tk-x")


def test_custom_connector_example_refused_key_is_fatal() -> None:
    """With a wrong API key the example raises AuthError, which stops the run."""
    settings = PMSSettings(base_url="https://acme.example.com/api", api_key="wrong-key")
    with httpx.Client(transport=httpx.MockTransport(_FakeAcme())) as http:
        connector = _example_module().AcmeConnector(settings, http=http)
        with pytest.raises(errors.AuthError):
            connector.get("customers", "1")


def test_custom_connector_registration_snippets_are_valid() -> None:
    """The pyproject and tolken.yaml snippets use the real entry-point group and settings keys."""
    blocks = list(fenced(section(CONTRACT, "## Custom connectors")))
    toml = next(body for lang, body in blocks if lang == "toml")
    assert f'[project.entry-points."{ENTRY_POINT_GROUP}"]' in toml
    yaml = next(body for lang, body in blocks if lang == "yaml")
    pms = {}
    for line in yaml.split("mapping:")[0].splitlines()[1:]:
        key, _, value = line.strip().partition(": ")
        pms[key] = value
    assert pms["connector"] == toml.split(" = ")[0].splitlines()[-1]
    PMSSettings.model_validate({**pms, "api_key": "set-from-the-environment"})


def test_custom_connector_example_syncs_with_the_engine(tmp_path: Path) -> None:
    """With the example connector and polling, records reach Acme (nested objects nested), edits
    come back, deletes mark."""
    po_settings = PowerOfficeSettings.model_validate(
        {
            "base_url": "http://testserver/v2",
            "token_url": "http://testserver/OAuth/Token",
            "application_key": credentials.APPLICATION_KEY,
            "client_key": credentials.CLIENT_KEY,
            "subscription_key": credentials.SUBSCRIPTION_KEY,
        }
    )
    pms_settings = PMSSettings.model_validate(
        {
            "connector": "acme",
            "base_url": "https://acme.example.com/api",
            "api_key": "acme-key",
            "change_capture": "polling",
        }
    )
    config = TolkenConfig(
        store=f"sqlite:///{tmp_path / 'tolken.db'}", poweroffice=po_settings, pms=pms_settings
    )
    fake = _FakeAcme()
    sim = create_po_simulator(rate_limit_per_second=None)
    with (
        _http.testing(),
        TestClient(sim) as po_http,
        httpx.Client(transport=httpx.MockTransport(fake)) as acme_http,
        open_store(config.store) as store,
    ):
        po = PowerOfficeClient(po_settings, http=po_http)
        po.create("Departments", {"Code": "10", "Name": "Salg"}, idempotency_key="10")
        fjellvind = {
            "Name": "Fjellvind AS",
            "MailAddress.City": "Tromsø",
            "MailAddress.ZipCode": "9008",
        }
        customer = po.create("Customers", fjellvind, idempotency_key="c-1").id
        acme = _example_module().AcmeConnector(pms_settings, http=acme_http)
        engine = SyncEngine(config, store, po, acme)

        engine.run_cycle()
        clients = fake.records["clients"].values()
        assert sorted((c["kind"], c["name"]) for c in clients) == [
            ("company", "Fjellvind AS"),
            ("department", "Salg"),
        ]
        link = engine.store.get_link_by_po("customers", customer)
        assert link is not None
        assert fake.records["clients"][link.pms_id]["address"] == {
            "postal_code": "9008",
            "city": "Tromsø",
            "country": "NO",
        }

        fake.records["clients"][link.pms_id].update(phone="+47 90 00 00 01", modified=fake.stamp())
        engine.run_cycle()
        assert po.get("Customers", customer).data["PhoneNumber"] == "+47 90 00 00 01"

        del fake.records["clients"][link.pms_id]
        report = engine.run_cycle(reconcile=True)
        assert "mass-delete breaker" in str(report.flow("customers").stopped)  # 1 of 1 links
        engine.run_cycle(reconcile=True, confirm_deletes=True)
        gone = engine.store.get_link_by_po("customers", customer)
        assert gone is not None
        assert gone.state == "pms-deleted"
        assert po.get("Customers", customer).data["Name"] == "Fjellvind AS"  # left alone


def test_custom_connector_feed_example_is_a_change_feed(acme: tuple[Any, _FakeAcme]) -> None:
    """The feed example in docs/pms-contract.md is a ChangeFeed; the plain example is not."""
    connector, fake = acme
    assert not isinstance(connector, ChangeFeed)
    settings = PMSSettings(base_url="https://acme.example.com/api/", api_key="acme-key")
    with httpx.Client(transport=httpx.MockTransport(fake)) as http:
        feed = _example_module().AcmeFeedConnector(settings, http=http)
        made = [
            feed.create("customers", {"name": f"Firma {i}"}, idempotency_key=f"tk-{i}")
            for i in range(3)
        ]
        feed.delete("customers", made[0].id)
        assert isinstance(feed, ChangeFeed)
        page = feed.changes(1, limit=2)
    assert [(i.seq, i.resource, i.id, i.op) for i in page.items] == [
        (2, "customers", made[1].id, "upsert"),
        (3, "customers", made[2].id, "upsert"),
    ]
    assert page.has_more is True


def test_custom_connector_feed_example_syncs_deletes_without_a_reconcile(tmp_path: Path) -> None:
    """With the feed example, an edit comes back and a delete marks the link in a plain cycle."""
    po_settings = PowerOfficeSettings.model_validate(
        {
            "base_url": "http://testserver/v2",
            "token_url": "http://testserver/OAuth/Token",
            "application_key": credentials.APPLICATION_KEY,
            "client_key": credentials.CLIENT_KEY,
            "subscription_key": credentials.SUBSCRIPTION_KEY,
        }
    )
    pms_settings = PMSSettings.model_validate(
        {"connector": "acme", "base_url": "https://acme.example.com/api", "api_key": "acme-key"}
    )
    config = TolkenConfig(
        store=f"sqlite:///{tmp_path / 'tolken.db'}", poweroffice=po_settings, pms=pms_settings
    )
    fake = _FakeAcme()
    sim = create_po_simulator(rate_limit_per_second=None)
    with (
        _http.testing(),
        TestClient(sim) as po_http,
        httpx.Client(transport=httpx.MockTransport(fake)) as acme_http,
        open_store(config.store) as store,
    ):
        po = PowerOfficeClient(po_settings, http=po_http)
        customer = po.create("Customers", {"Name": "Fjellvind AS"}, idempotency_key="c-1").id
        po.create("Customers", {"Name": "Havbris AS"}, idempotency_key="c-2")
        acme = _example_module().AcmeFeedConnector(pms_settings, http=acme_http)
        engine = SyncEngine(config, store, po, acme)

        engine.run_cycle()
        link = engine.store.get_link_by_po("customers", customer)
        assert link is not None
        # The feed's head read before the listing: tolken's own creates are read back next.
        assert engine.store.get_cursor("pms", "customers") == "seq:0"

        fake.records["clients"][link.pms_id].update(phone="+47 90 00 00 01", modified=fake.stamp())
        fake.event("clients", link.pms_id, "upsert")
        engine.run_cycle()
        assert po.get("Customers", customer).data["PhoneNumber"] == "+47 90 00 00 01"
        assert engine.store.get_cursor("pms", "customers") == f"seq:{len(fake.events)}"

        del fake.records["clients"][link.pms_id]
        fake.event("clients", link.pms_id, "delete")
        engine.run_cycle()
        gone = engine.store.get_link_by_po("customers", customer)
        assert gone is not None
        assert gone.state == "pms-deleted"
        assert po.get("Customers", customer).data["Name"] == "Fjellvind AS"  # left alone
