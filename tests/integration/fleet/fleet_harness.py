"""A fleet on real parts: both sandbox servers over loopback, a PostgreSQL schema, worker processes.

Each test gets a fresh PostgreSQL schema (the ``postgres_url`` fixture), empty
sandbox systems and a fleet config pointing at them; tenants are added
through :func:`tolken.fleet.open_fleet` or the CLI, and ``tolken worker``
runs as real child processes whose stderr (the JSON logs) goes to a file.
Tenant ``<name>`` uses the client key ``sandbox-client-key-<name>`` and the
PMS key ``sandbox-pms-key-<name>``, each its own data in the sandbox.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from tolken.config import FleetConfig, TenantSettings, load_fleet_config
from tolken.fleet import Fleet, open_fleet
from tolken.sandbox import credentials

SECRET_KEY = "fleet-test-passphrase-0123456789-abcdef"
WEBHOOK_SECRET_PREFIX = "webhook-secret-of-"

CONFIG = """\
store: {store}
poweroffice:
  base_url: {po_url}/v2
  token_url: {po_url}/OAuth/Token
  application_key: {application_key}
  subscription_key: {subscription_key}
  requests_per_second: 10
  timeout_seconds: 10
pms:
  base_url: {pms_url}/api/v1
  timeout_seconds: 10
sync:
  interval_seconds: {interval}
fleet:
  secret_key: ${{TOLKEN_SECRET_KEY}}
  concurrency: {concurrency}
  stalled_after_seconds: {stalled_after}
"""


def client_key(name: str) -> str:
    return f"{credentials.CLIENT_KEY}-{name}"


def pms_key(name: str) -> str:
    return f"{credentials.PMS_API_KEY}-{name}"


def wait_until(check: Callable[[], bool], *, timeout: float, what: str) -> float:
    """Poll ``check`` until true; the seconds it took. AssertionError naming ``what`` if never."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)
    return time.monotonic() - started


