"""`tolken sandbox` as a real process: readiness lines, real requests, clean SIGTERM, restarts."""

from __future__ import annotations

import base64
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest

from tolken.sandbox import credentials
from tolken.sandbox.runner import sandbox_in_thread

TOLKEN = str(Path(sys.executable).parent / "tolken")
AUTH = {"Authorization": f"Bearer {credentials.PMS_API_KEY}"}
PO_READY = re.compile(
    r"^PowerOffice Go simulator ready at (http://127\.0\.0\.1:\d+) \(API /v2, token /OAuth/Token\)$"
)
PMS_READY = re.compile(r"^Reference PMS ready at (http://127\.0\.0\.1:\d+/api/v1)$")


@contextmanager
def sandbox(data_dir: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    """Start `tolken sandbox` on free ports; yield the process and the URLs it printed."""
    command = [TOLKEN, "sandbox", "--poweroffice-port", "0", "--pms-port", "0"]
    process = subprocess.Popen(
        [*command, "--data-dir", str(data_dir), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout

    def pump() -> None:
        for line in stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    urls: dict[str, str] = {}
    printed: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while len(urls) < 2:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            printed.append(line)
            if found := PO_READY.match(line):
                urls["poweroffice"] = found.group(1)
            if found := PMS_READY.match(line):
                urls["pms"] = found.group(1)
        time.sleep(0.2)
        while not lines.empty():
            printed.append(lines.get())
        urls["printed"] = "\n".join(printed)
        yield process, urls
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        process.stderr.close()  # type: ignore[union-attr]
        stdout.close()


@pytest.mark.slow
def test_sandbox_serves_both_systems_and_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    """Both readiness lines and the credentials appear; both APIs answer; SIGTERM exits 0."""
    with sandbox(tmp_path) as (process, urls):
        printed = urls["printed"]
        for secret in (
            credentials.APPLICATION_KEY, credentials.CLIENT_KEY,
            credentials.SUBSCRIPTION_KEY, credentials.PMS_API_KEY,
        ):  # fmt: skip
            assert secret in printed
        created = httpx.post(
            f"{urls['pms']}/customers", json={"kind": "company", "name": "Fjord AS"}, headers=AUTH
        )
        assert created.status_code == 201
        basic = base64.b64encode(
            f"{credentials.APPLICATION_KEY}:{credentials.CLIENT_KEY}".encode()
        ).decode()
        token = httpx.post(
            f"{urls['poweroffice']}/OAuth/Token",
            data={"grant_type": "client_credentials"},
            headers={
                "Authorization": f"Basic {basic}",
                "Ocp-Apim-Subscription-Key": credentials.SUBSCRIPTION_KEY,
            },
        )
        assert token.status_code == 200
        assert token.json()["access_token"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read()
    with sandbox(tmp_path) as (process, urls):
        again = httpx.get(f"{urls['pms']}/customers/{created.json()['id']}", headers=AUTH)
        assert again.status_code == 200
        assert again.json()["name"] == "Fjord AS"
        process.send_signal(signal.SIGINT)
        assert process.wait(15) == 0
    assert (tmp_path / "pms.sqlite3").exists()
    assert (tmp_path / "poweroffice.sqlite3").exists()


def test_a_taken_port_is_an_error_with_exit_code_1(tmp_path: Path) -> None:
    """When a port is in use the command says so on stderr and exits 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = subprocess.run(
            [TOLKEN, "sandbox", "--pms-port", port, "--poweroffice-port", "0",
             "--data-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_sandbox_in_thread_serves_both_for_a_with_block(tmp_path: Path) -> None:
    """The in-process helper serves both apps on free ports and stops them afterwards."""
    with sandbox_in_thread(tmp_path) as urls:
        assert httpx.get(f"{urls.pms}/customers", headers=AUTH).status_code == 200
        assert httpx.get(f"{urls.poweroffice}/_sandbox/stats").status_code == 200
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{urls.pms}/customers", headers=AUTH, timeout=2)


@pytest.mark.slow
def test_sigterm_does_not_wait_for_a_dropped_request(tmp_path: Path) -> None:
    """A request held open by the drop fault does not keep the process alive after SIGTERM."""
    with sandbox(tmp_path) as (process, urls):
        base = urls["pms"].removesuffix("/api/v1")
        httpx.post(f"{base}/_sandbox/faults", json={"drop_rate": 1.0}).raise_for_status()
        hanging = threading.Thread(
            target=lambda: _ignore_errors(
                lambda: httpx.get(f"{urls['pms']}/customers", timeout=60)
            ),
            daemon=True,
        )
        hanging.start()
        time.sleep(0.5)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
        assert time.monotonic() - started < 10


def _ignore_errors(call: Any) -> None:
    with suppress(httpx.HTTPError):
        call()
