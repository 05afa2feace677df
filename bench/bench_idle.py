"""Idle cycle and memory with 100,000 linked customers, and its growth to 300,000.

Set-up (:func:`measure`): the PowerOffice simulator's state is seeded
in-process (its own ``seed``) with 100,000 customers, and the reference PMS's
state is filled in-process (its own ``Store.create``) with the same customers
as PMS bodies, before ``tolken sandbox`` starts on those files. A first
``tolken sync --once`` then links all of them by the merge rule (a bench
mapping: the built-in one with the customer merge rule on the customer
number, because the sandbox's random organisation numbers and e-mails are
not unique at this size). That run is reported too: it is the cost of
first-linking 100,000 existing records.

Then, each in a child process that builds the engine first and measures only
``run_cycle``:

* **idle right after the bulk change** (``burst``);
* **idle**: a cycle with nothing changed (target: one changed-since list per
  resource per side, zero writes; CPU ≤ 50 ms), beside a bare ``httpx``
  script making the same changed-since requests (the baseline);
* **one edit**: one PMS customer renamed, so the cycle loads the flow's links;
* **reconcile**: a full-listing cycle over both sides.

Peak RSS of each (target ≤ 200 MiB) is set beside the RSS of the same
process after imports and engine set-up (its baseline). The whole set-up and
every cycle kind then run again at three times the links (300,000), and the
peak RSS growth of each kind is reported (target ≤ 15 %; the worst kind's
growth goes to ``bench/results.json`` as ``rss_growth_100k_to_300k``).

``python -m bench.bench_idle`` (part of ``make bench``); ``BENCH_SCALE``
scales the record count, ``BENCH_GROWTH=0`` skips the 300,000-link run. The
1,000,000-link run reuses :func:`measure`: ``python -m bench.million``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import httpx

from bench import machine_description, now_utc, write_section
from bench._synctools import (
    Measured,
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
GROWTH = os.environ.get("BENCH_GROWTH", "1") != "0"
GROWTH_FACTOR = 3  # 100,000 -> 300,000 links
GROWTH_TARGET = 0.15
ROOT = Path(__file__).parent.parent
OVERLAP = 2.0
IDLE_ROUNDS = 3
CPU_TARGET = 0.050
RSS_TARGET = 200.0  # MiB
CYCLES = ("burst", "idle", "edit", "reconcile")
_KIND_LABELS = {
    "first link": "first link (whole process)",
    "burst": "idle right after the bulk change",
    "idle": "idle, steady",
    "edit": "one PMS edit",
    "reconcile": "reconcile (full listings)",
}
# One measured child: its JSON line and the requests each system received meanwhile.
Run = tuple[dict[str, Any], dict[str, dict[str, int]]]
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
    pms = PMSStore(data_dir / "pms.sqlite3")
    try:
        seed(po, {"customers": customers})
        last = 0  # a page of documents at a time: a million would not fit in memory
        while page := po.query(
            "SELECT id, doc FROM customers WHERE id > ? ORDER BY id LIMIT 5000", (last,)
        ):
            for _, doc in page:
                pms.create("customer", _customer(json.loads(doc)))
            last = page[-1][0]
    finally:
        pms.close()
        po.close()


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


def _child(sandbox: SandboxProcess, args: list[str], factor: float) -> Run:
    before = sandbox.snapshot()
    measured = run_measured([sys.executable, "-m", MODULE, *args], timeout=1800 * factor, cwd=ROOT)
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


def _median(runs: list[Run]) -> dict[str, float]:
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


@dataclass(frozen=True)
class ScaleRun:
    """One set-up at ``links`` customers and the cycles measured on it."""

    links: int
    linked: int
    link_run: Measured
    link_requests: dict[str, dict[str, int]]
    cycles: dict[str, list[Run]]  # "burst", "idle", "bare", "edit", "reconcile": child runs
    phases: dict[str, float]  # wall seconds of each step, in the order they ran

    def peaks(self) -> dict[str, float]:
        """Peak RSS MiB of each cycle kind measured, the first link first."""
        peaks = {"first link": self.link_run.peak_rss_mib}
        for kind in CYCLES:
            if kind in self.cycles:
                peaks[kind] = max(r["peak_rss"] for r, _ in self.cycles[kind])
        return peaks

    def cpu_ms(self) -> dict[str, float]:
        """CPU ms of each cycle kind measured (the median of the runs; the first link's whole
        process)."""
        cpu = {"first link": self.link_run.cpu * 1000}
        for kind in CYCLES:
            if kind in self.cycles:
                cpu[kind] = statistics.median(r["cpu"] for r, _ in self.cycles[kind]) * 1000
        return cpu


def measure(links: int, kinds: Collection[str] = CYCLES) -> ScaleRun:
    """Fill both simulators with ``links`` customers, link them, then run the ``kinds`` of cycle."""
    factor = max(1.0, links / 100_000)  # the timeouts grow with the set-up
    phases: dict[str, float] = {}
    cycles: dict[str, list[Run]] = {}
    clock = time.monotonic()

    def phase(name: str) -> None:
        nonlocal clock
        phases[name] = time.monotonic() - clock
        clock = time.monotonic()

    with tempfile.TemporaryDirectory(prefix="tolken-bench-idle-") as tmp:
        work = Path(tmp)
        # In a child: the bench process must stay small (see run_measured).
        run_measured(
            [sys.executable, "-m", MODULE, "--populate", str(work / "sandbox"), str(links)],
            timeout=900 * factor,
            cwd=ROOT,
        )
        phase("fill both simulators in-process")
        with SandboxProcess(work / "sandbox") as sandbox:
            config = write_config(
                work / "tolken.yaml",
                sandbox,
                store=work / "tolken.db",
                overlap=OVERLAP,
                timeout=120,
                extra=f"mapping: {bench_mapping(work / 'mapping.yaml')}\n",
            )
            sync = [*tolken_command(), "sync", "--once", "--json", "--config", str(config)]
            phase("start the sandbox")
            before = sandbox.snapshot()
            link_run = run_measured(sync, timeout=3600 * factor)
            link_requests = {s: diff(before[s], sandbox.snapshot()[s]) for s in before}
            linked = link_run.last_json()["flows"]["customers"]["linked"]
            print(f"linked {linked:,} in {link_run.wall:.1f} s", flush=True)
            phase("first link")
            # One more cycle settles the cursors past the linking run, then wait out the overlap.
            run_measured(sync, timeout=600 * factor)
            time.sleep(OVERLAP + 0.5)
            phase("settle cycle, overlap waited out")
            if "burst" in kinds:
                # Right after a bulk change every record within the overlap of the newest is
                # listed again each cycle (the cursor only moves to timestamps it has seen).
                cycles["burst"] = [_child(sandbox, ["--cycle", str(config), "idle"], factor)]
                phase("idle right after the bulk change")
            # Steady state: a later change moves the PowerOffice position past the bulk.
            _touch_one_po(sandbox)
            for _ in range(2):  # the second reads back the first one's PMS write
                run_measured(sync, timeout=600 * factor)
            time.sleep(OVERLAP + 0.5)
            phase("one PowerOffice edit, two settle cycles, overlap waited out")
            if "idle" in kinds:
                feed_after = _feed_head(sandbox)
                cycles["idle"], cycles["bare"] = [], []
                for _ in range(IDLE_ROUNDS):
                    cycles["idle"].append(_child(sandbox, ["--cycle", str(config), "idle"], factor))
                    cycles["bare"].append(
                        _child(sandbox, ["--bare", sandbox.po_url, sandbox.pms_api, feed_after], 1)
                    )
                phase(f"idle and bare script, {IDLE_ROUNDS} rounds each")
            if "edit" in kinds:
                _rename_one(sandbox)
                cycles["edit"] = [_child(sandbox, ["--cycle", str(config), "edit"], factor)]
                phase("one PMS edit")
            if "reconcile" in kinds:
                cycles["reconcile"] = [
                    _child(sandbox, ["--cycle", str(config), "reconcile"], factor)
                ]
                phase("reconcile")
    return ScaleRun(links, linked, link_run, link_requests, cycles, phases)


def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _first_link(run: ScaleRun) -> str:
    return (
        f"First link of {run.links:,} existing records (`tolken sync --once`, whole process):\n"
        f"{run.link_run.wall:.0f} s wall, {run.link_run.cpu:.0f} s CPU, "
        f"peak RSS {run.link_run.peak_rss_mib:.0f} MiB,\n"
        f"{run.linked:,} linked; requests: {_fmt_requests(run.link_requests)}."
    )


def _phases(run: ScaleRun) -> str:
    return "; ".join(f"{name} {seconds:.0f} s" for name, seconds in run.phases.items())


def _cycle_rows(run: ScaleRun) -> str:
    """The table rows of the cycles ``run`` measured, in the order of :data:`CYCLES`."""
    rows = []
    for kind, runs in run.cycles.items():
        result, requests = runs[-1]
        if kind == "burst":
            label = f"idle right after the bulk change ({_listed(result)} re-listed)"
        elif kind in ("idle", "bare"):
            result = _median(runs)
            label = {"idle": "idle, steady", "bare": "bare httpx, same requests"}[kind]
            label += f" (median of {len(runs)})"
        else:
            label = _KIND_LABELS[kind]
        rows.append(_row(label, result, requests))
    return "\n".join(rows)


def growth(base: ScaleRun, grown: ScaleRun) -> dict[str, float]:
    """Peak RSS growth of each cycle kind from ``base`` to ``grown`` (0.08 is +8 %)."""
    peaks = grown.peaks()
    return {kind: peaks[kind] / peak - 1 for kind, peak in base.peaks().items() if kind in peaks}


def _percent(ratio: float) -> str:
    """``ratio`` as a signed whole percentage; one that rounds to nothing is ``0 %``."""
    return "0 %" if round(ratio * 100) == 0 else f"{ratio * 100:+.0f} %"


def _growth_part(base: ScaleRun, grown: ScaleRun) -> str:
    ratios = growth(base, grown)
    worst = max(ratios, key=ratios.__getitem__)
    before, after = base.peaks(), grown.peaks()
    cpu_before, cpu_after = base.cpu_ms(), grown.cpu_ms()
    rows = "\n".join(
        f"| {_KIND_LABELS[kind]} | {before[kind]:.0f} | {after[kind]:.0f} | {_percent(ratio)} "
        f"| {cpu_before[kind]:,.0f} | {cpu_after[kind]:,.0f} |"
        for kind, ratio in ratios.items()
    )
    return f"""### Growth from {base.links:,} to {grown.links:,} links

