"""Fleet mode under one 10 req/s budget: backfill time, budget use, 429s, webhook latency.

200 tenants x 200 PowerOffice customers (``BENCH_SCALE`` scales the tenant
count) under one subscription key, against ``tolken sandbox`` in a child
process at PowerOffice's 10 req/s, with 1, 2 and 4 ``tolken worker``
processes (concurrency 4 each) on a fresh PostgreSQL schema per run.

Per run: the time until every tenant is linked against the lower bound the
budget allows (the PowerOffice requests the run needed / 10 per second), the
PowerOffice requests per second while there was work and the share answered
429, the latency of webhook-priority jobs during the backfill (5 small tenants
synced beforehand; one PMS edit each, then ``queue_sync(tenant, "webhook")``,
timed until the edit's PATCH reaches that tenant's PowerOffice), and each
worker's CPU and peak RSS (``wait4``'s rusage) per tenant.

``BENCH_WEBHOOK_RESERVE`` sets the workers' ``fleet.webhook_reserve`` (0: none)
to compare against the default; only a full-scale run at the default is
recorded in ``results.json``.

Needs PostgreSQL: ``TOLKEN_BENCH_POSTGRES_URL`` or ``TOLKEN_TEST_POSTGRES_URL``
(``.ci/run``'s database by default). Run alone: ``python -m bench fleet``.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench import machine_description, now_utc, write_section
from bench._synctools import SandboxProcess, tolken_command
from bench.results import record
from tolken.config import FleetSettings, TenantSettings, load_fleet_config
from tolken.fleet import Fleet, open_fleet
from tolken.sandbox import credentials

# ruff: noqa: E501  (the Markdown table header is one line)

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
# fleet.webhook_reserve of the workers (unset: the config's default), for comparisons.
RESERVE = os.environ.get("BENCH_WEBHOOK_RESERVE")
TENANTS = max(4, round(200 * SCALE))
CUSTOMERS = 200
HOOK_TENANTS = 5
WORKER_COUNTS = (1, 2, 4)
BUDGET = 10.0
SECRET_KEY = "bench-fleet-passphrase-0123456789-abcdef"
DEFAULT_DB = "postgresql+psycopg://tolken:tolken@127.0.0.1:5432/tolken_test"

CONFIG = """\
store: {store}
poweroffice:
  base_url: {po_url}/v2
  token_url: {po_url}/OAuth/Token
  application_key: {application_key}
  subscription_key: {subscription_key}
  requests_per_second: {budget}
pms:
  base_url: {pms_url}/api/v1
sync:
  interval_seconds: 3600
fleet:
  secret_key: ${{TOLKEN_SECRET_KEY}}
  concurrency: 4
{reserve}"""


def client_key(name: str) -> str:
    return f"sandbox-client-key-{name}"


def pms_key(name: str) -> str:
    return f"sandbox-pms-key-{name}"


@contextmanager
def fresh_schema(base: str) -> Iterator[str]:
    """A URL whose search_path is a new schema, dropped afterwards."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - started


@dataclass
class WorkerUse:
    cpu_s: float
    peak_rss_mib: float


@dataclass
class Run:
    workers: int
    seconds: float
    lower_bound_s: float
    po_requests: int
    throttled: int
    webhook_s: list[float]
    use: list[WorkerUse]
    host_load: float  # the machine's 1-minute load average, the mean of one sample per probe

    @property
    def budget_use(self) -> float:
        return (self.po_requests - self.throttled) / (BUDGET * self.seconds)

    @property
    def throttled_share(self) -> float:
        return self.throttled / self.po_requests if self.po_requests else 0.0

    @property
    def webhook_p95(self) -> float:
        if len(self.webhook_s) < 2:
            return max(self.webhook_s, default=0.0)
        return statistics.quantiles(self.webhook_s, n=20, method="inclusive")[18]


