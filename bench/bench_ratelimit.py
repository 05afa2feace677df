"""Under PowerOffice's limit: 1,000 PMS edits flowing to PowerOffice at 10 requests/s (figure 4).

Set-up: ``tolken sandbox`` in a child process; ``EDITS`` PowerOffice customers
synchronised into the PMS with the limit off. Then the simulator's limit is
switched on (10 requests/s per subscription key, 429 with ``Retry-After``
beyond it), every one of those customers is renamed in the PMS, and one
``tolken sync --once`` cycle (``requests_per_second: 10``, the default) carries
the edits to PowerOffice. The cycle runs in a child process whose PowerOffice
HTTP transport records the time and status of every response, so the
achieved rate (PowerOffice requests over the time between the first and the
last) and the 429s are tolken's own view.

Baseline, same run: a bare ``httpx`` loop sending ``BASELINE_REQUESTS`` GETs
on a fixed 10/s schedule (the best any client can do), with the same
counting. Targets: ≥ 9 requests/s, 429s ≤ 1 % of requests.

``python -m bench.bench_ratelimit`` (part of ``make bench``).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench import machine_description, now_utc, write_section
from bench._synctools import SandboxProcess, run_measured, tolken_command, write_config

MODULE = "bench.bench_ratelimit"
EDITS = int(1000 * float(os.environ.get("BENCH_SCALE", "1")))
LIMIT = 10.0
BASELINE_REQUESTS = 200
RATE_TARGET = 9.0
THROTTLED_TARGET = 0.01


class CountingTransport(httpx.BaseTransport):
    """Times and statuses of every response that passes through."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.statuses: Counter[int] = Counter()
        self.times: list[float] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if "/OAuth/" not in request.url.path:
            self.statuses[response.status_code] += 1
            self.times.append(time.monotonic())
        return response

    def close(self) -> None:
        self.inner.close()

    def summary(self) -> dict[str, Any]:
        span = (self.times[-1] - self.times[0]) if len(self.times) > 1 else 0.0
        return {
            "requests": len(self.times),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "span": span,
        }


def _sync_child(config_path: str) -> int:
    """Child: one cycle with a counting PowerOffice transport; prints the counts as JSON."""
    from tolken.compose import open_engine
    from tolken.config import load_config

    counting = CountingTransport()
    config = load_config(config_path)
    with open_engine(config, transports={"poweroffice": counting}) as engine:
        started = time.monotonic()
        report = engine.run_cycle()
        wall = time.monotonic() - started
    print(json.dumps({**counting.summary(), "wall": wall, "report": report.to_json()}))
    return 0


def _bare_child(po_url: str) -> int:
    """Child baseline: GETs on a fixed schedule of exactly the limit."""
    from tolken.sandbox import credentials

    counting = CountingTransport()
    with httpx.Client(timeout=30, transport=counting) as http:
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
        time.sleep(1.5)  # let the simulator's bucket refill after the token request
        started = time.monotonic()
        for i in range(BASELINE_REQUESTS):
            delay = started + i / LIMIT - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            http.get(f"{po_url}/v2/Departments", headers=headers)
    print(json.dumps(counting.summary()))
    return 0


def _setup(sandbox: SandboxProcess, work: Path) -> tuple[Path, list[str]]:
    """Customers synchronised with the limit off; returns the limited config and PMS ids."""
    from tolken.sandbox import credentials

    sandbox.seed("poweroffice", {"customers": EDITS})
    fast = write_config(
        work / "fast.yaml", sandbox, store=work / "tolken.db", overlap=1, requests_per_second=1000
    )
    run_measured(
        [*tolken_command(), "sync", "--once", "--json", "--config", str(fast)], timeout=900
    )
    headers = {"Authorization": f"Bearer {credentials.PMS_API_KEY}"}
    ids: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        page = sandbox.http.get(
            f"{sandbox.pms_api}/customers", params=params, headers=headers
        ).json()
        ids += [r["id"] for r in page["items"] if r.get("kind") != "department"]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    limited = write_config(
        work / "limited.yaml",
        sandbox,
        store=work / "tolken.db",
        overlap=1,
        requests_per_second=LIMIT,
    )
    return limited, ids


