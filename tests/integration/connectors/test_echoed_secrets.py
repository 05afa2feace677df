"""A PMS that echoes our API key in its error answers never gets it printed, stored or shown."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from integration.sync_harness import Sandbox
from loopback import serve
from tolken.cli import app as cli
from tolken.config import load_config
from tolken.sandbox.credentials import PMS_API_KEY
from tolken.sandbox.pms import create_app as create_pms
from tolken.store import open_store
from tolken.web.app import create_app as create_dashboard

DASHBOARD_TOKEN = "dashboard-token-0123456789"

Asgi = Callable[..., Any]


def echoing(pms: Asgi, status: int, *, writes_only: bool, as_json: bool) -> Asgi:
    """``pms``, except that the chosen requests get ``status`` and a body echoing our key."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        refuse = scope["type"] == "http" and (not writes_only or scope["method"] == "POST")
        if not refuse:
            await pms(scope, receive, send)
            return
        authorization = dict(scope["headers"]).get(b"authorization", b"").decode()
        words = f"bad credentials: {authorization}"
        if as_json:
            body = json.dumps({"errors": [{"field": "name", "message": words}]}).encode()
            kind = b"application/json"
        else:
            body, kind = words.encode(), b"text/plain"
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", kind)]}
        )
        await send({"type": "http.response.body", "body": body})

    return app


def _config(sb: Sandbox, pms_url: str) -> Path:
    echo_sb = Sandbox(sb.po_url, pms_url, sb.tmp)
    return echo_sb.write_config(extra=f"serve:\n  token: {DASHBOARD_TOKEN}\n")


def _store_bytes(tmp: Path) -> bytes:
    return b"".join(path.read_bytes() for path in tmp.glob("tolken.db*"))


@pytest.mark.usefixtures("quiet_logs")
def test_echoed_key_in_record_errors_is_redacted_everywhere(
    sb: Sandbox,
) -> None:
    """Parked records' messages hold [redacted] for the echoed key: CLI, store and dashboard."""
    sb.po_create("Departments", {"Code": "D1", "Name": "Sales"})
    sb.po_create("Customers", {"Name": "Acme AS", "OrganizationNumber": "912345678"})
    pms = echoing(create_pms(), 422, writes_only=True, as_json=True)
    with serve(pms) as pms_url:
        path = _config(sb, pms_url)
        runner = CliRunner()
        synced = runner.invoke(cli, ["sync", "--config", str(path), "--once"])
        listed = runner.invoke(cli, ["failures", "--config", str(path), "--json"])
        shown = runner.invoke(cli, ["failures", "--config", str(path)])
    assert synced.exit_code == 0, synced.stderr
    failures = json.loads(listed.stdout)
    assert len(failures) == 2
    assert all("bad credentials: Bearer [redacted]" in f["message"] for f in failures)
    for output in (synced.stdout, synced.stderr, listed.stdout, shown.stdout, shown.stderr):
        assert PMS_API_KEY not in output
    assert PMS_API_KEY.encode() not in _store_bytes(sb.tmp)
    config = load_config(path)
    with open_store(config.store) as store:
        dashboard = TestClient(create_dashboard(config, store.for_tenant(config.tenant)))
        auth = {"Authorization": f"Bearer {DASHBOARD_TOKEN}"}
        api = dashboard.get("/api/failures", headers=auth)
        page = dashboard.get("/failures", headers=auth)
    assert api.status_code == page.status_code == 200
    assert "[redacted]" in api.text
    assert PMS_API_KEY not in api.text
    assert PMS_API_KEY not in page.text


@pytest.mark.usefixtures("quiet_logs")
def test_echoed_key_in_a_refusal_is_redacted_from_the_error(
    sb: Sandbox,
) -> None:
    """A 401 whose text echoes the key exits 1 with a line and a run error without the key."""
    pms = echoing(create_pms(), 401, writes_only=False, as_json=False)
    with serve(pms) as pms_url:
        path = _config(sb, pms_url)
        result = CliRunner().invoke(cli, ["sync", "--config", str(path), "--once"])
    assert result.exit_code == 1
    assert "the PMS refused the API key (401): bad credentials: Bearer [redacted]" in result.stderr
    assert PMS_API_KEY not in result.stdout + result.stderr
    config = load_config(path)
    with open_store(config.store) as store:
        runs = store.for_tenant(config.tenant).last_runs()
    assert runs
    assert "[redacted]" in (runs[0].error or "")
    assert PMS_API_KEY.encode() not in _store_bytes(sb.tmp)
