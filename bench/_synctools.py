"""Shared by the sync benchmarks and the soak: the sandbox in a child process, configs, rusage.

* :class:`SandboxProcess` runs ``tolken sandbox`` (both simulators, one
  process, SQLite files in a temporary folder) on free loopback ports, with
  the PowerOffice rate limit off unless asked, and talks to its
  ``/_sandbox/*`` control surface.
* :func:`write_config` writes a ``tolken.yaml`` pointing at it.
* :func:`tolken_command` is the ``tolken`` console script, its package's
  bytecode compiled first, as an installed wheel carries it.
* :func:`run_measured` runs a child process and returns its wall time, CPU
  seconds and peak RSS from ``wait4`` (so imports and start-up count, as they
  do for a user running the command).
"""

from __future__ import annotations

import compileall
import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tolken.sandbox import credentials

__all__ = [
    "Measured",
    "SandboxProcess",
    "data_requests",
    "peak_rss_mib",
    "run_measured",
    "tolken_command",
    "write_config",
]

WRITES = ("POST", "PATCH", "PUT", "DELETE")


def peak_rss_mib() -> float:
    """This process's peak RSS since it started (``VmHWM``).

    Not ``getrusage``: on Linux its ``ru_maxrss`` survives ``exec``, so a child
    would report the peak of the process that forked it when that was higher.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@functools.cache
def _compile_bytecode() -> None:
    """Compile tolken's own modules once, as installing a wheel does.

    ``make setup`` installs tolken editable, so its modules are source until a
    first import writes their bytecode, and with ``PYTHONDONTWRITEBYTECODE`` set
    (as on some CI machines) no import ever does: every timed ``tolken`` process
    would compile about 80 modules (about 0.2 s CPU) that an installed tolken,
    or the bare script's dependencies, load precompiled.
    """
    import tolken

    compileall.compile_dir(Path(tolken.__file__).parent, quiet=1)


def tolken_command() -> list[str]:
    """The ``tolken`` console script of this interpreter's environment (bytecode compiled)."""
    _compile_bytecode()
    script = Path(sys.executable).with_name("tolken")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tolken.cli"]