def main() -> int:
    """Run the benchmark, print the figures and record them in bench/RESULTS.md."""
    from tolken.sandbox import credentials

    started = time.monotonic()
    root = Path(__file__).parent.parent
    with tempfile.TemporaryDirectory(prefix="tolken-bench-ratelimit-") as tmp:
        work = Path(tmp)
        with SandboxProcess(work / "sandbox") as sandbox:
            config, ids = _setup(sandbox, work)
            if len(ids) != EDITS:
                raise RuntimeError(f"expected {EDITS} PMS customers, found {len(ids)}")
            time.sleep(1.5)  # past the overlap, so the cycle reads only the edits
            headers = {
                "Authorization": f"Bearer {credentials.PMS_API_KEY}",
                "Content-Type": "application/merge-patch+json",
            }
            for n, pms_id in enumerate(ids):
                sandbox.http.patch(
                    f"{sandbox.pms_api}/customers/{pms_id}",
                    content=json.dumps({"name": f"Bench limited {n}"}),
                    headers=headers,
                ).raise_for_status()
            sandbox.settings(rate_limit_per_second=LIMIT)
            bare = run_measured(
                [sys.executable, "-m", MODULE, "--bare", sandbox.po_url], timeout=600, cwd=root
            ).last_json()
            time.sleep(1.5)
            measured = run_measured(
                [sys.executable, "-m", MODULE, "--sync", str(config)], timeout=1800, cwd=root
            )
            tolken = measured.last_json()
    elapsed = time.monotonic() - started
    updated = tolken["report"]["flows"]["customers"].get("updated", 0)
    rows = []
    figures: dict[str, dict[str, float]] = {}
    for label, result in (("tolken sync --once", tolken), ("bare loop at exactly 10/s", bare)):
        throttled = int(result["statuses"].get("429", 0))
        rate = (result["requests"] - 1) / result["span"] if result["span"] else 0.0
        share = throttled / result["requests"] if result["requests"] else 0.0
        figures[label] = {"rate": rate, "share": share}
        statuses = ", ".join(f"{k}: {v:,}" for k, v in result["statuses"].items())
        rows.append(
            f"| {label} | {result['requests']:,} | {result['span']:.1f} | {rate:.2f} "
            f"| {throttled} ({share:.1%}) | {statuses} |"
        )
    t, b = figures["tolken sync --once"], figures["bare loop at exactly 10/s"]

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    table = "\n".join(rows)
    section = f"""## Sync: {EDITS:,} PMS edits to PowerOffice under its 10 requests/s limit

- Machine: {machine_description()}
- Command: `make bench` (or `python -m bench.bench_ratelimit`)
- Date: {now_utc()}; whole benchmark {elapsed:.0f} s; the cycle took {tolken["wall"]:.0f} s
- Set-up: `tolken sandbox` in a child process; {EDITS:,} customers synchronised
  with the limit off, then the simulator's limit switched on ({LIMIT:g}/s per
  subscription key) and every customer renamed in the PMS; one `tolken sync
  --once` cycle (`requests_per_second: {LIMIT:g}`) carried {updated:,} updates. A
  counting HTTP transport in the syncing process records every PowerOffice
  response (token requests excluded); the rate is requests over the span from
  the first to the last response.

| variant | PowerOffice requests | span s | requests/s | 429s | statuses |
|---|---:|---:|---:|---:|---|
{table}

- **Achieved rate: {t["rate"]:.2f}/s** (target ≥ {RATE_TARGET:g}:
  {verdict(t["rate"] >= RATE_TARGET)});
  ratio to the bare loop on an exact 10/s schedule: {t["rate"] / b["rate"]:.2f}.
- **429s: {t["share"]:.2%} of requests** (target ≤ {THROTTLED_TARGET:.0%}:
  {verdict(t["share"] <= THROTTLED_TARGET)}); the bare loop got {b["share"]:.2%}.
- Each PMS edit costs two PowerOffice requests (a GET, because PowerOffice has
  no If-Match and tolken never writes a record it has not just read, then the
  PATCH), so {EDITS:,} edits take at least {2 * EDITS / LIMIT:.0f} s at this limit.
"""
    write_section("sync-ratelimit", section)
    print(section)
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--sync":
        sys.exit(_sync_child(sys.argv[2]))
    if len(sys.argv) >= 2 and sys.argv[1] == "--bare":
        sys.exit(_bare_child(sys.argv[2]))
    sys.exit(main())
