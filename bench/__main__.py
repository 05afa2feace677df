"""Run every ``bench/bench_*.py`` benchmark, each in its own process; non-zero if any failed."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    """Run the benchmarks in name order (``python -m bench [NAME ...]`` runs only those)."""
    here = Path(__file__).parent
    wanted = set(sys.argv[1:])
    modules = [
        path.stem
        for path in sorted(here.glob("bench_*.py"))
        if not wanted or path.stem in wanted or path.stem.removeprefix("bench_") in wanted
    ]
    failed: list[str] = []
    for module in modules:
        print(f"== bench.{module}", flush=True)
        started = time.monotonic()
        # Own process per benchmark: peak-memory figures must not mix.
        code = subprocess.call([sys.executable, "-m", f"bench.{module}"], cwd=here.parent)
        print(f"== bench.{module}: exit {code} in {time.monotonic() - started:.1f} s", flush=True)
        if code != 0:
            failed.append(module)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