The same set-up and cycles again at {grown.links:,} customers (`BENCH_GROWTH=0`
skips this run). Steps (wall): {_phases(grown)}.

{_first_link(grown)}

| cycle | peak RSS at {base.links:,} MiB | at {grown.links:,} MiB | growth \
| CPU ms at {base.links:,} | at {grown.links:,} |
|---|---:|---:|---:|---:|---:|
{rows}

- **Worst peak RSS growth: {_percent(ratios[worst])}** ({_KIND_LABELS[worst]}; target
  ≤ {GROWTH_TARGET:.0%}: {_verdict(ratios[worst] <= GROWTH_TARGET)}).
"""


def _idle_section(run: ScaleRun, grown: ScaleRun | None, elapsed: float) -> str:
    """The ``sync-idle`` section of bench/RESULTS.md."""
    burst = run.cycles["burst"][0][0]
    edit, edit_requests = run.cycles["edit"][0]
    reconcile, reconcile_requests = run.cycles["reconcile"][0]
    idle, bare = run.cycles["idle"], run.cycles["bare"]
    idle_cpu = statistics.median(r["cpu"] for r, _ in idle)
    bare_cpu = statistics.median(r["cpu"] for r, _ in bare)
    idle_requests = idle[-1][1]
    reads, writes = (
        sum(x) for x in zip(*(data_requests(c) for c in idle_requests.values()), strict=True)
    )
    tokens = sum(v for c in idle_requests.values() for k, v in c.items() if "/OAuth/" in k)
    idle_rss = max(r["peak_rss"] for r, _ in idle)
    base_rss = max(r["rss_before"] for r, _ in idle)
    worst = max(run.peaks().values())
    cycles_worst = max(v for k, v in run.peaks().items() if k != "first link")
    scale_note = "" if SCALE == 1 else f"\n- **Scaled** to {SCALE:g} (`BENCH_SCALE={SCALE:g}`)."
    growth_part = "" if grown is None else "\n" + _growth_part(run, grown)
    return f"""## Sync: idle cycle and memory with {run.links:,} linked customers

