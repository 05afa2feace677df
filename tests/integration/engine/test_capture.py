"""PMS change capture against the reference PMS over real loopback HTTP, cursors in a real store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loopback import serve
from tolken.config import PMSSettings
from tolken.connectors.base import RemoteRecord
from tolken.connectors.pms import PMSClient
from tolken.engine.capture import PMSCapture
from tolken.sandbox.pms import PMS_API_KEY, create_app
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
    read = {resource: capture.changes(resource) for resource in resources}
    capture.commit()
    return read


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
