"""The 1,000,000-link run (issue 12): an idle cycle and a reconcile with a million links.

Not part of ``make bench`` (the set-up alone takes the better part of an
hour): ``python -m bench.million`` runs it and writes the ``sync-1m``
section of ``bench/RESULTS.md``, replacing the one an earlier run wrote; it
records no ``bench/results.json`` keys. The set-up and the cycles are those
of :mod:`bench.bench_idle` (:func:`bench.bench_idle.measure`): both
simulators filled in-process with the same customers, a first
``tolken sync --once`` links them, then the steady idle cycle (beside the
bare ``httpx`` script) and a reconcile each run in a child process. Each
step's wall time is reported, so a run can be planned. ``BENCH_SCALE``
scales the link count (``BENCH_SCALE=0.05``: 50,000 links, to try the
command).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from bench import machine_description, now_utc, write_section
from bench.bench_idle import (
    _cycle_rows,
    _first_link,
    _fmt_requests,
    measure,
)

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
LINKS = int(1_000_000 * SCALE)


def main() -> int:
    """Run the set-up at :data:`LINKS`, an idle cycle and a reconcile; write ``sync-1m``."""
    started = time.monotonic()
    run = measure(LINKS, ("idle", "reconcile"))
    elapsed = time.monotonic() - started
    idle_requests = run.cycles["idle"][-1][1]
    reconcile, reconcile_requests = run.cycles["reconcile"][0]
    idle_cpu = statistics.median(r["cpu"] for r, _ in run.cycles["idle"])
    scale_note = "" if SCALE == 1 else f"\n- **Scaled** to {SCALE:g} (`BENCH_SCALE={SCALE:g}`)."
    steps = "\n".join(f"| {name} | {seconds:.0f} |" for name, seconds in run.phases.items())
    section = f"""## Sync at {run.links:,} links: idle cycle and reconcile

- Machine: {machine_description()}
- Command: `python -m bench.million` (not part of `make bench`)
- Date: {now_utc()}; whole run {elapsed:.0f} s
- Set-up and cycles as in "Sync: idle cycle and memory" (`bench_idle`), at
  {run.links:,} customers on both sides; CPU and peak RSS are each child
  process's own, wall times depend on the machine's load.{scale_note}

| step | wall s |
|---|---:|
{steps}

{_first_link(run)}

| cycle | wall ms | CPU ms | RSS after set-up MiB | peak RSS MiB | PowerOffice req. | PMS req. |
|---|---:|---:|---:|---:|---:|---:|
{_cycle_rows(run)}

- Idle (median CPU {idle_cpu * 1000:.0f} ms, peak RSS {run.peaks()["idle"]:.0f} MiB):
  {_fmt_requests(idle_requests)}.
- Reconcile ({reconcile["cpu"]:.1f} s CPU, peak RSS {reconcile["peak_rss"]:.0f} MiB):
  {_fmt_requests(reconcile_requests)}.
"""
    write_section("sync-1m", section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
