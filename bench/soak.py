"""Soak: random edits on both sides while ``tolken sync --watch`` runs through faults and kills.

``python -m bench.soak`` (``make soak``); ``SOAK_SECONDS`` sets the length of
the edit phase (default 150 s), ``SOAK_SEED`` the random seed, ``SOAK_KEEP=DIR``
keeps the working files (store, watch output). Exit 1 when a correctness
figure is not zero.

1. ``tolken sandbox`` (child process, rate limit off) with PowerOffice
   customers, departments and projects, synchronised once without faults.
2. ``tolken sync --watch`` runs (``interval_seconds`` 0.5) while this script
   makes random edits, one at a time at random intervals: PowerOffice
   customer creates, field edits on either side (customers and projects),
   archives on either side, PMS-only customer creates (they stay PMS-only:
   ``create_in_poweroffice`` is off), and conflicting edits (the same field of
   one linked pair changed on both sides in quick succession). Both
   simulators answer 8 % of requests with 429/500/502/503 and drop 2 % (the
   client times out), and the watch process is killed with SIGKILL three times
   at random moments and started again. Faults hit this script's own edits
   too; an edit whose outcome is unknown is counted apart, and the checks
   below use the systems' actual final state.
3. Faults off; the watch stops; a quiet run: ``sync --once --reconcile``, then
   ``sync --once`` until a cycle writes nothing.
4. Checks, per flow: every PowerOffice record is linked to exactly one
   existing PMS record (else **lost**); no PMS record is linked twice, no two
   PMS records share a number/code or ``external_ref``, and no PMS record is
   left unlinked except the PMS-only ones this script made (else
   **duplicates**); every mapped field of every link agrees (else
   **divergent fields**); every PMS-only record this script made still
   exists (else lost). Every conflict a cycle reported is in the store, and
   no failure is left open (else **wrong failures**).

Faults injected are exact: the fault draws are seeded, so they are replayed
over the number of requests each simulator counted while faults were on.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import machine_description, now_utc, write_section
from bench._synctools import SandboxProcess, diff, run_measured, tolken_command, write_config
from tolken.config import PMSSettings, PowerOfficeSettings
from tolken.connectors.pms import PMSClient
from tolken.connectors.poweroffice import PowerOfficeClient
from tolken.errors import TolkenError
from tolken.sandbox import credentials
from tolken.sandbox.pms.seed import organization_number

SECONDS = float(os.environ.get("SOAK_SECONDS", "150"))
SEED = int(os.environ.get("SOAK_SEED", "6"))
CUSTOMERS, DEPARTMENTS, PROJECTS = 200, 10, 40
EDITS_PER_SECOND = 3.0
FAULT_RATE, DROP_RATE = 0.08, 0.02
FAULT_STATUSES = [429, 500, 502, 503]
RESTARTS = 3
PMS_ONLY = "Soak PMS-only"
_PMS_KEY = {"departments": "number", "customers": "number", "projects": "code"}


@dataclass
class Edits:
    """What the edit loop did."""

    made: Counter[str] = field(default_factory=Counter)
    uncertain: Counter[str] = field(default_factory=Counter)
    pms_only: list[str] = field(default_factory=list)


class Editor:
    """Makes one random edit at a time through tolken's own connectors (they retry faults)."""

    def __init__(self, sandbox: SandboxProcess, rng: random.Random) -> None:
        self.rng = rng
        self.po = PowerOfficeClient(
            PowerOfficeSettings(
                base_url=f"{sandbox.po_url}/v2",
                token_url=f"{sandbox.po_url}/OAuth/Token",
                application_key=credentials.APPLICATION_KEY,
                client_key=credentials.CLIENT_KEY,
                subscription_key=credentials.SUBSCRIPTION_KEY,
                requests_per_second=1000,
                timeout_seconds=3,
            )
        )
        self.pms = PMSClient(
            PMSSettings(
                base_url=sandbox.pms_api, api_key=credentials.PMS_API_KEY, timeout_seconds=3
            )
        )
        self.edits = Edits()
        self.customer_pairs: list[tuple[str, str]] = []
        self.project_pairs: list[tuple[str, str]] = []
        self.po_customers: list[str] = []
        self._serial = 0

    def load_pairs(self) -> None:
        """(PowerOffice id, PMS id) of the synchronised customers and projects."""
        pms_customers = {
            str(r.data.get("number")): r.id
            for r in self.pms.list("customers")
            if r.data.get("kind") != "department"
        }
        pms_projects = {str(r.data.get("code")): r.id for r in self.pms.list("projects")}
        for r in self.po.list("Customers"):
            self.po_customers.append(r.id)
            if str(r.data["Number"]) in pms_customers:
                self.customer_pairs.append((r.id, pms_customers[str(r.data["Number"])]))
        for r in self.po.list("Projects"):
            if str(r.data.get("Code")) in pms_projects:
                self.project_pairs.append((r.id, pms_projects[str(r.data["Code"])]))

    def close(self) -> None:
        self.po.close()
        self.pms.close()

    def _value(self, what: str) -> str:
        self._serial += 1
        return f"Soak {what} {self._serial}"

    def _phone(self) -> str:
        return f"+47 {self.rng.randint(40000000, 99999999)}"

    def one(self) -> None:
        """One random edit (or a conflicting pair of edits)."""
        kinds: list[tuple[str, Callable[[], None], float]] = [
            ("PowerOffice customer create", self.po_create, 0.12),
            ("PowerOffice field edit", self.po_edit, 0.25),
            ("PMS field edit", self.pms_edit, 0.25),
            ("PowerOffice archive", self.po_archive, 0.05),
            ("PMS archive", self.pms_archive, 0.05),
            ("PMS-only customer create", self.pms_create, 0.08),
            ("conflicting edit (both sides)", self.conflict, 0.20),
        ]
        name, action, _ = self.rng.choices(kinds, weights=[w for *_, w in kinds])[0]
        try:
            action()
        except TolkenError:
            self.edits.uncertain[name] += 1
        else:
            self.edits.made[name] += 1

    def po_create(self) -> None:
        name = self._value("customer")
        org = organization_number(self.rng)
        record = self.po.create(
            "Customers",
            {
                "Name": name,
                "OrganizationNumber": org,
                "PhoneNumber": self._phone(),
                "MailAddress": {"AddressLine1": "Soakveien 1", "ZipCode": "0150", "City": "Oslo"},
            },
            idempotency_key=f"soak-{SEED}-{org}",
        )
        self.po_customers.append(record.id)

    def po_edit(self) -> None:
        if self.rng.random() < 0.2 and self.project_pairs:
            po_id, _ = self.rng.choice(self.project_pairs)
            self.po.update("Projects", po_id, {"Name": self._value("project")})
            return
        po_id = self.rng.choice(self.po_customers)
        field_name = self.rng.choice(["Name", "PhoneNumber", "EmailAddress"])
        value = {
            "Name": self._value("name"),
            "PhoneNumber": self._phone(),
            "EmailAddress": f"soak{self._serial}@example.no",
        }[field_name]
        self._serial += 1
        self.po.update("Customers", po_id, {field_name: value})

    def pms_edit(self) -> None:
        if self.rng.random() < 0.2 and self.project_pairs:
            _, pms_id = self.rng.choice(self.project_pairs)
            self.pms.update("projects", pms_id, {"name": self._value("project")})
            return
        _, pms_id = self.rng.choice(self.customer_pairs)
        field_name = self.rng.choice(["name", "phone", "email"])
        value = {
            "name": self._value("name"),
            "phone": self._phone(),
            "email": f"soak{self._serial}@example.no",
        }[field_name]
        self._serial += 1
        self.pms.update("customers", pms_id, {field_name: value})

    def po_archive(self) -> None:
        po_id, _ = self.rng.choice(self.customer_pairs)
        self.po.update("Customers", po_id, {"IsArchived": True})

    def pms_archive(self) -> None:
        _, pms_id = self.rng.choice(self.customer_pairs)
        self.pms.update("customers", pms_id, {"active": False})

    def pms_create(self) -> None:
        self._serial += 1
        record = self.pms.create(
            "customers",
            {
                "kind": "company",
                "number": str(900000 + self._serial),
                "name": f"{PMS_ONLY} {self._serial}",
                "organization_number": organization_number(self.rng),
            },
            idempotency_key=f"soak-{SEED}-pms-{self._serial}",
        )
        self.edits.pms_only.append(record.id)

    def conflict(self) -> None:
        po_id, pms_id = self.rng.choice(self.customer_pairs)
        base = self._value("conflict")
        self.po.update("Customers", po_id, {"Name": f"{base} (PowerOffice)"})
        self.pms.update("customers", pms_id, {"name": f"{base} (PMS)"})