@dataclass
class Worker:
    """One ``tolken worker`` child process; its JSON log lines in ``log_path``."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


@dataclass
class FleetSandbox:
    """The sandbox servers, a store schema and a fleet config for one test."""

    po_url: str
    pms_url: str
    store_url: str
    tmp: Path
    workers: list[Worker] = field(default_factory=list)

    # -- config and tenants ----------------------------------------------------------
    def write_config(
        self, *, interval: float = 60, concurrency: int = 2, stalled_after: float = 4
    ) -> Path:
        path = self.tmp / "fleet.yaml"
        path.write_text(
            CONFIG.format(
                store=self.store_url,
                po_url=self.po_url,
                pms_url=self.pms_url,
                application_key=credentials.APPLICATION_KEY,
                subscription_key=credentials.SUBSCRIPTION_KEY,
                interval=interval,
                concurrency=concurrency,
                stalled_after=stalled_after,
            ),
            encoding="utf-8",
        )
        return path

    @property
    def config_path(self) -> Path:
        return self.tmp / "fleet.yaml"

    def config(self) -> FleetConfig:
        return load_fleet_config(self.config_path, self.environ())

    def environ(self) -> dict[str, str]:
        return {**os.environ, "TOLKEN_SECRET_KEY": SECRET_KEY}

    @contextmanager
    def fleet(self) -> Iterator[Fleet]:
        with open_fleet(self.config()) as fleet:
            yield fleet

    def add_tenants(self, *names: str, paused: bool = False, **settings: Any) -> None:
        with self.fleet() as fleet:
            for name in names:
                fleet.registry.add(
                    TenantSettings(
                        id=name,
                        poweroffice_client_key=SecretStr(client_key(name)),
                        pms_api_key=SecretStr(pms_key(name)),
                        webhook_secret=SecretStr(WEBHOOK_SECRET_PREFIX + name + "-0123456789"),
                        **settings,
                    )
                )
                if paused:
                    fleet.registry.pause(name)

    def secrets(self, *names: str) -> list[str]:
        """Every credential of the fleet and of ``names``: none may appear in clear text."""
        values = [credentials.APPLICATION_KEY, credentials.SUBSCRIPTION_KEY, SECRET_KEY]
        for name in names:
            values += [client_key(name), pms_key(name), WEBHOOK_SECRET_PREFIX + name]
        return values

    def links(self, name: str) -> int:
        with self.fleet() as fleet:
            counts = fleet.store.for_tenant(name).flow_counts()
        return sum(c.active_links for c in counts.values())

    # -- workers ---------------------------------------------------------------------
    def start_worker(self, concurrency: int | None = None) -> Worker:
        index = len(self.workers)
        log_path = self.tmp / f"worker-{index}.log"
        args = [str(Path(sys.executable).with_name("tolken")), "worker"]
        args += ["--config", str(self.config_path)]
        if concurrency is not None:
            args += ["--concurrency", str(concurrency)]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env={**self.environ(), "TOLKEN_LOG_LEVEL": "INFO", "NO_COLOR": "1"},
            )
        worker = Worker(process, log_path)
        self.workers.append(worker)
        return worker

    def stop_workers(self) -> list[int]:
        return [worker.stop() for worker in self.workers]

    def logs(self) -> str:
        return "".join(worker.log() for worker in self.workers)

    # -- the sandbox systems ---------------------------------------------------------
    def _control(self, base: str, path: str, body: Any = None, **query: str) -> Any:
        if body is None:
            response = httpx.get(f"{base}/_sandbox/{path}", params=query, timeout=30)
        else:
            response = httpx.post(f"{base}/_sandbox/{path}", json=body, timeout=60)
        response.raise_for_status()
        return response.json() if response.content else None

    def reset(self) -> None:
        self._control(self.po_url, "reset", {})
        self._control(self.pms_url, "reset", {})

    def seed_poweroffice(self, name: str, **counts: int) -> None:
        self._control(self.po_url, "seed", {**counts, "client": client_key(name)})

    def po_stats(self, name: str | None = None) -> dict[str, Any]:
        query = {} if name is None else {"client": client_key(name)}
        found: dict[str, Any] = self._control(self.po_url, "stats", **query)
        return found

    def pms_stats(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self._control(self.pms_url, "stats", api_key=pms_key(name))
        return found

    def pms_customers(self, name: str) -> list[dict[str, Any]]:
        """Every customer in the tenant's PMS workspace."""
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        headers = {"Authorization": f"Bearer {pms_key(name)}"}
        while True:
            params = {"limit": "1000", **({"cursor": cursor} if cursor else {})}
            page = httpx.get(
                f"{self.pms_url}/api/v1/customers", params=params, headers=headers, timeout=30
            ).json()
            found += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return found

    def pms_update_customer(self, name: str, customer_id: str, changes: dict[str, Any]) -> None:
        headers = {"Authorization": f"Bearer {pms_key(name)}"}
        response = httpx.patch(
            f"{self.pms_url}/api/v1/customers/{customer_id}",
            json=changes,
            headers=headers,
            timeout=30,
        )
        response.raise_for_status()

    def po_customer_keys(self, name: str) -> list[tuple[str, str]]:
        """(customer number, email) of the client's customers, read through the simulator."""
        token = httpx.post(
            f"{self.po_url}/OAuth/Token",
            auth=(credentials.APPLICATION_KEY, client_key(name)),
            headers={"Ocp-Apim-Subscription-Key": credentials.SUBSCRIPTION_KEY},
            data={"grant_type": "client_credentials"},
        ).json()["access_token"]
        headers = {
            "Authorization": f"Bearer {token}",
            "Ocp-Apim-Subscription-Key": credentials.SUBSCRIPTION_KEY,
        }
        rows = httpx.get(
            f"{self.po_url}/v2/Customers", params={"PageSize": 20000}, headers=headers, timeout=30
        ).json()
        return sorted((str(row["Number"]), str(row.get("EmailAddress"))) for row in rows)

    def pms_customer_keys(self, name: str) -> list[tuple[str, str]]:
        """(number, email) of every customer in the tenant's PMS workspace, duplicates kept."""
        return sorted((str(c["number"]), str(c.get("email"))) for c in self.pms_customers(name))


def run_tolken(sandbox: FleetSandbox, *args: str) -> subprocess.CompletedProcess[str]:
    """``tolken ARGS --config <the fleet config>`` as a child process."""
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("tolken")),
            *args,
            "--config",
            str(sandbox.config_path),
        ],
        capture_output=True,
        text=True,
        env={**sandbox.environ(), "NO_COLOR": "1"},
        timeout=60,
        check=False,
    )
