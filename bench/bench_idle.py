"""Idle cycle and memory with 100,000 linked customers (figures 2 and 5 of issue 6).

Set-up: the PowerOffice simulator's state is seeded in-process (its own
``seed``) with 100,000 customers, and the reference PMS's state is filled
in-process (its own ``Store.create``) with the same customers as PMS bodies,
before ``tolken sandbox`` starts on those files. A first ``tolken sync
--once`` then links all of them by the merge rule (a bench mapping: the
built-in one with the customer merge rule on the customer number, because the
sandbox's random organisation numbers and e-mails are not unique at this
size). That run is reported too: it is the cost of first-linking 100,000
existing records.

Then, each in a child process that builds the engine first and measures only
``run_cycle``:

* **idle**: a cycle with nothing changed (target: one changed-since list per
  resource per side, zero writes; CPU ≤ 100 ms), beside a bare ``httpx``
  script making the same changed-since requests (the baseline);
* **one edit**: one PMS customer renamed, so the cycle loads the flow's links;
* **reconcile**: a full-listing cycle over both sides.

Peak RSS of each (target ≤ 250 MB) is set beside the RSS of the same
process after imports and engine set-up (its baseline). ``BENCH_SCALE``
scales the record count.

``python -m bench.bench_idle`` (part of ``make bench``).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import httpx

from bench import machine_description, now_utc, write_section
from bench._synctools import (
    SandboxProcess,
    data_requests,
    diff,
    peak_rss_mib,
    run_measured,
    tolken_command,
    write_config,
)
from bench.results import record

MODULE = "bench.bench_idle"
SCALE = float(os.environ.get("BENCH_SCALE", "1"))
LINKS = int(100_000 * SCALE)
OVERLAP = 2.0
IDLE_ROUNDS = 3
CPU_TARGET = 0.050
RSS_TARGET = 200.0  # MiB
_OLD_RULES = """    merge_rules:
      - {poweroffice: OrganizationNumber, pms: organization_number, normalise: digits}
      - poweroffice: EmailAddress
        pms: email
        normalise: casefold
        when: {kind: person}
"""
_NUMBER_RULE = """    merge_rules:
      - {poweroffice: Number, pms: number, normalise: exact}
"""


def bench_mapping(path: Path) -> Path:
    """The built-in mapping with the customers' merge rule on the customer number."""
    text = resources.files("tolken.mapping").joinpath("default.yaml").read_text(encoding="utf-8")
    if _OLD_RULES not in text:
        raise RuntimeError("the built-in mapping's customer merge rules changed; update the bench")
    path.write_text(text.replace(_OLD_RULES, _NUMBER_RULE, 1), encoding="utf-8")
    return path


def populate(data_dir: Path, customers: int) -> None:
    """Both simulators' files with the same ``customers`` (before the sandbox starts)."""
    from bench.baseline_sync import _customer
    from tolken.sandbox.pms.db import Store as PMSStore
    from tolken.sandbox.poweroffice.db import Store as POStore
    from tolken.sandbox.poweroffice.seed import seed

    data_dir.mkdir(parents=True, exist_ok=True)
    po = POStore(data_dir / "poweroffice.sqlite3")  # the default client's file
    try:
        seed(po, {"customers": customers})
        docs = [json.loads(doc) for (doc,) in po.query("SELECT doc FROM customers ORDER BY id")]
    finally:
        po.close()
    pms = PMSStore(data_dir / "pms.sqlite3")
    try:
        for doc in docs:
            pms.create("customer", _customer(doc))
    finally:
        pms.close()


def _maxrss_mib() -> float:
    return peak_rss_mib()


def _cycle_child(config_path: str, kind: str) -> int:
    """Child: build the engine, then time one cycle (``idle``/``edit`` or ``reconcile``)."""
    from tolken.compose import open_engine
    from tolken.config import load_config

    listed = 0
    with open_engine(load_config(config_path)) as engine:
        po_list = engine.poweroffice.list

        def counting_list(resource: str, **kwargs: Any) -> Iterator[Any]:
            nonlocal listed
            for record in po_list(resource, **kwargs):
                listed += 1
                yield record

        engine.poweroffice.list = counting_list  # type: ignore[method-assign]
        rss_before = _maxrss_mib()
        wall, cpu = time.perf_counter(), time.process_time()
        report = engine.run_cycle(reconcile=kind == "reconcile")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        json.dumps(
            {
                "wall": wall,
                "cpu": cpu,
                "rss_before": rss_before,
                "peak_rss": _maxrss_mib(),
                "listed": listed,
                "report": report.to_json(),
            }
        )
    )
    return 0