- Machine: {machine_description()}
- Command: `make bench` (or `python -m bench.bench_idle`)
- Date: {now_utc()}; whole benchmark {elapsed:.0f} s
- Steps at {run.links:,} links (wall): {_phases(run)}
- Set-up: `tolken sandbox` in a child process (rate limit off) over files filled
  with the same {run.links:,} customers on both sides; a first `tolken sync --once`
  links them (bench mapping: customers merge on the customer number), one more
  settles the cursors, then `overlap_seconds` ({OVERLAP:g} s in this config) is
  waited out. Each measured cycle runs in a fresh child process that builds the
  engine first and times only `run_cycle` (CPU = `process_time`, all threads).{scale_note}

{_first_link(run)}

| cycle | wall ms | CPU ms | RSS after set-up MiB | peak RSS MiB | PowerOffice req. | PMS req. |
|---|---:|---:|---:|---:|---:|---:|
{_cycle_rows(run)}

- **Idle requests**: {reads} reads, {writes} writes, {tokens} token request(s):
  {_fmt_requests(idle_requests)} (target: one changed-since list per resource
  per side, zero writes: {_verdict(writes == 0 and reads <= 5)}).
- **Idle CPU: {idle_cpu * 1000:.0f} ms** (target ≤ {CPU_TARGET * 1000:.0f} ms:
  {_verdict(idle_cpu <= CPU_TARGET)}); ratio to the bare script making the same
  requests: {idle_cpu / bare_cpu:.1f}.
