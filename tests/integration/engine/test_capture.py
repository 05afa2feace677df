"""Change capture against the simulators over real loopback HTTP, cursors in a real store."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from loopback import serve
from tolken.config import PMSSettings, PowerOfficeSettings
from tolken.connectors.base import RemoteRecord
from tolken.connectors.pms import PMSClient
from tolken.connectors.poweroffice import PowerOfficeClient
from tolken.engine.capture import PMSCapture, load_po_cursor, read_poweroffice, save_po_cursor
from tolken.engine.cursor import read_after
from tolken.engine.staging import Staging
from tolken.sandbox import credentials
from tolken.sandbox.pms import PMS_API_KEY, create_app
from tolken.sandbox.poweroffice import create_app as create_poweroffice
from tolken.store import TenantStore, open_store


@pytest.fixture(scope="module")
def pms_url() -> Iterator[str]:
    with serve(create_app()) as url:
        yield url


@pytest.fixture
def url(pms_url: str) -> str:
    httpx.post(f"{pms_url}/_sandbox/reset", json={}).raise_for_status()
    return pms_url


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TenantStore]:
    with open_store(f"sqlite:///{tmp_path / 'tolken.db'}") as opened:
        yield opened.for_tenant("t")


def _client(url: str, change_capture: str) -> PMSClient:
    return PMSClient(
        PMSSettings.model_validate(
            {
                "base_url": f"{url}/api/v1",
                "api_key": PMS_API_KEY,
                "timeout_seconds": 5,
                "change_capture": change_capture,
            }
        )
    )


def _cycle(pms: PMSClient, store: TenantStore, *resources: str) -> dict[str, list[RemoteRecord]]:
    """One cycle's capture of ``resources``, committed."""
    capture = PMSCapture(pms, store, use_feed=pms.settings.change_capture == "changes")
    read = {
        resource: [r for page in capture.changes(resource) for r in page] for resource in resources
    }
    capture.commit()
    capture.close()
    return read


def _stored_pms_cursors(db_file: Path) -> dict[str, tuple[str, str]]:
    """``resource: (value, updated_at)`` of the PMS cursors, read from the store's file."""
    with sqlite3.connect(db_file) as conn:
        rows = conn.execute(
            "SELECT resource, value, updated_at FROM cursors WHERE system = 'pms'"
        ).fetchall()
    return {resource: (value, updated_at) for resource, value, updated_at in rows}


def test_a_position_that_did_not_move_is_not_written_again(
    url: str, store: TenantStore, tmp_path: Path
) -> None:
    """An idle cycle leaves the stored PMS cursors as they were (no write at all); one that
    read a change stores the new position."""
    with _client(url, "changes") as pms:
        customer = pms.create("customers", {"kind": "company", "name": "A"}, idempotency_key="a")
        _cycle(pms, store, "customers", "projects")
        before = _stored_pms_cursors(tmp_path / "tolken.db")
        assert set(before) == {"customers", "projects"}
        assert _cycle(pms, store, "customers", "projects") == {"customers": [], "projects": []}
        assert _stored_pms_cursors(tmp_path / "tolken.db") == before
        pms.update("customers", customer.id, {"name": "B"})
        assert [r.id for r in _cycle(pms, store, "customers")["customers"]] == [customer.id]
        after = _stored_pms_cursors(tmp_path / "tolken.db")
        assert after["customers"][0] != before["customers"][0]
        assert after["projects"] == before["projects"]


def test_feed_capture_sees_upserts_and_tombstones(url: str, store: TenantStore) -> None:
    """Change capture by the changes feed returns edited records and deletes as tombstones."""
    with _client(url, "changes") as pms:
        keep = pms.create("customers", {"kind": "company", "name": "Keep"}, idempotency_key="a")
        gone = pms.create("customers", {"kind": "company", "name": "Gone"}, idempotency_key="b")
        start = _cycle(pms, store, "customers", "projects")
        assert {r.id for r in start["customers"]} == {keep.id, gone.id}
        pms.update("customers", keep.id, {"name": "Kept"})
        pms.delete("customers", gone.id)
        project = pms.create("projects", {"name": "P", "customer_id": keep.id}, idempotency_key="c")
        batch = _cycle(pms, store, "customers", "projects")
        assert {(r.id, r.deleted, r.data.get("name")) for r in batch["customers"]} == {
            (keep.id, False, "Kept"),
            (gone.id, True, None),
        }
        assert [r.id for r in batch["projects"]] == [project.id]
        assert _cycle(pms, store, "customers")["customers"] == []


