"""Build the two connectors from a config, through the ``tolken.connectors`` entry points.

The engine hands each connector an ``httpx.Client`` whose request hook counts
every request (token requests and retries included), so a cycle can report
``requests`` per system without the connectors knowing.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tolken.config import TolkenConfig
from tolken.connectors.base import Connector, load_connector_class

__all__ = ["ConnectorPair", "RequestCounter", "build_connectors"]


class RequestCounter:
    """Thread-safe count of HTTP requests per system."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def hook(self, system: str) -> Callable[[httpx.Request], None]:
        """An httpx ``request`` event hook that counts under ``system``."""

        def count(_request: httpx.Request) -> None:
            with self._lock:
                self._counts[system] += 1

        return count

    def snapshot(self) -> dict[str, int]:
        """The counts so far."""
        with self._lock:
            return dict(self._counts)


@dataclass
class ConnectorPair:
    """The PowerOffice and PMS connectors of one config, with their counted HTTP clients."""

    poweroffice: Connector
    pms: Connector
    counter: RequestCounter
    _clients: list[httpx.Client] = field(default_factory=list)

    def close(self) -> None:
        """Close the connectors and the HTTP clients made for them."""
        for connector in (self.poweroffice, self.pms):
            connector.close()
        for client in self._clients:
            client.close()


def _make(name: str, settings: Any, http: httpx.Client) -> Connector:
    cls: Any = load_connector_class(name)
    connector: Connector = cls(settings, http=http)
    return connector


def build_connectors(
    config: TolkenConfig,
    *,
    transports: dict[str, httpx.BaseTransport] | None = None,
) -> ConnectorPair:
    """Both connectors for ``config``; ``transports`` (by system) lets tests go in-process."""
    counter = RequestCounter()
    transports = transports or {}
    po_http = httpx.Client(
        timeout=config.poweroffice.timeout_seconds,
        event_hooks={"request": [counter.hook("poweroffice")]},
        transport=transports.get("poweroffice"),
    )
    pms_http = httpx.Client(
        timeout=config.pms.timeout_seconds,
        event_hooks={"request": [counter.hook("pms")]},
        transport=transports.get("pms"),
    )
    try:
        poweroffice = _make("poweroffice", config.poweroffice, po_http)
        pms = _make(config.pms.connector, config.pms, pms_http)
    except BaseException:
        po_http.close()
        pms_http.close()
        raise
    return ConnectorPair(poweroffice, pms, counter, [po_http, pms_http])