def _faults_injected(requests: int, seed: int) -> Counter[str]:
    """Replay the control surface's seeded draws (`SandboxControl.draw`) over ``requests``."""
    rng = random.Random(seed)
    out: Counter[str] = Counter()
    for _ in range(requests):
        if rng.random() < DROP_RATE:
            out["timeout"] += 1
            continue
        if rng.random() < FAULT_RATE:
            out[str(rng.choice(FAULT_STATUSES))] += 1
    return out


def _start_watch(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out, log.with_suffix(".err").open("ab") as err:
        return subprocess.Popen(
            [*tolken_command(), "sync", "--watch", "--json", "--config", str(config)],
            stdout=out,
            stderr=err,
        )


def _runs(config_path: Path) -> tuple[Counter[str], int, int]:
    """Cycles by status, conflicts the finished cycles counted, and conflicts in the store."""
    from tolken.config import load_config
    from tolken.store import open_store

    store = open_store(load_config(config_path).store)
    try:
        tenant = store.for_tenant("default")
        runs = tenant.last_runs(limit=1_000_000)
        statuses: Counter[str] = Counter(str(run.status) for run in runs)
        reported = sum(
            int(flow.get("conflicts", 0)) for run in runs for flow in (run.counts or {}).values()
        )
        return statuses, reported, len(tenant.list_conflicts())
    finally:
        store.close()


def _check(config_path: Path, pms_only: list[str]) -> dict[str, list[str]]:
    """Compare both systems and the store after the quiet run (see the module docstring)."""
    from tolken.compose import open_engine
    from tolken.config import load_config
    from tolken.engine.resolver import LinkResolver
    from tolken.mapping import belongs, project, to_pms_flat

    problems: dict[str, list[str]] = {
        "lost": [],
        "duplicates": [],
        "divergent": [],
        "wrong_failures": [],
    }
    with open_engine(load_config(config_path)) as engine:
        store, mapping = engine.store, engine.mapping
        resolver = LinkResolver(store)
        all_pms: set[str] = set()
        for flow_id in mapping.order():
            flow = mapping.flow(flow_id)
            po_by_id = {r.id: r for r in engine.poweroffice.list(flow.poweroffice)}
            pms_records = list(engine.pms.list(flow.pms))
            all_pms |= {r.id for r in pms_records}
            pms_by_id = {r.id: r for r in pms_records if belongs(flow, r.data)}
            links = store.list_links(flow_id)
            po_linked = Counter(link.poweroffice_id for link in links)
            pms_linked = Counter(link.pms_id for link in links)
            for po_id in po_by_id:
                if po_linked[po_id] == 0:
                    problems["lost"].append(f"{flow_id}: PowerOffice {po_id} has no PMS record")
                elif po_linked[po_id] > 1:
                    problems["duplicates"].append(f"{flow_id}: PowerOffice {po_id} linked twice")
            for pms_id, n in pms_linked.items():
                if n > 1:
                    problems["duplicates"].append(f"{flow_id}: PMS {pms_id} linked {n} times")
            for pms_id, record in pms_by_id.items():
                if pms_linked[pms_id] == 0 and not str(record.data.get("name", "")).startswith(
                    PMS_ONLY
                ):
                    problems["duplicates"].append(f"{flow_id}: PMS {pms_id} is not linked")
            for key in (_PMS_KEY[flow_id], "external_ref"):
                seen = Counter(r.data.get(key) for r in pms_by_id.values() if r.data.get(key))
                problems["duplicates"] += [
                    f"{flow_id}: {n} PMS records with {key} {value!r}"
                    for value, n in seen.items()
                    if n > 1
                ]
            for link in links:
                po_record, pms_record = (
                    po_by_id.get(link.poweroffice_id),
                    pms_by_id.get(link.pms_id),
                )
                if po_record is None or pms_record is None:
                    side = "PowerOffice" if po_record is None else "PMS"
                    problems["lost"].append(
                        f"{flow_id}: link {link.poweroffice_id} <-> {link.pms_id}: no {side} record"
                    )
                    continue
                want = to_pms_flat(flow, po_record.data, resolver)
                have = project(flow, pms_record.data)
                problems["divergent"] += [
                    f"{flow_id}: {link.poweroffice_id} <-> {link.pms_id} {path}: "
                    f"PowerOffice {value!r} != PMS {have.get(path)!r}"
                    for path, value in sorted(want.items())
                    if have.get(path) != value
                ]
        problems["lost"] += [f"PMS-only {i} is gone" for i in pms_only if i not in all_pms]
        problems["wrong_failures"] += [
            f"{f.flow} {f.side} {f.record_id}: {f.error_class}: {f.message}"
            for f in store.list_failures()
        ]
    return problems


def main() -> int:
    """Run the soak, print the report, record it in bench/RESULTS.md; 1 on a correctness failure."""
    started = time.monotonic()
    rng = random.Random(SEED)
    with tempfile.TemporaryDirectory(prefix="tolken-soak-") as tmp:
        work = Path(os.environ.get("SOAK_KEEP") or tmp)
        work.mkdir(parents=True, exist_ok=True)
        with SandboxProcess(work / "sandbox") as sandbox:
            sandbox.seed(
                "poweroffice",
                {"customers": CUSTOMERS, "departments": DEPARTMENTS, "projects": PROJECTS},
            )
            config = write_config(
                work / "tolken.yaml", sandbox, store=work / "tolken.db", interval=0.5, timeout=3
            )
            for _ in range(2):  # the second reads back the first one's writes
                run_measured(
                    [*tolken_command(), "sync", "--once", "--json", "--config", str(config)],
                    timeout=600,
                )
            editor = Editor(sandbox, rng)
            editor.load_pairs()
            logs = [work / "watch-0.jsonl"]
            watch = _start_watch(config, logs[0])
            kills = sorted(rng.uniform(0.1, 0.9) * SECONDS for _ in range(RESTARTS))
            restarts = 0
            before = sandbox.snapshot()
            seeds = {"poweroffice": SEED * 2 + 1, "pms": SEED * 2 + 2}
            for system, seed in seeds.items():
                sandbox.faults(
                    system,
                    rate=FAULT_RATE,
                    statuses=FAULT_STATUSES,
                    drop_rate=DROP_RATE,
                    drop_hang_seconds=4,
                    seed=seed,
                )
            phase_started = time.monotonic()
            try:
                while (elapsed := time.monotonic() - phase_started) < SECONDS:
                    if kills and elapsed >= kills[0]:
                        kills.pop(0)
                        watch.send_signal(signal.SIGKILL)
                        watch.wait(10)
                        restarts += 1
                        logs.append(work / f"watch-{restarts}.jsonl")
                        watch = _start_watch(config, logs[-1])
                    editor.one()
                    time.sleep(rng.expovariate(EDITS_PER_SECOND))
            finally:
                after = sandbox.snapshot()
                for system in seeds:
                    sandbox.faults(system)
            fault_window = {s: sum(diff(before[s], after[s]).values()) for s in seeds}
            injected = _faults_injected(fault_window["poweroffice"], seeds["poweroffice"])
            injected += _faults_injected(fault_window["pms"], seeds["pms"])
            time.sleep(2)  # a few clean cycles
            watch.send_signal(signal.SIGTERM)
            try:
                watch.wait(60)
            except subprocess.TimeoutExpired:
                watch.kill()
                watch.wait(10)
            editor.close()
            statuses, reported_conflicts, stored_conflicts = _runs(config)
            quiet = [
                run_measured(
                    [
                        *tolken_command(),
                        "sync",
                        "--once",
                        "--json",
                        "--reconcile",
                        "--config",
                        str(config),
                    ],
                    timeout=600,
                ).last_json()
            ]
            for _ in range(5):
                report = run_measured(
                    [*tolken_command(), "sync", "--once", "--json", "--config", str(config)],
                    timeout=600,
                ).last_json()
                quiet.append(report)
                writes = sum(
                    f.get(k, 0)
                    for f in report["flows"].values()
                    for k in ("created", "linked", "updated", "deactivated")
                )
                if writes == 0:
                    break
            problems = _check(config, editor.edits.pms_only)
    if stored_conflicts < reported_conflicts:
        problems["wrong_failures"].append(
            f"cycles reported {reported_conflicts} conflicts, the store holds {stored_conflicts}"
        )
    elapsed_total = time.monotonic() - started
    figures = {
        "records lost": len(problems["lost"]),
        "duplicates": len(problems["duplicates"]),
        "divergent fields": len(problems["divergent"]),
        "open failures that should not be": len(problems["wrong_failures"]),
    }
    ok = not any(figures.values())
    made = sum(editor.edits.made.values())
    uncertain = sum(editor.edits.uncertain.values())
    edit_rows = "\n".join(
        f"| {kind} | {editor.edits.made[kind]} | {editor.edits.uncertain[kind]} |"
        for kind in sorted(set(editor.edits.made) | set(editor.edits.uncertain))
    )
    figure_rows = "\n".join(f"| {name} | **{n}** | 0 |" for name, n in figures.items())
    examples = [line for lines in problems.values() for line in lines[:5]]
    example_text = "\n".join(f"  - {line}" for line in examples[:20]) if examples else "  - none"
    cycle_text = ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
    fault_kinds = ", ".join(f"{k}: {v}" for k, v in sorted(injected.items()))
    section = f"""## Soak: random edits, faults and SIGKILL restarts under `sync --watch`

- Machine: {machine_description()}
- Command: `make soak` (or `python -m bench.soak`; `SOAK_SECONDS={SECONDS:g}`, `SOAK_SEED={SEED}`)
- Date: {now_utc()}; whole soak {elapsed_total:.0f} s, edit phase {SECONDS:g} s
- Set-up: `tolken sandbox` (child process) with {CUSTOMERS} customers,
  {DEPARTMENTS} departments and {PROJECTS} projects in PowerOffice, synchronised
  once; then `tolken sync --watch` (interval 0.5 s, HTTP timeout 3 s) while
  random edits are made at ~{EDITS_PER_SECOND:g}/s and both simulators inject
  faults ({FAULT_RATE:.0%} answered {"/".join(map(str, FAULT_STATUSES))}, {DROP_RATE:.0%}
  never answered: a client timeout). The watch process is SIGKILLed at random
  moments and started again. Then faults off, a quiet `sync --once --reconcile`
  and `sync --once` until nothing is written ({len(quiet)} quiet runs).

| edit | made | outcome unknown (a fault outlasted the editor's retries) |
|---|---:|---:|
{edit_rows}

- Edits made: **{made}** ({uncertain} more with an unknown outcome; the checks
  use the systems' final state, so those count whichever way they went).
- Faults injected: **{sum(injected.values())}** ({fault_kinds})
  over {fault_window["poweroffice"]:,} PowerOffice and {fault_window["pms"]:,} PMS requests
  (replayed from the seeded draws).
- Restarts by SIGKILL: **{restarts}**; cycles in the store's run log (set-up and
  quiet runs included): {cycle_text}.
- Conflicts: {reported_conflicts} counted by the cycles that finished,
  {stored_conflicts} recorded in the store (a killed cycle's conflicts are
  recorded but never counted).

| correctness figure | value | must be |
|---|---:|---:|
{figure_rows}

- Result: **{"pass" if ok else "FAIL"}**. Problems found (first of each kind):
{example_text}
"""
    write_section("soak", section)
    print(section)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
