"""The operator CLI against both sandbox systems: sync, plan, status, links, failures, link."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from integration.sync_harness import Sandbox, run_cli, start_tolken
from tolken.store import open_store


@pytest.fixture
def sb(sb: Sandbox, quiet_logs: None) -> Sandbox:  # noqa: ARG001 - for its effect
    """The shared loopback sandbox, with the root logger put back after the CLI ran."""
    return sb


def _seed(sb: Sandbox) -> str:
    sb.po_create("Departments", {"Code": "D1", "Name": "Sales"})
    return sb.po_create("Customers", {"Name": "Acme AS", "OrganizationNumber": "912345678"})


def test_sync_once_json_prints_the_contract_object(sb: Sandbox) -> None:
    """`sync --once --json` prints per-flow counts and requests per system, and exits 0."""
    _seed(sb)
    config = sb.write_config()
    code, out, err = run_cli("sync", "--config", str(config), "--once", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert set(data["flows"]) == {"departments", "customers", "projects"}
    for counts in data["flows"].values():
        assert {"created", "linked", "updated", "conflicts", "failed", "unchanged"} <= set(counts)
    assert data["flows"]["customers"]["created"] == 1
    assert data["requests"]["poweroffice"] > 0
    assert data["requests"]["pms"] > 0
    again = json.loads(run_cli("sync", "--config", str(config), "--once", "--json")[1])
    assert sum(c["created"] + c["updated"] for c in again["flows"].values()) == 0


def test_plan_writes_nothing_anywhere(sb: Sandbox) -> None:
    """`plan` lists the creates but sends no write to either system and stores nothing."""
    _seed(sb)
    sb.pms_create(
        "customers", {"kind": "company", "name": "Twin", "organization_number": "912345678"}
    )
    config = sb.write_config()
    sb.reset_stats()
    code, out, err = run_cli("plan", "--config", str(config), "--json")
    assert code == 0, err
    planned = json.loads(out)["planned"]
    assert {(p["flow"], p["kind"]) for p in planned} >= {
        ("departments", "create-in-pms"),
        ("customers", "link"),
    }
    assert sb.writes_since_baseline("poweroffice") == {}
    assert sb.writes_since_baseline("pms") == {}
    with open_store(f"sqlite:///{sb.tmp / 'tolken.db'}") as db:
        store = db.for_tenant("default")
        assert store.list_links() == []
        assert store.last_runs() == []
        assert store.cursors() == {}
    code, out, _ = run_cli("plan", "--config", str(config))
    assert code == 0
    assert "create-in-pms" in out


def test_status_links_conflicts_failures_after_a_sync(sb: Sandbox) -> None:
    """The inspection commands show what the sync did, as tables and as JSON arrays."""
    _seed(sb)
    sb.po_create("Customers", {"Name": "Bad AS", "EmailAddress": "nope"})
    config = sb.write_config()
    assert run_cli("sync", "--config", str(config), "--once")[0] == 0
    code, out, _ = run_cli("links", "--config", str(config), "--json")
    links = json.loads(out)
    assert code == 0
    assert sorted(link["flow"] for link in links) == ["customers", "departments"]
    failures = json.loads(run_cli("failures", "--config", str(config), "--json")[1])
    assert [f["message"] for f in failures] == ["email: must be an e-mail address"]
    assert json.loads(run_cli("conflicts", "--config", str(config), "--json")[1]) == []
    status = json.loads(run_cli("status", "--config", str(config), "--json")[1])
    assert status["flows"]["customers"]["active_links"] == 1
    assert status["flows"]["customers"]["failures"] == 1
    assert status["last_run"]["status"] == "ok"
    code, out, _ = run_cli("status", "--config", str(config))
    assert code == 0
    assert "customers" in out
    code, out, _ = run_cli("failures", "--config", str(config))
    assert "must be an e-mail address" in out


def test_retry_runs_the_parked_records_again(sb: Sandbox) -> None:
    """After the cause is fixed, `retry ID` synchronises the parked record."""
    bad = sb.po_create("Customers", {"Name": "Bad AS", "EmailAddress": "nope"})
    config = sb.write_config()
    run_cli("sync", "--config", str(config), "--once")
    [failure] = json.loads(run_cli("failures", "--config", str(config), "--json")[1])
    # Fixed on the PMS side's terms without moving PowerOffice's timestamp window: edit in place.
    sb.po_update("Customers", bad, {"EmailAddress": "post@bad.no"})
    code, out, err = run_cli("retry", str(failure["id"]), "--config", str(config), "--json")
    assert code == 0, err
    assert json.loads(out)["flows"]["customers"]["created"] == 1
    assert json.loads(run_cli("failures", "--config", str(config), "--json")[1]) == []


def test_link_by_hand_settles_an_ambiguous_match(sb: Sandbox) -> None:
    """`link` pairs the records, merges them, and refuses to link either one again."""
    twin_a = sb.pms_create(
        "customers", {"kind": "company", "name": "Acme A", "organization_number": "912345678"}
    )
    sb.pms_create(
        "customers", {"kind": "company", "name": "Acme B", "organization_number": "912345678"}
    )
    cust = sb.po_create(
        "Customers", {"Name": "Acme AS", "OrganizationNumber": "912345678", "PhoneNumber": "55"}
    )
    config = sb.write_config()
    run_cli("sync", "--config", str(config), "--once")
    code, _out, err = run_cli("link", "--flow", "customers", cust, twin_a, "--config", str(config))
    assert code == 0, err
    assert sb.pms_get("customers", twin_a)["phone"] == "55"  # empty never overwrites: copied over
    assert json.loads(run_cli("failures", "--config", str(config), "--json")[1]) == []
    code, _out, err = run_cli("link", "--flow", "customers", cust, twin_a, "--config", str(config))
    assert code == 1
    assert "already linked" in err


def test_bad_credentials_exit_1_with_one_line_naming_the_system(sb: Sandbox) -> None:
    """A wrong PowerOffice client key: exit 1, one stderr line naming PowerOffice, no traceback."""
    config = sb.write_config(client_key="wrong-key")
    code, out, err = run_cli("sync", "--config", str(config), "--once", "--json")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "poweroffice" in lines[0].lower()
    assert "Traceback" not in err
    assert "wrong-key" not in err + out


def test_bad_config_exits_2_naming_the_key_and_line(sb: Sandbox) -> None:
    """An invalid value in tolken.yaml: exit 2, and the message names the key and its line."""
    config = sb.write_config(extra="  interval_seconds_typo: 5\n")
    code, _out, err = run_cli("sync", "--config", str(config), "--once")
    assert code == 2
    assert "interval_seconds_typo" in err
    lines = config.read_text(encoding="utf-8").splitlines()
    line = 1 + next(i for i, text in enumerate(lines) if "interval_seconds_typo" in text)
    assert f"tolken.yaml:{line}:" in err
    assert run_cli("sync", "--config", str(sb.tmp / "missing.yaml"), "--once")[0] == 2


def test_sync_as_a_real_process(sb: Sandbox) -> None:
    """`.venv/bin/tolken sync --once --json` in a subprocess prints JSON and exits 0."""
    _seed(sb)
    config = sb.write_config()
    tolken = Path(sys.executable).with_name("tolken")
    done = subprocess.run(
        [str(tolken), "sync", "--config", str(config), "--once", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["flows"]["departments"]["created"] == 1


def test_watch_stops_cleanly_on_sigterm(sb: Sandbox) -> None:
    """`sync --watch --json` prints a JSON line per cycle until SIGTERM, then exits 0."""
    _seed(sb)
    config = sb.write_config()
    with start_tolken("sync", "--config", str(config), "--watch", "--json") as proc:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # JSON Lines: one object per cycle
        assert first, proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGTERM)
        _rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert json.loads(first)["flows"]["customers"]["created"] == 1
    with open_store(f"sqlite:///{sb.tmp / 'tolken.db'}") as db:
        store = db.for_tenant("default")
        runs = store.last_runs()
    assert runs
    assert all(run.status in ("ok", "stopped") for run in runs)
    assert len(sb.pms_list("customers")) == 2  # the department and the customer, once each


def test_a_system_that_keeps_failing_exits_1_with_one_line(sb: Sandbox) -> None:
    """Every PMS request answered 503 (after the connector's retries): exit 1, one line naming
    the PMS, and the run is recorded as failed."""
    _seed(sb)
    config = sb.write_config()
    sb.control("pms", "faults", {"rate": 1.0, "statuses": [503]})
    try:
        code, _out, err = run_cli("sync", "--config", str(config), "--once")
    finally:
        sb.control("pms", "faults", {})
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: pms:")
    status = json.loads(run_cli("status", "--config", str(config), "--json")[1])
    assert status["last_run"]["status"] == "failed"
