"""Crashes: a `sync --watch` killed with SIGKILL mid-way, then restarted, duplicates nothing."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.sync_harness import PMS_CONNECTORS, Sandbox, no_waits, running_sandbox
from tolken.store import open_store
from tolken.vocabulary import FlowId

# The PowerOffice resource each flow reads.
PO_RESOURCES: dict[FlowId, str] = {
    "departments": "Departments",
    "customers": "Customers",
    "projects": "Projects",
}


@pytest.fixture(params=PMS_CONNECTORS)
def sb(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """Fresh sandboxes; tolken reaches the PMS through the built-in connector, then `rest`."""
    with running_sandbox() as (po_url, pms_url), no_waits():
        yield Sandbox(po_url, pms_url, tmp_path, request.param)


def _posts(sb: Sandbox) -> int:
    stats = sb.stats("pms")
    return stats.get("POST /api/v1/customers", 0) + stats.get("POST /api/v1/projects", 0)


def _tolken(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("tolken")), *args]


@pytest.mark.slow
def test_sigkill_during_the_initial_sync_then_restart_gives_one_record_each(sb: Sandbox) -> None:
    """Killed three times at random moments of a first sync, tolken still makes exactly one PMS
    record per PowerOffice record (pending creates + idempotency keys)."""
    sb.control("poweroffice", "seed", {"departments": 5, "customers": 300, "projects": 40})
    config = sb.write_config()
    env = {**os.environ, "NO_COLOR": "1"}
    rng = random.Random(20251125)
    killed_at = []
    for _ in range(3):
        proc = subprocess.Popen(
            _tolken("sync", "--config", str(config), "--watch", "--json"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        # Kill at a random point of the creating, not while the process is still starting.
        target = _posts(sb) + rng.randint(1, 90)
        deadline = time.monotonic() + 60
        while _posts(sb) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(rng.uniform(0.001, 0.02))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        killed_at.append(_posts(sb))
    done = subprocess.run(
        _tolken("sync", "--config", str(config), "--once", "--json"),
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    po_ids = {
        flow: {str(r["Id"]) for r in sb.po_list(resource)}
        for flow, resource in PO_RESOURCES.items()
    }
    with open_store(f"sqlite:///{sb.tmp / 'tolken.db'}") as db:
        store = db.for_tenant("default")
        links = {flow: store.link_map(flow) for flow in po_ids}
        pending = store.pending_creates()
    pms_customers = sb.pms_list("customers")
    pms_projects = sb.pms_list("projects")
    for flow, ids in po_ids.items():
        assert set(links[flow]) == ids, flow
    assert len(pms_customers) == len(po_ids["departments"]) + len(po_ids["customers"])
    assert len(pms_projects) == len(po_ids["projects"])
    refs = Counter(r["external_ref"] for r in [*pms_customers, *pms_projects])
    assert refs.most_common(1)[0][1] == 1
    assert pending == []
    assert killed_at[0] > 0, "the first kill came before any create: the test proved nothing"
    assert killed_at[-1] < len(pms_customers) + len(pms_projects), killed_at