class SandboxProcess:
    """``tolken sandbox`` in a child process; a context manager that stops it with SIGTERM."""

    def __init__(self, data_dir: Path, *, rate_limit: float | None = None) -> None:
        self.data_dir = data_dir
        self._proc = subprocess.Popen(
            [
                *tolken_command(),
                "sandbox",
                "--poweroffice-port",
                "0",
                "--pms-port",
                "0",
                "--data-dir",
                str(data_dir),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.po_url = ""
        self.pms_api = ""
        assert self._proc.stdout is not None
        deadline = time.monotonic() + 60
        while not (self.po_url and self.pms_api):
            line = self._proc.stdout.readline()
            if not line or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("tolken sandbox did not start")
            if line.startswith("PowerOffice Go simulator ready at "):
                self.po_url = line.split(" at ", 1)[1].split()[0]
            elif line.startswith("Reference PMS ready at "):
                self.pms_api = line.split(" at ", 1)[1].split()[0]
        # Drain the rest of its output so the pipe never fills.
        threading.Thread(target=self._proc.stdout.read, daemon=True).start()
        self.pms_url = self.pms_api.removesuffix("/api/v1")
        self.http = httpx.Client(timeout=600)
        self.settings(rate_limit_per_second=rate_limit)

    # -- control surface ---------------------------------------------------------
    def _base(self, system: str) -> str:
        return self.po_url if system == "poweroffice" else self.pms_url

    def control(self, system: str, path: str, body: Any = None) -> Any:
        """GET (``body`` None) or POST ``/_sandbox/{path}`` of one system."""
        url = f"{self._base(system)}/_sandbox/{path}"
        response = self.http.get(url) if body is None else self.http.post(url, json=body)
        response.raise_for_status()
        return response.json() if response.content else None

    def settings(self, **changes: Any) -> Any:
        """Runtime switches of the PowerOffice simulator (``rate_limit_per_second`` …)."""
        return self.control("poweroffice", "settings", changes)

    def seed(self, system: str, counts: Mapping[str, int]) -> Any:
        """``POST /_sandbox/seed`` of one system."""
        return self.control(system, "seed", dict(counts))

    def faults(self, system: str, **faults: Any) -> Any:
        """Set (or with no arguments, clear) injected faults of one system."""
        return self.control(system, "faults", faults)

    def stats(self, system: str) -> dict[str, int]:
        """Requests the system received so far, by ``"METHOD /template"``."""
        requests: dict[str, int] = self.control(system, "stats")["requests"]
        return requests

    def snapshot(self) -> dict[str, dict[str, int]]:
        """Request counts of both systems."""
        return {s: self.stats(s) for s in ("poweroffice", "pms")}

    # -- lifecycle ------------------------------------------------------------------
    def close(self) -> None:
        """Stop the sandbox (SIGTERM, then SIGKILL after 20 s)."""
        if hasattr(self, "http"):
            self.http.close()
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def diff(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """Counts in ``after`` minus ``before``, without zeros."""
    out = {k: v - before.get(k, 0) for k, v in after.items()}
    return {k: v for k, v in sorted(out.items()) if v}


def data_requests(counts: Mapping[str, int]) -> tuple[int, int]:
    """(reads, writes) in a request count; token requests are neither."""
    reads = writes = 0
    for key, n in counts.items():
        if "/OAuth/" in key:
            continue
        if key.split(" ", 1)[0] in WRITES:
            writes += n
        else:
            reads += n
    return reads, writes


def write_config(
    path: Path,
    sandbox: SandboxProcess,
    *,
    store: Path,
    interval: float = 60.0,
    overlap: float = 120.0,
    requests_per_second: float = 1000.0,
    timeout: float = 30.0,
    extra: str = "",
) -> Path:
    """A ``tolken.yaml`` for ``sandbox`` with its SQLite store at ``store``."""
    path.write_text(
        f"store: sqlite:///{store}\n"
        "poweroffice:\n"
        f"  base_url: {sandbox.po_url}/v2\n"
        f"  token_url: {sandbox.po_url}/OAuth/Token\n"
        f"  application_key: {credentials.APPLICATION_KEY}\n"
        f"  client_key: {credentials.CLIENT_KEY}\n"
        f"  subscription_key: {credentials.SUBSCRIPTION_KEY}\n"
        f"  requests_per_second: {requests_per_second}\n"
        f"  timeout_seconds: {timeout}\n"
        f"  overlap_seconds: {overlap}\n"
        "pms:\n"
        f"  base_url: {sandbox.pms_api}\n"
        f"  api_key: {credentials.PMS_API_KEY}\n"
        f"  timeout_seconds: {timeout}\n"
        "sync:\n"
        f"  interval_seconds: {interval}\n"
        f"{extra}",
        encoding="utf-8",
    )
    return path


@dataclass(frozen=True)
class Measured:
    """A finished child process: exit code, output and what it cost."""

    returncode: int
    stdout: str
    stderr: str
    wall: float
    cpu: float
    peak_rss_mib: float

    def last_json(self) -> Any:
        """The last line of stdout that parses as JSON (``sync --once --json`` prints one)."""
        for line in reversed(self.stdout.strip().splitlines()):
            try:
                return json.loads(line)
            except ValueError:
                continue
        text = self.stdout.strip()
        return json.loads(text) if text else None


def run_measured(
    command: Sequence[str], *, timeout: float, cwd: Path | None = None, check: bool = True
) -> Measured:
    """Run ``command``; wall time, user+system CPU and peak RSS of that child alone.

    The peak RSS is ``wait4``'s ``ru_maxrss``, which on Linux is at least the
    RSS of this (forking) process: keep the calling process small.
    """
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )
    out: list[str] = []
    err: list[str] = []
    assert proc.stdout is not None
    assert proc.stderr is not None
    readers = [
        threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True),  # type: ignore[union-attr]
        threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True),  # type: ignore[union-attr]
    ]
    for reader in readers:
        reader.start()
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        # wait4 reports the rusage of exactly this child (not of every child reaped so far).
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join(10)
    result = Measured(
        returncode=proc.returncode,
        stdout="".join(out),
        stderr="".join(err),
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        peak_rss_mib=usage.ru_maxrss / 1024,  # KiB on Linux
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited {result.returncode}: {result.stderr.strip()[-2000:]}"
        )
    return result
