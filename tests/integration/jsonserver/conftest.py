"""json-server as the PMS, the PowerOffice simulator, and the worked example's config over both.

The config tolken runs with is ``docs/examples/json-server/pms.yaml`` (the
``pms:`` section of docs/pms-rest.md, verbatim) and ``mapping.yaml`` beside
it, joined to a PowerOffice section for the simulator and a store of the
test's own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration.sync_harness import Sandbox, no_waits
from jsonserver import EXAMPLE, MIDDLEWARE, JsonServer, running_json_server
from loopback import serve
from tolken.compose import open_engine
from tolken.config import load_config
from tolken.engine import SyncEngine
from tolken.sandbox import credentials
from tolken.sandbox.poweroffice import create_app as create_poweroffice

PMS_SECTION = EXAMPLE / "pms.yaml"
MAPPING = EXAMPLE / "mapping.yaml"


@dataclass
class JsonServerSync:
    """tolken between the PowerOffice simulator and json-server, configured as the docs say."""

    po: Sandbox
    js: JsonServer
    tmp: Path
    monkeypatch: pytest.MonkeyPatch

    def config_path(self, *, pms_section: str | None = None, extra: str = "") -> Path:
        """tolken.yaml: simulator, own store, the example's pms: section and mapping."""
        section = PMS_SECTION.read_text() if pms_section is None else pms_section
        text = (
            f"store: sqlite:///{self.tmp / 'tolken.db'}\n"
            "poweroffice:\n"
            f"  base_url: {self.po.po_url}/v2\n"
            f"  token_url: {self.po.po_url}/OAuth/Token\n"
            f"  application_key: {credentials.APPLICATION_KEY}\n"
            f"  client_key: {credentials.CLIENT_KEY}\n"
            f"  subscription_key: {credentials.SUBSCRIPTION_KEY}\n"
            "  requests_per_second: 1000\n"
            "  timeout_seconds: 5\n"
            f"{section}"
            f"mapping: {MAPPING}\n"
            "sync:\n"
            "  interval_seconds: 0.2\n"
            f"{extra}"
        )
        path = self.tmp / "tolken.yaml"
        path.write_text(text, encoding="utf-8")
        self.monkeypatch.setenv("JSON_SERVER_URL", self.js.url)
        return path

    def engine(self, **kwargs: Any) -> AbstractContextManager[SyncEngine]:
        """The engine for :meth:`config_path` (same arguments)."""
        return open_engine(load_config(self.config_path(**kwargs)))

    # -- the PMS side, straight at json-server ------------------------------------------

    def records(self, collection: str, **match: Any) -> list[dict[str, Any]]:
        """json-server's records of ``collection`` whose fields equal ``match``."""
        return [
            r for r in self.js.records(collection) if all(r.get(k) == v for k, v in match.items())
        ]

    def get(self, collection: str, record_id: str) -> dict[str, Any]:
        [found] = [r for r in self.js.records(collection) if str(r["id"]) == str(record_id)]
        return found

    def post(self, collection: str, body: Mapping[str, Any]) -> str:
        response = httpx.post(f"{self.js.url}/{collection}", json=dict(body))
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def patch(self, collection: str, record_id: str, changes: Mapping[str, Any]) -> None:
        response = httpx.patch(f"{self.js.url}/{collection}/{record_id}", json=dict(changes))
        assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def po_url() -> Iterator[str]:
    """The PowerOffice simulator on loopback (rate limit off), once per module."""
    with serve(create_poweroffice(rate_limit_per_second=None)) as url:
        yield url


def json_server_sync(
    po_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    seed: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    middlewares: Sequence[Path] = (MIDDLEWARE,),
) -> Iterator[JsonServerSync]:
    """An emptied simulator and a fresh json-server (``seed`` in its db.json), waits off."""
    po = Sandbox(po_url, "http://unused.invalid", tmp_path)
    po.control("poweroffice", "reset", {})
    with (
        running_json_server(tmp_path / "pms", seed=seed, middlewares=middlewares) as js,
        no_waits(),
    ):
        yield JsonServerSync(po, js, tmp_path, monkeypatch)


@pytest.fixture
def sync(po_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[JsonServerSync]:
    """tolken between an empty simulator and an empty json-server."""
    yield from json_server_sync(po_url, tmp_path, monkeypatch)
