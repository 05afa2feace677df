"""`tolken check-pms --config` against json-server, configured as docs/pms-rest.md shows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.jsonserver.conftest import JsonServerSync, json_server_sync
from integration.sync_harness import run_cli


@pytest.fixture
def populated(
    po_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[JsonServerSync]:
    """json-server holding a few records of its own."""
    seed = {
        "customers": [
            {"id": 1, "type": "company", "displayName": "Acme", "updatedAt": "2026-01-01"},
            {"id": 2, "type": "person", "displayName": "Kari", "updatedAt": "2026-01-02"},
        ],
        "projects": [{"id": 1, "projectCode": "P1", "title": "Web", "clientRef": "1"}],
    }
    yield from json_server_sync(po_url, tmp_path, monkeypatch, seed=seed)


def test_check_pms_passes_json_server_and_leaves_every_record_as_it_was(
    populated: JsonServerSync,
) -> None:
    """Every rule passes or reports its capability absent, and json-server's data is unchanged."""
    before = populated.js.database()
    config = populated.config_path()
    code, out, err = run_cli("check-pms", "--config", str(config))
    assert code == 0, out + err
    lines = out.splitlines()
    assert lines[0].startswith("check-pms will create up to ")
    results = [line for line in lines if line.split(" ", 1)[0] in ("PASS", "FAIL", "ABSENT")]
    assert {line.split()[0] for line in results} == {"PASS", "ABSENT"}, out
    assert [line.split()[1] for line in results if line.startswith("ABSENT")] == [
        "concurrency",
        "changes-feed",
    ]
    assert "cleanup: deleted " in out
    assert populated.js.database() == before


def test_check_pms_json_lists_what_it_created_and_sent(populated: JsonServerSync) -> None:
    """--json gives each rule's requests and answers, what was created, and nothing left behind."""
    code, out, err = run_cli("check-pms", "--config", str(populated.config_path()), "--json")
    assert code == 0, out + err
    assert err.startswith("check-pms will create up to ")
    doc = json.loads(out)
    assert doc["left_behind"] == []
    assert doc["created"]
    create = next(r for r in doc["rules"] if r["rule"] == "create-and-read")
    assert [e["method"] for e in create["exchanges"]][:2] == ["POST", "GET"]
    assert create["exchanges"][0]["status"] == 201
    assert '"displayName": "tolken-check ' in create["exchanges"][0]["sent"]
