"""One edit: requests beyond an idle cycle, and time until the other side has it (figure 3).

Set-up: ``tolken sandbox`` in a child process (rate limit off) with
``CUSTOMERS`` customers, ``DEPARTMENTS`` departments and ``PROJECTS``
projects in PowerOffice, synchronised into the PMS by ``tolken sync --once``.

* **Requests**: an idle ``tolken sync --once`` beside one after a single
  field (a customer's name) changed in the PMS, and one after it changed in
  PowerOffice; the difference is counted by the simulators. Target ≤ 3.
* **Polling latency**: ``tolken sync --watch`` (``interval_seconds`` =
  ``INTERVAL``) runs while ``EDITS`` edits are made at random moments,
  alternating sides; each is timed until a GET on the other side shows the
  new value. Target ≤ interval + 0.5 s.
* **Webhook latency**: ``tolken serve`` (``interval_seconds`` = 60, so only a
  webhook can explain a fast sync) registers its receiver with the PMS;
  ``EDITS`` PMS edits are timed until PowerOffice has them. Target p95 ≤ 1 s.
  (PowerOffice has no webhooks, so this direction only.)

The baseline of the latencies is the bound they are held to (the interval, or
none for webhooks) and the cycle time of an idle cycle measured in the same
run. ``python -m bench.bench_edit`` (part of ``make bench``).
"""

from __future__ import annotations

import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench import machine_description, now_utc, write_section
from bench._synctools import SandboxProcess, diff, run_measured, tolken_command, write_config
from bench.results import record
from tolken.config import PMSSettings, PowerOfficeSettings
from tolken.connectors.pms import PMSClient
from tolken.connectors.poweroffice import PowerOfficeClient
from tolken.sandbox import credentials

CUSTOMERS, DEPARTMENTS, PROJECTS = 1000, 20, 200
INTERVAL = 2.0
EDITS = 20
OVERLAP = 2.0
EDIT_TIMEOUT = 20.0
REQUEST_TARGET = 3
WEBHOOK_TARGET = 1.0


def _clients(sandbox: SandboxProcess) -> tuple[PowerOfficeClient, PMSClient]:
    po = PowerOfficeClient(
        PowerOfficeSettings(
            base_url=f"{sandbox.po_url}/v2",
            token_url=f"{sandbox.po_url}/OAuth/Token",
            application_key=credentials.APPLICATION_KEY,
            client_key=credentials.CLIENT_KEY,
            subscription_key=credentials.SUBSCRIPTION_KEY,
            requests_per_second=1000,
        )
    )
    pms = PMSClient(PMSSettings(base_url=sandbox.pms_api, api_key=credentials.PMS_API_KEY))
    return po, pms


def _pairs(po: PowerOfficeClient, pms: PMSClient) -> list[tuple[str, str]]:
    """(PowerOffice id, PMS id) of the synchronised customers, by customer number."""
    by_number = {
        str(r.data.get("number")): r.id
        for r in pms.list("customers")
        if r.data.get("kind") != "department"
    }
    return [
        (r.id, by_number[str(r.data["Number"])])
        for r in po.list("Customers")
        if str(r.data["Number"]) in by_number
    ]


def _sync_once(sandbox: SandboxProcess, config: Path) -> dict[str, dict[str, int]]:
    before = sandbox.snapshot()
    run_measured(
        [*tolken_command(), "sync", "--once", "--json", "--config", str(config)], timeout=600
    )
    after = sandbox.snapshot()
    return {s: diff(before[s], after[s]) for s in before}


def _total(requests: dict[str, dict[str, int]]) -> int:
    return sum(n for counts in requests.values() for k, n in counts.items() if "/OAuth/" not in k)