def test_polling_capture_sees_edits(url: str, store: TenantStore) -> None:
    """Change capture by updated_after polling returns exactly the records edited since."""
    with _client(url, "polling") as pms:
        one = pms.create("customers", {"kind": "company", "name": "One"}, idempotency_key="a")
        pms.create("customers", {"kind": "company", "name": "Two"}, idempotency_key="b")
        _cycle(pms, store, "customers")
        pms.update("customers", one.id, {"name": "One!"})
        batch = _cycle(pms, store, "customers")["customers"]
        assert [(r.id, r.data["name"]) for r in batch] == [(one.id, "One!")]
        assert _cycle(pms, store, "customers")["customers"] == []


# -- PowerOffice: the overlap window and PowerOffice's clock ------------------------


@pytest.fixture(scope="module")
def po_server() -> Iterator[str]:
    with serve(create_poweroffice(rate_limit_per_second=None)) as url:
        yield url


@pytest.fixture
def po_url(po_server: str) -> str:
    httpx.post(f"{po_server}/_sandbox/reset", json={}).raise_for_status()
    return po_server


def _po(url: str) -> PowerOfficeClient:
    return PowerOfficeClient(
        PowerOfficeSettings(
            base_url=f"{url}/v2",
            token_url=f"{url}/OAuth/Token",
            application_key=SecretStr(credentials.APPLICATION_KEY),
            client_key=SecretStr(credentials.CLIENT_KEY),
            subscription_key=SecretStr(credentials.SUBSCRIPTION_KEY),
            requests_per_second=1000.0,
            timeout_seconds=5.0,
        )
    )


def _po_cycle(po: PowerOfficeClient, store: TenantStore, overlap: timedelta) -> list[str]:
    """One cycle's capture of departments, then customers (the engine's order), cursors
    saved: the names of the customers read."""
    now = datetime.now(UTC)
    names: list[str] = []
    for resource in ("Departments", "Customers"):
        with Staging() as staging:
            capture = read_poweroffice(
                po, store, resource, overlap=overlap, full=False, staging=staging
            )
            save_po_cursor(store, capture, (), run_started_at=now, overlap=overlap)
        names = sorted(str(r.data["Name"]) for r in capture.records)
    return names


def _customer(po: PowerOfficeClient, name: str) -> str:
    return po.create("Customers", {"Name": name}, idempotency_key=f"late-{name}").id


def test_the_overlap_is_not_listed_again_once_poweroffice_s_clock_has_passed_it(
    po_url: str, store: TenantStore
) -> None:
    """After a bulk change, once PowerOffice's Date is past it plus the overlap, an idle
    cycle asks only for records newer than the newest seen: nothing is listed again."""
    overlap = timedelta(seconds=1)
    with _po(po_url) as po:
        for n in range(5):
            _customer(po, f"Bulk {n}")
        assert len(_po_cycle(po, store, overlap)) == 5
        assert _po_cycle(po, store, overlap) == []  # the window is re-read, deduplicated
        state = load_po_cursor(store, "Customers")
        assert state.position is not None
        assert read_after(state, overlap) == state.position - overlap
        time.sleep(2.2)  # the Date header counts whole seconds
        # A loaded machine can leave the server's Date a tick behind: a few more idle
        # cycles may pass, but none lists anything and the position settles soon.
        for _ in range(6):
            assert _po_cycle(po, store, overlap) == []
            state = load_po_cursor(store, "Customers")
            if state.settled is not None:
                break
            time.sleep(0.5)
        assert state.settled == state.position
        assert read_after(state, overlap) == state.position
        assert list(po.list("Customers", changed_after=read_after(state, overlap))) == []


def test_a_record_committed_late_inside_the_window_is_still_caught(
    po_url: str, store: TenantStore
) -> None:
    """A change PowerOffice commits after a listing, stamped before the newest record that
    listing saw (but within the overlap), reaches the next cycle."""
    overlap = timedelta(seconds=30)
    with _po(po_url) as po:
        late = _customer(po, "Late")
        _customer(po, "Early")
        assert _po_cycle(po, store, overlap) == ["Early", "Late"]
        time.sleep(1.0)
        newest = _customer(po, "Newest")
        assert _po_cycle(po, store, overlap) == ["Newest"]
        position = load_po_cursor(store, "Customers").position
        assert position is not None
        # Stamped half a second before the position however long the cycle took (a loaded
        # machine), and after "Late"'s first stamp (a second before "Newest").
        back = (datetime.now(UTC) - position).total_seconds() + 0.5
        answer = httpx.post(
            f"{po_url}/_sandbox/late-commit",
            json={
                "resource": "Customers",
                "id": int(late),
                "seconds": back,
                "fields": {"Name": "Late, committed"},
            },
        )
        answer.raise_for_status()
        stamped = datetime.fromisoformat(answer.json()["LastChangedDateTimeOffset"][:26] + "+00:00")
        assert stamped < position, "the late commit must be stamped before what was seen"
        assert _po_cycle(po, store, overlap) == ["Late, committed"]
        assert newest != late