class Bench:
    def __init__(self, sandbox: SandboxProcess, store_url: str, tmp: Path) -> None:
        self.sandbox = sandbox
        self.store_url = store_url
        self.tmp = tmp
        self.config_path = tmp / "fleet.yaml"
        self.config_path.write_text(
            CONFIG.format(
                store=store_url,
                po_url=sandbox.po_url,
                pms_url=sandbox.pms_url,
                application_key=credentials.APPLICATION_KEY,
                subscription_key=credentials.SUBSCRIPTION_KEY,
                budget=BUDGET,
                reserve="" if RESERVE is None else f"  webhook_reserve: {float(RESERVE)}\n",
            ),
            encoding="utf-8",
        )
        self.environ = {**os.environ, "TOLKEN_SECRET_KEY": SECRET_KEY}
        self.workers: list[subprocess.Popen[bytes]] = []

    @contextmanager
    def fleet(self) -> Iterator[Fleet]:
        with open_fleet(load_fleet_config(self.config_path, self.environ)) as fleet:
            yield fleet

    def add(self, fleet: Fleet, names: list[str]) -> None:
        for name in names:
            fleet.registry.add(
                TenantSettings(
                    id=name,
                    poweroffice_client_key=SecretStr(client_key(name)),
                    pms_api_key=SecretStr(pms_key(name)),
                )
            )

    def seed(self, name: str, customers: int) -> None:
        self.sandbox.control(
            "poweroffice", "seed", {"customers": customers, "client": client_key(name)}
        )

    def po_statuses(self) -> tuple[int, int]:
        statuses: dict[str, int] = self.sandbox.control("poweroffice", "stats")["statuses"]
        return sum(statuses.values()), statuses.get("429", 0)

    def po_patches(self, name: str) -> int:
        url = f"{self.sandbox.po_url}/_sandbox/stats?client={client_key(name)}"
        requests: dict[str, int] = self.sandbox.http.get(url).json()["requests"]
        return requests.get("PATCH /v2/Customers/{id}", 0)

    def linked(self, fleet: Fleet) -> dict[str, int]:
        counts = fleet.store.fleet_view().flow_counts_by_tenant()
        return {t: sum(c.active_links for c in flows.values()) for t, flows in counts.items()}

    def start_workers(self, count: int) -> None:
        for index in range(count):
            log = (self.tmp / f"worker-{index}.log").open("wb")
            self.workers.append(
                subprocess.Popen(
                    [*tolken_command(), "worker", "--config", str(self.config_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    env={**self.environ, "TOLKEN_LOG_LEVEL": "WARNING", "NO_COLOR": "1"},
                )
            )

    def stop_workers(self) -> list[WorkerUse]:
        for worker in self.workers:
            worker.send_signal(signal.SIGTERM)
        use = []
        for worker in self.workers:
            _pid, _status, usage = os.wait4(worker.pid, 0)
            worker.returncode = 0
            cpu = usage.ru_utime + usage.ru_stime
            use.append(WorkerUse(cpu, usage.ru_maxrss / 1024))
        self.workers.clear()
        return use

    def pms_edit(self, name: str) -> None:
        http = self.sandbox.http
        headers = {"Authorization": f"Bearer {pms_key(name)}"}
        base = f"{self.sandbox.pms_api}/customers"
        customer = http.get(base, headers=headers, params={"limit": 1}).json()["items"][0]
        phone = f"+47{int(time.time() * 1000) % 100_000_000:08d}"
        response = http.patch(
            f"{base}/{customer['id']}",
            headers={**headers, "If-Match": f'"{customer["version"]}"'},
            json={"phone": phone},
        )
        response.raise_for_status()


def run(sandbox: SandboxProcess, base_db: str, workers: int) -> Run:
    sandbox.control("poweroffice", "reset", {})
    sandbox.control("pms", "reset", {})
    with tempfile.TemporaryDirectory() as tmp, fresh_schema(base_db) as store_url:
        bench = Bench(sandbox, store_url, Path(tmp))
        hooks = [f"hook{i}" for i in range(HOOK_TENANTS)]
        backfill = [f"t{i:04d}" for i in range(TENANTS)]
        for name in hooks:
            bench.seed(name, 3)
        for name in backfill:
            bench.seed(name, CUSTOMERS)
        with bench.fleet() as fleet:
            bench.add(fleet, hooks)
            bench.start_workers(workers)
            wait_until(
                lambda: all(bench.linked(fleet).get(h) == 3 for h in hooks), 120, "the hook tenants"
            )
            requests_before, throttled_before = bench.po_statuses()
            started = time.monotonic()
            bench.add(fleet, backfill)
            latencies: list[float] = []
            loads: list[float] = []
            probe = 0
            while True:
                linked = bench.linked(fleet)
                if all(linked.get(t) == CUSTOMERS for t in backfill):
                    break
                if time.monotonic() - started > 3600:
                    raise RuntimeError("the backfill did not finish within an hour")
                if time.monotonic() - started > 3 + 4 * probe:
                    latencies.append(webhook_latency(bench, fleet, hooks[probe % HOOK_TENANTS]))
                    loads.append(os.getloadavg()[0])
                    probe += 1
                time.sleep(0.25)
            seconds = time.monotonic() - started
            requests_after, throttled_after = bench.po_statuses()
            use = bench.stop_workers()
    requests = requests_after - requests_before
    throttled = throttled_after - throttled_before
    # Webhook probes' own requests are part of the work the budget served.
    return Run(
        workers,
        seconds,
        (requests - throttled) / BUDGET,
        requests,
        throttled,
        latencies,
        use,
        statistics.fmean(loads) if loads else os.getloadavg()[0],
    )


def webhook_latency(bench: Bench, fleet: Fleet, name: str) -> float:
    """A PMS edit of ``name`` and its webhook job: seconds until the PATCH reaches PowerOffice."""
    patches = bench.po_patches(name)
    bench.pms_edit(name)
    started = time.monotonic()
    fleet.queue_sync(name, "webhook")
    wait_until(lambda: bench.po_patches(name) > patches, 120, f"{name}'s edit in PowerOffice")
    return time.monotonic() - started


def main() -> int:
    base_db = (
        os.environ.get("TOLKEN_BENCH_POSTGRES_URL")
        or os.environ.get("TOLKEN_TEST_POSTGRES_URL")
        or DEFAULT_DB
    )
    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as data, SandboxProcess(Path(data), rate_limit=BUDGET) as sb:
        for workers in WORKER_COUNTS:
            result = run(sb, base_db, workers)
            print(
                f"{workers} worker(s): {result.seconds:.1f} s (bound {result.lower_bound_s:.1f} s),"
                f" {result.budget_use:.0%} of the budget, {result.throttled} x 429,"
                f" webhook p95 {result.webhook_p95:.2f} s, host load {result.host_load:.1f}",
                flush=True,
            )
            runs.append(result)
    report(runs)
    return 0


def report(runs: list[Run]) -> None:
    rows = []
    tenants = TENANTS + HOOK_TENANTS
    for r in runs:
        cpu = sum(u.cpu_s for u in r.use)
        rss = max(u.peak_rss_mib for u in r.use)
        rows.append(
            f"| {r.workers} | {r.seconds:.1f} | {r.lower_bound_s:.1f} |"
            f" {r.seconds / r.lower_bound_s:.2f} |"
            f" {(r.po_requests - r.throttled) / r.seconds:.2f} |"
            f" {r.budget_use:.1%} | {r.throttled} of {r.po_requests} ({r.throttled_share:.2%}) |"
            f" {r.webhook_p95:.2f} (n={len(r.webhook_s)}, max {max(r.webhook_s, default=0):.2f}) |"
            f" {cpu * 1000 / tenants:.0f} | {rss:.0f} ({rss / tenants:.2f}/tenant) |"
            f" {r.host_load:.1f} |"
        )
    default = FleetSettings.model_fields["webhook_reserve"].default
    reserve = default if RESERVE is None else float(RESERVE)
    scale_note = "" if SCALE == 1 else f"\n- **Scaled** to {SCALE:g} (`BENCH_SCALE={SCALE:g}`)."
    section = f"""## Fleet: {TENANTS} tenants x {CUSTOMERS} customers under one 10 req/s budget

`python -m bench fleet`, {now_utc()}, {machine_description()}.{scale_note}
`tolken sandbox` in a child process (PowerOffice at 10 req/s per subscription
key), `tolken worker` processes (concurrency 4 each, `fleet.webhook_reserve`
{reserve:g}) on one PostgreSQL database, {HOOK_TENANTS} small tenants synced
first for the webhook probes.
*Bound* = the PowerOffice requests the run answered (not 429) / 10 per second:
no fleet can be faster on this key. *Budget use* = those requests / (10 x time
until every tenant was linked). Webhook: a PMS edit of a small tenant, its
webhook job queued, until the PATCH reaches that tenant's PowerOffice, one
probe every 4 s during the backfill. *Host load*: the machine's 1-minute load
average during the run ({os.cpu_count()} cores): above that, the workers wait for
a CPU, not for the budget, and every time here grows.

| workers | until all linked, s | bound, s | ratio | PowerOffice req/s | budget use | 429 | webhook p95, s | worker CPU ms per tenant | worker peak RSS, MiB | host load |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}
"""
    write_section("fleet", section)
    print(section)
    if SCALE == 1 and reserve == default:
        record(
            {
                "fleet_budget_use": min(r.budget_use for r in runs),
                "fleet_throttled_share": max(r.throttled_share for r in runs),
                "fleet_webhook_p95_s_during_backfill": max(r.webhook_p95 for r in runs),
            }
        )


if __name__ == "__main__":
    sys.exit(main())