def _extra(edit: dict[str, dict[str, int]], idle: dict[str, dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for system in edit:
        for key in set(edit[system]) | set(idle[system]):
            n = edit[system].get(key, 0) - idle[system].get(key, 0)
            if n and "/OAuth/" not in key:
                out[key] = n
    return dict(sorted(out.items()))


def _edit_and_wait(
    write: Callable[[str], None], read: Callable[[], Any], value: str
) -> float | None:
    """Write ``value``, then poll ``read`` until it returns it; seconds taken (None: timeout)."""
    started = time.perf_counter()
    write(value)
    while time.perf_counter() - started < EDIT_TIMEOUT:
        if read() == value:
            return time.perf_counter() - started
        time.sleep(0.01)
    return None


def _edits(
    po: PowerOfficeClient,
    pms: PMSClient,
    pairs: list[tuple[str, str]],
    sides: list[str],
    tag: str,
    rng: random.Random,
    pause: float,
) -> list[float | None]:
    latencies: list[float | None] = []
    for i, side in enumerate(sides):
        time.sleep(rng.uniform(0, pause))  # a random phase against the watch loop's cycles
        po_id, pms_id = pairs[rng.randrange(len(pairs))]
        value = f"Bench {tag} {i} {rng.randrange(10**6)}"
        if side == "pms":

            def write(v: str, i: str = pms_id) -> None:
                pms.update("customers", i, {"name": v})

            def read(i: str = po_id) -> Any:
                return po.get("Customers", i).data.get("Name")
        else:

            def write(v: str, i: str = po_id) -> None:
                po.update("Customers", i, {"Name": v})

            def read(i: str = pms_id) -> Any:
                return pms.get("customers", i).data.get("name")

        latencies.append(_edit_and_wait(write, read, value))
    return latencies


def _watch(command: list[str], ready: Callable[[], bool]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    deadline = time.monotonic() + 60
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{' '.join(command)} did not start")
        time.sleep(0.1)
    return proc


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stats(latencies: list[float | None]) -> dict[str, float]:
    done = sorted(x for x in latencies if x is not None)
    if not done:
        return {"n": 0, "lost": len(latencies), "p50": float("nan"), "p95": float("nan"), "max": 0}
    p95 = done[min(len(done) - 1, round(0.95 * (len(done) - 1)))]
    return {
        "n": len(done),
        "lost": len(latencies) - len(done),
        "p50": statistics.median(done),
        "p95": p95,
        "max": done[-1],
    }


def main() -> int:
    """Run the benchmark, print the figures and record them in bench/RESULTS.md."""
    started = time.monotonic()
    rng = random.Random(6)
    with tempfile.TemporaryDirectory(prefix="tolken-bench-edit-") as tmp:
        work = Path(tmp)
        with SandboxProcess(work / "sandbox") as sandbox:
            sandbox.seed(
                "poweroffice",
                {"customers": CUSTOMERS, "departments": DEPARTMENTS, "projects": PROJECTS},
            )
            config = write_config(
                work / "tolken.yaml",
                sandbox,
                store=work / "tolken.db",
                interval=INTERVAL,
                overlap=OVERLAP,
            )
            _sync_once(sandbox, config)
            po, pms = _clients(sandbox)
            with po, pms:
                pairs = _pairs(po, pms)
                # Move the PowerOffice position past the seeded bulk, then wait out the overlap.
                po.update("Customers", pairs[0][0], {"Name": "Bench settle"})
                _sync_once(sandbox, config)
                time.sleep(OVERLAP + 0.5)
                _sync_once(sandbox, config)  # reads the echo of the settle write
                idle = _sync_once(sandbox, config)
                idle_cycle = run_measured(
                    [*tolken_command(), "sync", "--once", "--json", "--config", str(config)],
                    timeout=600,
                )
                pms.update("customers", pairs[1][1], {"name": "Bench one PMS edit"})
                pms_edit = _sync_once(sandbox, config)
                pms_echo = _sync_once(sandbox, config)  # reads back its own PowerOffice write
                if po.get("Customers", pairs[1][0]).data.get("Name") != "Bench one PMS edit":
                    raise RuntimeError("the PMS edit did not reach PowerOffice")
                po.update("Customers", pairs[2][0], {"Name": "Bench one PowerOffice edit"})
                po_edit = _sync_once(sandbox, config)
                po_echo = _sync_once(sandbox, config)  # reads back its own PMS write
                if pms.get("customers", pairs[2][1]).data.get("name") != (
                    "Bench one PowerOffice edit"
                ):
                    raise RuntimeError("the PowerOffice edit did not reach the PMS")

                watch = _watch(
                    [*tolken_command(), "sync", "--watch", "--json", "--config", str(config)],
                    lambda: True,
                )
                try:
                    time.sleep(INTERVAL + 1)
                    sides = ["pms" if i % 2 == 0 else "poweroffice" for i in range(EDITS)]
                    polling = _edits(po, pms, pairs, sides, "poll", rng, INTERVAL)
                finally:
                    _stop(watch)

                port = _free_port()
                hook_config = write_config(
                    work / "serve.yaml",
                    sandbox,
                    store=work / "tolken.db",
                    interval=60,
                    overlap=OVERLAP,
                    extra=(
                        "serve:\n  host: 127.0.0.1\n"
                        f"  port: {port}\n  token: bench-dashboard-token\n"
                        f"  public_url: http://127.0.0.1:{port}\n"
                        "  webhook_secret: bench-webhook-secret\n"
                    ),
                )

                def healthy() -> bool:
                    try:
                        url = f"http://127.0.0.1:{port}/healthz"
                        return httpx.get(url, timeout=1).status_code == 200
                    except httpx.HTTPError:
                        return False

                serve = _watch([*tolken_command(), "serve", "--config", str(hook_config)], healthy)
                try:
                    time.sleep(3)  # the first cycle (started with the server) is done
                    webhook = _edits(po, pms, pairs, ["pms"] * EDITS, "hook", rng, 1.0)
                finally:
                    _stop(serve)
    elapsed = time.monotonic() - started
    poll, hook = _stats(polling), _stats(webhook)
    poll_pms = _stats([x for x, s in zip(polling, sides, strict=True) if s == "pms"])
    poll_po = _stats([x for x, s in zip(polling, sides, strict=True) if s != "pms"])
    extra_pms, extra_po = _extra(pms_edit, idle), _extra(po_edit, idle)
    echo_pms, echo_po = _extra(pms_echo, idle), _extra(po_echo, idle)
    record(
        {
            "pms_edit_requests": sum(extra_pms.values()),
            "poweroffice_edit_requests": sum(extra_po.values()),
        }
    )

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    def fmt(counts: dict[str, int]) -> str:
        return ", ".join(f"`{k}` {v:+d}" for k, v in counts.items()) or "none"

    poll_ok = verdict(poll["lost"] == 0 and poll["max"] <= INTERVAL + 0.5)
    hook_ok = verdict(hook["lost"] == 0 and hook["p95"] <= WEBHOOK_TARGET)
    latency_rows = "\n".join(
        f"| {mode} | {direction} | {s['p50']:.2f} | {s['p95']:.2f} | {s['max']:.2f} "
        f"| {s['lost']} | {target} |"
        for mode, direction, s, target in (
            (
                f"polling, interval {INTERVAL:g} s",
                "both",
                poll,
                f"max ≤ {INTERVAL + 0.5:g} s: {poll_ok}",
            ),
            ("polling", "PMS → PowerOffice", poll_pms, ""),
            ("polling", "PowerOffice → PMS", poll_po, ""),
            (
                "webhook (`tolken serve`, interval 60 s)",
                "PMS → PowerOffice",
                hook,
                f"p95 ≤ {WEBHOOK_TARGET:g} s: {hook_ok}",
            ),
        )
    )
    pms_ok = verdict(sum(extra_pms.values()) <= REQUEST_TARGET)
    po_ok = verdict(sum(extra_po.values()) <= REQUEST_TARGET)
    request_rows = "\n".join(
        [
            "| edit | extra requests, edit cycle | which "
            "| extra, next cycle (reading back its own write) | which |",
            "|---|---:|---|---:|---|",
            *(
                f"| {label} | {sum(e.values())} | {fmt(e)} | {sum(n.values())} | {fmt(n)} |"
                for label, e, n in (
                    ("name changed in the PMS", extra_pms, echo_pms),
                    ("name changed in PowerOffice", extra_po, echo_po),
                )
            ),
        ]
    )
    section = f"""## Sync: one edit (requests, and time until the other side has it)

- Machine: {machine_description()}
- Command: `make bench` (or `python -m bench.bench_edit`)
- Date: {now_utc()}; whole benchmark {elapsed:.0f} s
- Set-up: `tolken sandbox` in a child process (rate limit off), {CUSTOMERS:,}
  customers, {DEPARTMENTS} departments and {PROJECTS} projects synchronised by
  `tolken sync --once`; `overlap_seconds` {OVERLAP:g}. The edited field is a
  customer's name; the other side is read with a GET every 10 ms.

**Requests beyond an idle cycle** (each a `tolken sync --once`; idle: {_total(idle)}
data requests, {idle_cycle.wall:.2f} s for the whole process):

{request_rows}

- Target ≤ {REQUEST_TARGET} (edit cycle): PMS edit {pms_ok},
  PowerOffice edit {po_ok}. A write to the
  PMS shows up in its changes feed, so the next cycle's feed page (one page
  with `has_more: false`, as when idle) lists it and tolken GETs the record to
  recognise its own write (no write follows); a write to
  PowerOffice is re-read inside the same changed-since list (no extra request).

**Latency in watch mode** ({EDITS} edits each, random moments):

| mode | direction | p50 s | p95 s | max s | not synced in {EDIT_TIMEOUT:g} s | target |
|---|---|---:|---:|---:|---:|---|
{latency_rows}

- Ratios: polling max / (interval + 0.5 s) = {poll["max"] / (INTERVAL + 0.5):.2f};
  webhook p95 / 1 s = {hook["p95"] / WEBHOOK_TARGET:.2f}; an idle
  `tolken sync --once` process (start-up, token, lists) took {idle_cycle.wall:.2f} s.
"""
    write_section("sync-edit", section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
