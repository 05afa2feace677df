"""Both sandbox systems on real loopback HTTP, a config pointing at them, and helpers.

Used by ``test_sync_*.py`` and ``test_cli_*.py``: the servers start once per
test module; every test gets empty systems (``/_sandbox/reset``) and its own
SQLite store.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from ruamel.yaml import YAML
from typer.testing import CliRunner

from loopback import serve
from tolken.cli import app as cli_app
from tolken.compose import open_engine
from tolken.config import PMSSettings, PowerOfficeSettings, SyncSettings, TolkenConfig
from tolken.connectors import _http
from tolken.connectors.pms import PMSClient
from tolken.connectors.poweroffice import PowerOfficeClient
from tolken.connectors.ratelimit import clear_shared_limiters
from tolken.connectors.rest import reference_pms_rest
from tolken.engine import SyncEngine
from tolken.sandbox import credentials
from tolken.sandbox.pms import create_app as create_pms
from tolken.sandbox.poweroffice import create_app as create_poweroffice

WRITES = ("POST", "PATCH", "PUT", "DELETE")

PMS_CONNECTORS = ("pms", "rest")
"""The two ways tolken reaches the reference PMS: the built-in connector, and ``connector:
rest`` with the section that describes it; parametrise ``sb`` with these
(``indirect=True``) to run a test both ways."""


@dataclass
class Sandbox:
    """The two running simulators and direct clients for arranging test data."""

    po_url: str
    pms_url: str
    tmp: Path
    pms_connector: str = "pms"

    def po_settings(
        self, *, client_key: str = credentials.CLIENT_KEY, **extra: Any
    ) -> PowerOfficeSettings:
        return PowerOfficeSettings(
            base_url=f"{self.po_url}/v2",
            token_url=f"{self.po_url}/OAuth/Token",
            application_key=SecretStr(credentials.APPLICATION_KEY),
            client_key=SecretStr(client_key),
            subscription_key=SecretStr(credentials.SUBSCRIPTION_KEY),
            requests_per_second=1000.0,
            timeout_seconds=5.0,
            **extra,
        )

    def pms_settings(self, **extra: Any) -> PMSSettings:
        """The PMS as the tolken under test reaches it (``pms_connector``)."""
        if self.pms_connector == "rest":
            rest = reference_pms_rest()
            if extra.get("change_capture") == "polling":
                rest = reference_pms_rest("updated-since")
            extra = {"connector": "rest", "rest": rest, **extra}
        return self._pms_settings(**extra)

    def _pms_settings(self, **extra: Any) -> PMSSettings:
        return PMSSettings(
            base_url=f"{self.pms_url}/api/v1",
            api_key=SecretStr(credentials.PMS_API_KEY),
            timeout_seconds=5.0,
            **extra,
        )

    def config(
        self,
        *,
        po: dict[str, Any] | None = None,
        pms: dict[str, Any] | None = None,
        **sync: Any,
    ) -> TolkenConfig:
        """A config for these systems with a fresh SQLite store in the test's folder."""
        return TolkenConfig(
            store=f"sqlite:///{self.tmp / 'tolken.db'}",
            poweroffice=self.po_settings(**(po or {})),
            pms=self.pms_settings(**(pms or {})),
            sync=SyncSettings(**sync),
        )

    def config_yaml(
        self, *, client_key: str = credentials.CLIENT_KEY, extra: str = "", interval: float = 0.2
    ) -> str:
        """The same config as tolken.yaml text (for the CLI)."""
        pms_extra = ""
        if self.pms_connector == "rest":
            pms_extra = "  connector: rest\n" + textwrap.indent(
                yaml_text(
                    {"rest": reference_pms_rest().model_dump(mode="json", exclude_unset=True)}
                ),
                "  ",
            )
        return (
            f"store: sqlite:///{self.tmp / 'tolken.db'}\n"
            "poweroffice:\n"
            f"  base_url: {self.po_url}/v2\n"
            f"  token_url: {self.po_url}/OAuth/Token\n"
            f"  application_key: {credentials.APPLICATION_KEY}\n"
            f"  client_key: {client_key}\n"
            f"  subscription_key: {credentials.SUBSCRIPTION_KEY}\n"
            "  requests_per_second: 1000\n"
            "  timeout_seconds: 5\n"
            "pms:\n"
            f"  base_url: {self.pms_url}/api/v1\n"
            f"  api_key: {credentials.PMS_API_KEY}\n"
            "  timeout_seconds: 5\n"
            f"{pms_extra}"
            "sync:\n"
            f"  interval_seconds: {interval}\n"
            f"{extra}"
        )

    def write_config(self, **kwargs: Any) -> Path:
        path = self.tmp / "tolken.yaml"
        path.write_text(self.config_yaml(**kwargs), encoding="utf-8")
        return path

    def engine(
        self,
        *,
        po: dict[str, Any] | None = None,
        pms: dict[str, Any] | None = None,
        **sync: Any,
    ) -> AbstractContextManager[SyncEngine]:
        return open_engine(self.config(po=po, pms=pms, **sync))

    # -- arranging data ----------------------------------------------------------
    @contextmanager
    def po(self) -> Iterator[PowerOfficeClient]:
        with PowerOfficeClient(self.po_settings()) as client:
            yield client

    @contextmanager
    def pms(self) -> Iterator[PMSClient]:
        """The built-in client, for arranging and reading test data whatever tolken uses."""
        with PMSClient(self._pms_settings()) as client:
            yield client

    def po_create(self, resource: str, data: Mapping[str, Any]) -> str:
        with self.po() as client:
            key = str(data.get("Code") or f"test-{resource}-{data.get('Name')}")
            return client.create(resource, data, idempotency_key=key).id

    def po_update(self, resource: str, record_id: str, changes: Mapping[str, Any]) -> None:
        with self.po() as client:
            client.update(resource, record_id, changes)

    def po_get(self, resource: str, record_id: str) -> dict[str, Any]:
        with self.po() as client:
            return dict(client.get(resource, record_id).data)

    def po_list(self, resource: str) -> list[dict[str, Any]]:
        with self.po() as client:
            return [dict(r.data) for r in client.list(resource)]

    def pms_create(self, resource: str, data: Mapping[str, Any]) -> str:
        with self.pms() as client:
            return client.create(resource, data, idempotency_key=f"test-{data}").id

    def pms_update(self, resource: str, record_id: str, changes: Mapping[str, Any]) -> None:
        with self.pms() as client:
            client.update(resource, record_id, changes)

    def pms_list(self, resource: str, **match: Any) -> list[dict[str, Any]]:
        with self.pms() as client:
            records = [dict(r.data) for r in client.list(resource)]
        return [r for r in records if all(r.get(k) == v for k, v in match.items())]

    def pms_get(self, resource: str, record_id: str) -> dict[str, Any]:
        with self.pms() as client:
            return dict(client.get(resource, record_id).data)

    # -- control surface -----------------------------------------------------------
    def control(self, system: str, path: str, body: Any = None) -> Any:
        base = self.po_url if system == "poweroffice" else self.pms_url
        if body is None:
            response = httpx.get(f"{base}/_sandbox/{path}")
        else:
            response = httpx.post(f"{base}/_sandbox/{path}", json=body)
        response.raise_for_status()
        return response.json() if response.content else None

    def stats(self, system: str) -> dict[str, int]:
        requests: dict[str, int] = self.control(system, "stats")["requests"]
        return requests

    def writes(self, system: str) -> dict[str, int]:
        """Data writes the system received since the last reset (token requests are not writes)."""
        return {
            k: v
            for k, v in self.stats(system).items()
            if k.split(" ", 1)[0] in WRITES and "/OAuth/Token" not in k
        }

    def reset(self) -> None:
        for system in ("poweroffice", "pms"):
            self.control(system, "reset", {})

    def reset_stats(self) -> None:
        """Forget counted requests (keeps the data): reset stats by reading them twice is not
        possible, so remember the current counts instead."""
        self._baseline = {s: self.stats(s) for s in ("poweroffice", "pms")}

    def writes_since_baseline(self, system: str) -> dict[str, int]:
        base = getattr(self, "_baseline", {}).get(system, {})
        now = self.writes(system)
        return {k: v - base.get(k, 0) for k, v in now.items() if v - base.get(k, 0)}


def yaml_text(data: Any) -> str:
    """``data`` as block-style YAML text."""
    out = io.StringIO()
    YAML().dump(data, out)
    return out.getvalue()


@contextmanager
def running_sandbox() -> Iterator[tuple[str, str]]:
    """Start the PowerOffice simulator (rate limit off) and the reference PMS."""
    with ExitStack() as stack:
        po_url = stack.enter_context(serve(create_poweroffice(rate_limit_per_second=None)))
        pms_url = stack.enter_context(serve(create_pms()))
        yield po_url, pms_url


@contextmanager
def no_waits() -> Iterator[None]:
    """Remove retry and rate-limit waits, with fresh shared rate budgets."""
    clear_shared_limiters()
    with _http.testing():
        yield
    clear_shared_limiters()


def start_tolken(*args: str) -> subprocess.Popen[str]:
    """``tolken ARGS`` as a child process with text pipes and no colours (use it in ``with``)."""
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("tolken")), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )


def run_cli(*args: str) -> tuple[int, str, str]:
    """``tolken ARGS`` in-process (typer's runner): exit code, stdout, stderr."""
    result = CliRunner().invoke(cli_app, list(args))
    return result.exit_code, result.stdout, result.stderr