def _bare_idle_child(po_url: str, pms_api: str, feed_after: str) -> int:
    """Child baseline: the changed-since requests of an idle cycle, with plain httpx."""
    from tolken.sandbox import credentials

    with httpx.Client(timeout=60) as http:
        rss_before = _maxrss_mib()
        wall, cpu = time.perf_counter(), time.process_time()
        token = http.post(
            f"{po_url}/OAuth/Token",
            auth=(credentials.APPLICATION_KEY, credentials.CLIENT_KEY),
            headers={"Ocp-Apim-Subscription-Key": credentials.SUBSCRIPTION_KEY},
            data={"grant_type": "client_credentials"},
        ).json()["access_token"]
        headers = {
            "Authorization": f"Bearer {token}",
            "Ocp-Apim-Subscription-Key": credentials.SUBSCRIPTION_KEY,
        }
        since = time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime())
        for name in ("Departments", "Customers", "Projects"):
            http.get(
                f"{po_url}/v2/{name}",
                params={"lastChangedDateTimeOffsetGreaterThan": since, "PageSize": 5000},
                headers=headers,
            ).raise_for_status()
        pms_headers = {"Authorization": f"Bearer {credentials.PMS_API_KEY}"}
        for _ in ("customers", "projects"):
            http.get(
                f"{pms_api}/changes",
                params={"after": feed_after, "limit": 1000},
                headers=pms_headers,
            ).raise_for_status()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        json.dumps({"wall": wall, "cpu": cpu, "rss_before": rss_before, "peak_rss": _maxrss_mib()})
    )
    return 0