- Right after a bulk change (the {run.links:,} customers were seeded within a
  second), an idle cycle lists again every PowerOffice record changed within
  `overlap_seconds` of the newest one it has seen ({_listed(burst)} records:
  {burst["cpu"] * 1000:.0f} ms CPU, no writes), because the cursor only moves to
  timestamps PowerOffice reported (clock-skew safety) and the overlap is
  re-read from there; duplicates are then skipped by content hash. Once
  anything newer changes, the window holds only that (the steady rows).
- **Peak RSS of any cycle with {run.links:,} links, the first link included:
  {worst:.0f} MiB** at worst (target ≤ {RSS_TARGET:.0f} MiB: {_verdict(worst <= RSS_TARGET)});
  without the first link {cycles_worst:.0f} MiB; ratio to the
  same process before the cycle: idle {idle_rss / base_rss:.2f}, one edit
  {edit["peak_rss"] / edit["rss_before"]:.2f}, reconcile
  {reconcile["peak_rss"] / reconcile["rss_before"]:.2f}.
- One edit: {_fmt_requests(edit_requests)}.
- Reconcile: {_fmt_requests(reconcile_requests)}; counts
  {json.dumps({k: v for k, v in reconcile["report"]["flows"]["customers"].items() if v})}.
{growth_part}"""


def main() -> int:
    """Run the benchmark, print the figures and record them in bench/RESULTS.md."""
    started = time.monotonic()
    run = measure(LINKS)
    grown = measure(LINKS * GROWTH_FACTOR) if GROWTH else None
    section = _idle_section(run, grown, time.monotonic() - started)
    write_section("sync-idle", section)
    if SCALE == 1:
        idle_cpu = statistics.median(r["cpu"] for r, _ in run.cycles["idle"])
        burst_requests = run.cycles["burst"][0][1]
        record(
            {
                "idle_after_bulk_requests": sum(burst_requests["poweroffice"].values()),
                "peak_rss_mib_100k_links": max(run.peaks().values()),
                "idle_cpu_ms_100k_links": idle_cpu * 1000,
            }
        )
        if grown is not None:
            record({"rss_growth_100k_to_300k": max(growth(run, grown).values())})
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
