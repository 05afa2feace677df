"""json-server 0.17.4 (``package-lock.json``) as a real third-party PMS for integration tests.

:func:`running_json_server` starts it on a free loopback port over a fresh
``db.json`` in a directory of the test's own, waits until it answers, and
kills it afterwards. Nothing is downloaded here: ``make test`` (``make
jsonserver``) runs ``npm ci`` beforehand; without ``node_modules`` the tests
skip, or fail when ``TOLKEN_REQUIRE_JSONSERVER`` is set (as ``make test`` does).

:data:`MIDDLEWARE` is the middleware file of the worked example in
``docs/pms-rest.md``: it stamps ``updatedAt`` on every write and refuses a
``displayName`` or ``title`` over 80 characters with 422.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
BINARY = ROOT / "node_modules" / ".bin" / "json-server"
EXAMPLE = ROOT / "docs" / "examples" / "json-server"
MIDDLEWARE = EXAMPLE / "pms-middleware.js"
COLLECTIONS = ("customers", "projects")
_START_TIMEOUT = 30.0


@dataclass(frozen=True)
class JsonServer:
    """A running json-server: its base URL and the ``db.json`` it keeps its records in."""

    url: str
    db_path: Path
    process: subprocess.Popen[bytes]

    def database(self) -> dict[str, list[dict[str, Any]]]:
        """Every collection as json-server holds it now (``GET /db``).

        Not ``db.json`` itself: json-server writes that file asynchronously,
        after it has answered.
        """
        response = httpx.get(f"{self.url}/db", timeout=10.0)
        response.raise_for_status()
        data: dict[str, list[dict[str, Any]]] = response.json()
        return data

    def records(self, collection: str) -> list[dict[str, Any]]:
        """The records of ``collection``."""
        return list(self.database().get(collection, []))

    def counts(self) -> dict[str, int]:
        """How many records each collection holds."""
        return {name: len(records) for name, records in self.database().items()}


def require_json_server() -> None:
    """Skip (or fail under ``make test``) when ``npm ci`` has not installed json-server."""
    if BINARY.exists():
        return
    if os.environ.get("TOLKEN_REQUIRE_JSONSERVER"):
        pytest.fail(f"{BINARY} is missing: run `make jsonserver` (npm ci)")
    pytest.skip("json-server is not installed (make test runs npm ci)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_json_server(
    directory: Path,
    *,
    seed: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    middlewares: Sequence[Path] = (MIDDLEWARE,),
) -> Iterator[JsonServer]:
    """json-server over a fresh ``directory/db.json`` (``seed`` records, else empty collections)."""
    require_json_server()
    directory.mkdir(parents=True, exist_ok=True)
    db_path = directory / "db.json"
    data = {name: list((seed or {}).get(name, [])) for name in COLLECTIONS}
    db_path.write_text(json.dumps(data, indent=2))
    port = _free_port()
    command = [str(BINARY), str(db_path), "--host", "127.0.0.1", "--port", str(port), "--quiet"]
    for middleware in middlewares:
        command += ["--middlewares", str(middleware)]
    log = (directory / "json-server.log").open("wb")
    process = subprocess.Popen(command, cwd=directory, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_answering(url, process, directory / "json-server.log")
        yield JsonServer(url, db_path, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()


def _wait_until_answering(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"json-server exited with {process.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"{url}/db", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"json-server did not answer at {url} within {_START_TIMEOUT:g} s")