def _child(sandbox: SandboxProcess, args: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    before = sandbox.snapshot()
    measured = run_measured(
        [sys.executable, "-m", MODULE, *args], timeout=1800, cwd=Path(__file__).parent.parent
    )
    after = sandbox.snapshot()
    result: dict[str, Any] = measured.last_json()
    return result, {s: diff(before[s], after[s]) for s in before}


def _feed_head(sandbox: SandboxProcess) -> str:
    from tolken.sandbox import credentials

    after, head = 0, 0
    while True:
        page = sandbox.http.get(
            f"{sandbox.pms_api}/changes",
            params={"after": after, "limit": 1000},
            headers={"Authorization": f"Bearer {credentials.PMS_API_KEY}"},
        ).json()
        if not page["items"]:
            return str(head)
        head = after = max(item["seq"] for item in page["items"])


def _median(runs: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, float]:
    return {
        "wall": statistics.median(r["wall"] for r, _ in runs),
        "cpu": statistics.median(r["cpu"] for r, _ in runs),
        "rss_before": max(r["rss_before"] for r, _ in runs),
        "peak_rss": max(r["peak_rss"] for r, _ in runs),
    }


def _row(label: str, result: dict[str, Any], requests: dict[str, dict[str, int]]) -> str:
    return (
        f"| {label} | {result['wall'] * 1000:.0f} | {result['cpu'] * 1000:.0f} "
        f"| {result['rss_before']:.0f} | {result['peak_rss']:.0f} "
        f"| {sum(requests['poweroffice'].values())} | {sum(requests['pms'].values())} |"
    )


def _listed(result: dict[str, Any]) -> str:
    return f"{result.get('listed', 0):,}"


def _fmt_requests(requests: dict[str, dict[str, int]]) -> str:
    parts = []
    for system, counts in requests.items():
        inner = ", ".join(f"`{k}` {v:,}" for k, v in counts.items()) or "none"
        parts.append(f"{'PowerOffice' if system == 'poweroffice' else 'PMS'}: {inner}")
    return "; ".join(parts)


def _touch_one_po(sandbox: SandboxProcess) -> None:
    from tolken.config import PowerOfficeSettings
    from tolken.connectors.poweroffice import PowerOfficeClient
    from tolken.sandbox import credentials

    settings = PowerOfficeSettings(
        base_url=f"{sandbox.po_url}/v2",
        token_url=f"{sandbox.po_url}/OAuth/Token",
        application_key=credentials.APPLICATION_KEY,
        client_key=credentials.CLIENT_KEY,
        subscription_key=credentials.SUBSCRIPTION_KEY,
        requests_per_second=1000,
    )
    with PowerOfficeClient(settings) as client:
        first = next(iter(client.list("Customers")))
        client.update("Customers", first.id, {"Name": f"{first.data['Name']} (touched)"})


def _rename_one(sandbox: SandboxProcess) -> None:
    from tolken.sandbox import credentials

    headers = {"Authorization": f"Bearer {credentials.PMS_API_KEY}"}
    first = sandbox.http.get(
        f"{sandbox.pms_api}/customers", params={"limit": 1}, headers=headers
    ).json()["items"][0]
    sandbox.http.patch(
        f"{sandbox.pms_api}/customers/{first['id']}",
        content=json.dumps({"name": f"{first['name']} (renamed)"}),
        headers={**headers, "Content-Type": "application/merge-patch+json"},
    ).raise_for_status()


def main() -> int:
    """Run the benchmark, print the figures and record them in bench/RESULTS.md."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tolken-bench-idle-") as tmp:
        work = Path(tmp)
        populate_started = time.monotonic()
        # In a child: the bench process must stay small (see run_measured).
        run_measured(
            [sys.executable, "-m", MODULE, "--populate", str(work / "sandbox"), str(LINKS)],
            timeout=900,
            cwd=Path(__file__).parent.parent,
        )
        populate_seconds = time.monotonic() - populate_started
        with SandboxProcess(work / "sandbox") as sandbox:
            config = write_config(
                work / "tolken.yaml",
                sandbox,
                store=work / "tolken.db",
                overlap=OVERLAP,
                timeout=120,
                extra=f"mapping: {bench_mapping(work / 'mapping.yaml')}\n",
            )
            before = sandbox.snapshot()
            link_run = run_measured(
                [*tolken_command(), "sync", "--once", "--json", "--config", str(config)],
                timeout=3600,
            )
            link_requests = {s: diff(before[s], sandbox.snapshot()[s]) for s in before}
            link_report = link_run.last_json()
            linked = link_report["flows"]["customers"]["linked"]
            print(f"linked {linked:,} in {link_run.wall:.1f} s", flush=True)
            # One more cycle settles the cursors past the linking run, then wait out the overlap.
            run_measured(
                [*tolken_command(), "sync", "--once", "--json", "--config", str(config)],
                timeout=600,
            )
            time.sleep(OVERLAP + 0.5)
            # Right after a bulk change every record within the overlap of the newest is
            # listed again each cycle (the cursor only moves to timestamps it has seen).
            burst, burst_requests = _child(sandbox, ["--cycle", str(config), "idle"])
            # Steady state: a later change moves the PowerOffice position past the bulk.
            _touch_one_po(sandbox)
            for _ in range(2):  # the second reads back the first one's PMS write
                run_measured(
                    [*tolken_command(), "sync", "--once", "--json", "--config", str(config)],
                    timeout=600,
                )
            time.sleep(OVERLAP + 0.5)
            idle: list[tuple[dict[str, Any], dict[str, Any]]] = []
            bare: list[tuple[dict[str, Any], dict[str, Any]]] = []
            feed_after = _feed_head(sandbox)
            for _ in range(IDLE_ROUNDS):
                idle.append(_child(sandbox, ["--cycle", str(config), "idle"]))
                bare.append(
                    _child(sandbox, ["--bare", sandbox.po_url, sandbox.pms_api, feed_after])
                )
            _rename_one(sandbox)
            edit, edit_requests = _child(sandbox, ["--cycle", str(config), "edit"])
            reconcile, reconcile_requests = _child(sandbox, ["--cycle", str(config), "reconcile"])
    elapsed = time.monotonic() - started
    idle_cpu = statistics.median(r["cpu"] for r, _ in idle)
    bare_cpu = statistics.median(r["cpu"] for r, _ in bare)
    idle_requests = idle[-1][1]
    reads, writes = (
        sum(x) for x in zip(*(data_requests(c) for c in idle_requests.values()), strict=True)
    )
    tokens = sum(v for c in idle_requests.values() for k, v in c.items() if "/OAuth/" in k)
    idle_rss = max(r["peak_rss"] for r, _ in idle)
    base_rss = max(r["rss_before"] for r, _ in idle)
    cycles_worst = max(idle_rss, burst["peak_rss"], edit["peak_rss"], reconcile["peak_rss"])
    worst = max(cycles_worst, link_run.peak_rss_mib)

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    rows = "\n".join(
        [
            _row(
                f"idle right after the bulk change ({_listed(burst)} re-listed)",
                burst,
                burst_requests,
            ),
            _row(f"idle, steady (median of {IDLE_ROUNDS})", _median(idle), idle_requests),
            _row("bare httpx, same requests (median)", _median(bare), bare[-1][1]),
            _row("one PMS edit", edit, edit_requests),
            _row("reconcile (full listings)", reconcile, reconcile_requests),
        ]
    )
    scale_note = "" if SCALE == 1 else f"\n- **Scaled** to {SCALE:g} (`BENCH_SCALE={SCALE:g}`)."
    section = f"""## Sync: idle cycle and memory with {LINKS:,} linked customers

- Machine: {machine_description()}
- Command: `make bench` (or `python -m bench.bench_idle`)
- Date: {now_utc()}; whole benchmark {elapsed:.0f} s (filling both simulators in-process
  {populate_seconds:.0f} s)
- Set-up: `tolken sandbox` in a child process (rate limit off) over files filled
  with the same {LINKS:,} customers on both sides; a first `tolken sync --once`
  links them (bench mapping: customers merge on the customer number), one more
  settles the cursors, then `overlap_seconds` ({OVERLAP:g} s in this config) is
  waited out. Each measured cycle runs in a fresh child process that builds the
  engine first and times only `run_cycle` (CPU = `process_time`, all threads).{scale_note}

First link of {LINKS:,} existing records (`tolken sync --once`, whole process):
{link_run.wall:.0f} s wall, {link_run.cpu:.0f} s CPU, peak RSS {link_run.peak_rss_mib:.0f} MiB,
{linked:,} linked; requests: {_fmt_requests(link_requests)}.

| cycle | wall ms | CPU ms | RSS after set-up MiB | peak RSS MiB | PowerOffice req. | PMS req. |
|---|---:|---:|---:|---:|---:|---:|
{rows}

- **Idle requests**: {reads} reads, {writes} writes, {tokens} token request(s):
  {_fmt_requests(idle_requests)} (target: one changed-since list per resource
  per side, zero writes: {verdict(writes == 0 and reads <= 5)}).
- **Idle CPU: {idle_cpu * 1000:.0f} ms** (target ≤ {CPU_TARGET * 1000:.0f} ms:
  {verdict(idle_cpu <= CPU_TARGET)}); ratio to the bare script making the same
  requests: {idle_cpu / bare_cpu:.1f}.
- Right after a bulk change (the {LINKS:,} customers were seeded within a
  second), an idle cycle lists again every PowerOffice record changed within
  `overlap_seconds` of the newest one it has seen ({_listed(burst)} records:
  {burst["cpu"] * 1000:.0f} ms CPU, no writes), because the cursor only moves to
  timestamps PowerOffice reported (clock-skew safety) and the overlap is
  re-read from there; duplicates are then skipped by content hash. Once
  anything newer changes, the window holds only that (the steady rows).
- **Peak RSS of any cycle with {LINKS:,} links, the first link included:
  {worst:.0f} MiB** at worst (target ≤ {RSS_TARGET:.0f} MiB: {verdict(worst <= RSS_TARGET)});
  without the first link {cycles_worst:.0f} MiB; ratio to the
  same process before the cycle: idle {idle_rss / base_rss:.2f}, one edit
  {edit["peak_rss"] / edit["rss_before"]:.2f}, reconcile
  {reconcile["peak_rss"] / reconcile["rss_before"]:.2f}.
- One edit: {_fmt_requests(edit_requests)}.
- Reconcile: {_fmt_requests(reconcile_requests)}; counts
  {json.dumps({k: v for k, v in reconcile["report"]["flows"]["customers"].items() if v})}.
"""
    write_section("sync-idle", section)
    record({"idle_after_bulk_requests": sum(burst_requests["poweroffice"].values())})
    if SCALE == 1:
        record({"peak_rss_mib_100k_links": worst, "idle_cpu_ms_100k_links": idle_cpu * 1000})
    print(section)
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--cycle":
        sys.exit(_cycle_child(sys.argv[2], sys.argv[3]))
    if len(sys.argv) >= 2 and sys.argv[1] == "--populate":
        populate(Path(sys.argv[2]), int(sys.argv[3]))
        sys.exit(0)
    if len(sys.argv) >= 2 and sys.argv[1] == "--bare":
        sys.exit(_bare_idle_child(sys.argv[2], sys.argv[3], sys.argv[4]))
    sys.exit(main())
