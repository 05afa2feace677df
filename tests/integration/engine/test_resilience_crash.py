"""Crashes: ``tolken sync --watch`` killed with SIGKILL during an initial sync, then restarted.

Real processes all the way: ``tolken sandbox`` serves both systems, and the
sync runs as the ``tolken`` console script, killed (SIGKILL, no clean-up) at
random moments, most of them right after the PMS answered a create, the
window between a POST and the link that records it. The random seed is
printed; ``TOLKEN_TEST_CRASH_SEED=N`` replays a run.

The sync uses the default mapping without the customers' merge rules, so a
PMS record made just before a kill cannot be rescued by matching: only the
crash-safe create (pending row, ``Idempotency-Key``, lookup by key) keeps it
from being made twice.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from ruamel.yaml import YAML

import tolken.mapping
from synchelp import data_writes, divergences
from tolken.config import PMSSettings, PowerOfficeSettings
from tolken.connectors.pms import PMSClient
from tolken.connectors.poweroffice import PowerOfficeClient
from tolken.mapping import load_mapping
from tolken.sandbox import credentials
from tolken.store import open_store

CUSTOMERS = 1500
KILL_ROUNDS = 4
CRASH_SEED = int(os.environ.get("TOLKEN_TEST_CRASH_SEED", "4711"))
CREATE = "POST /api/v1/customers"


def _tolken(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("tolken")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-c", "from tolken.cli import main; main()", *args]


@dataclass
class RunningSandbox:
    po_url: str
    pms_url: str  # ends in /api/v1

    def control(self, system: str, path: str, body: Any = None) -> Any:
        base = self.po_url if system == "poweroffice" else self.pms_url.removesuffix("/api/v1")
        url = f"{base}/_sandbox/{path}"
        response = httpx.get(url) if body is None else httpx.post(url, json=body)
        response.raise_for_status()
        return response.json()

    def creates(self) -> int:
        return int(self.control("pms", "stats")["requests"].get(CREATE, 0))


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[RunningSandbox]:
    """``tolken sandbox`` on free ports, in its own process."""
    command = _tolken(
        "sandbox", "--poweroffice-port", "0", "--pms-port", "0", "--data-dir", str(tmp_path / "sb")
    )
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        urls: dict[str, str] = {}
        lines: list[str] = []
        while len(urls) < 2:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"tolken sandbox did not start: {''.join(lines)}")
            lines.append(line)
            if " ready at " in line:
                url = line.split(" ready at ", 1)[1].split()[0]
                urls["pms" if line.startswith("Reference PMS") else "poweroffice"] = url
        yield RunningSandbox(urls["poweroffice"], urls["pms"])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _mapping_without_customer_rules(tmp: Path) -> Path:
    yaml = YAML()  # round trip: keeps the enum's boolean keys booleans
    data = yaml.load(Path(tolken.mapping.__file__).with_name("default.yaml"))
    data["flows"]["customers"]["merge_rules"] = []
    path = tmp / "mapping.yaml"
    yaml.dump(data, path)
    return path


def _write_config(tmp: Path, sb: RunningSandbox) -> Path:
    path = tmp / "tolken.yaml"
    path.write_text(
        f"store: sqlite:///{tmp / 'tolken.db'}\n"
        f"mapping: {_mapping_without_customer_rules(tmp)}\n"
        "poweroffice:\n"
        f"  base_url: {sb.po_url}/v2\n"
        f"  token_url: {sb.po_url}/OAuth/Token\n"
        f"  application_key: {credentials.APPLICATION_KEY}\n"
        f"  client_key: {credentials.CLIENT_KEY}\n"
        f"  subscription_key: {credentials.SUBSCRIPTION_KEY}\n"
        "  requests_per_second: 1000\n"
        "  timeout_seconds: 10\n"
        "pms:\n"
        f"  base_url: {sb.pms_url}\n"
        f"  api_key: {credentials.PMS_API_KEY}\n"
        "  timeout_seconds: 10\n"
        "sync:\n"
        "  interval_seconds: 0.2\n",
        encoding="utf-8",
    )
    return path


def _kill_during_sync(sb: RunningSandbox, config: Path, rng: random.Random, log: list[str]) -> bool:
    """Start ``sync --watch``, SIGKILL it at a random moment; False when the sync had finished."""
    start = sb.creates()
    if start >= CUSTOMERS:
        return False
    output = config.with_name(f"watch-{len(log)}.log").open("wb")
    proc = subprocess.Popen(
        _tolken("sync", "--watch", "--config", str(config)),
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    try:
        if rng.random() < 0.25:
            # Anywhere in start-up, token, listing or the first creates.
            delay = rng.uniform(0.3, 2.0)
            time.sleep(delay)
            moment = f"after {delay:.2f} s"
        else:
            # Right after the PMS answered a create: the POST-to-link window.
            target = min(start + rng.randint(50, 400), CUSTOMERS - 1)
            deadline = time.monotonic() + 20
            while sb.creates() < target and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.02))
            moment = f"after create {sb.creates()} (aimed at {target})"
        assert proc.poll() is None, f"sync --watch exited by itself with {proc.returncode}"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        output.close()
    if sb.creates() == start:
        tail = Path(str(output.name)).read_text(errors="replace")[-2000:]
        log.append(f"no create in this round; sync --watch said:\n{tail}")
    log.append(f"killed {moment}; {sb.creates()} PMS creates so far")
    return True


def _sync_once(config: Path) -> dict[str, Any]:
    done = subprocess.run(
        _tolken("sync", "--once", "--json", "--config", str(config)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


@pytest.mark.slow
def test_sync_killed_at_random_moments_ends_with_one_pms_record_per_customer(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """SIGKILLing sync --watch midway through 1,500 creates, then restarting, makes no duplicate."""
    print(f"crash seed {CRASH_SEED} (set TOLKEN_TEST_CRASH_SEED to replay)")
    rng = random.Random(CRASH_SEED)
    sandbox.control("poweroffice", "settings", {"rate_limit_per_second": None})
    sandbox.control("poweroffice", "seed", {"customers": CUSTOMERS})
    config = _write_config(tmp_path, sandbox)

    log: list[str] = []
    for _ in range(KILL_ROUNDS):
        if not _kill_during_sync(sandbox, config, rng, log):
            break
    print("\n".join(log))
    assert len(log) >= 2, f"the sync finished before two kills: {log}"

    # Restart until a run has nothing left to create (the first finishes the sync).
    for _ in range(3):
        report = _sync_once(config)
        customers = report["flows"]["customers"]
        if customers["created"] == 0 and customers["linked"] == 0:
            break
    assert customers["failed"] == 0, report
    before = sandbox.control("pms", "stats")["requests"]
    _sync_once(config)
    after = sandbox.control("pms", "stats")["requests"]
    assert data_writes({k: v - before.get(k, 0) for k, v in after.items()}) == {}

    po_settings = PowerOfficeSettings(
        base_url=f"{sandbox.po_url}/v2",
        token_url=f"{sandbox.po_url}/OAuth/Token",
        application_key=SecretStr(credentials.APPLICATION_KEY),
        client_key=SecretStr(credentials.CLIENT_KEY),
        subscription_key=SecretStr(credentials.SUBSCRIPTION_KEY),
        requests_per_second=1000.0,
    )
    pms_settings = PMSSettings(base_url=sandbox.pms_url, api_key=SecretStr(credentials.PMS_API_KEY))
    db = open_store(f"sqlite:///{tmp_path / 'tolken.db'}")
    store = db.for_tenant("default")
    try:
        with PowerOfficeClient(po_settings) as po, PMSClient(pms_settings) as pms:
            pms_customers = [r.data for r in pms.list("customers")]
            problems = divergences(po, pms, store, load_mapping(tmp_path / "mapping.yaml"))
        links = store.list_links("customers")
        pending = store.pending_creates()
    finally:
        db.close()
    assert len(pms_customers) == CUSTOMERS
    for key in ("number", "external_ref"):
        repeated = {v: n for v, n in Counter(c[key] for c in pms_customers).items() if n > 1}
        assert repeated == {}, f"PMS customers sharing a {key}"
    assert len(links) == CUSTOMERS
    assert {link.pms_id for link in links} == {c["id"] for c in pms_customers}
    assert problems == [], "\n".join(problems[:20])
    assert pending == [], "creates left pending after the sync finished"
