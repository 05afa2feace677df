"""tolken benchmarks: ``python -m bench`` (``make bench``) runs every ``bench/bench_*.py``.

Each benchmark module exposes ``main() -> int`` and runs alone as
``python -m bench.bench_<name>``. Figures are ratios against a baseline run in
the same invocation (absolute times drift on shared machines) and are written
to ``bench/RESULTS.md`` with :func:`write_section`, one section per benchmark,
together with :func:`machine_description` and the command that produced them.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["RESULTS", "machine_description", "now_utc", "write_section"]

RESULTS = Path(__file__).with_name("RESULTS.md")

_INTRO = """# Benchmark results

Produced by `make bench` (`python -m bench`), which runs every `bench/bench_*.py`;
each can also run alone (`python -m bench.bench_<name>`). Every figure is
measured beside a baseline in the same run, because absolute numbers drift on
a shared machine: read the ratios first. Each section names the machine,
command and date it was measured with, and is replaced when its benchmark runs
again.
"""


def machine_description() -> str:
    """CPU model, core count, memory and Python version of this machine, on one line."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f", {int(line.split()[1]) / 1024 / 1024:.0f} GiB RAM"
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores{memory}, {platform.system()} {platform.release()}, "
        f"Python {sys.version.split()[0]}"
    )


def now_utc() -> str:
    """The current time as ``YYYY-MM-DD HH:MM UTC``."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def write_section(name: str, markdown: str, path: Path = RESULTS) -> None:
    """Put ``markdown`` into ``path`` as the section ``name``, replacing an earlier one.

    Sections are delimited by ``<!-- bench:NAME -->`` comments so several
    benchmarks share the file without touching each other's figures.
    """
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    text = path.read_text() if path.exists() else _INTRO
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
