"""The composition root: the one place a config becomes a running engine.

:func:`open_engine` loads the mapping, opens the store (unless the caller
shares one), makes one ``httpx.Client`` per remote system whose request hook
counts every request (token requests and retries included), builds the two
connectors through the ``tolken.connectors`` entry points (PowerOffice's with
the request budget of its subscription key, see :func:`poweroffice_limiter`)
and wires them into a :class:`~tolken.engine.SyncEngine`. Whatever it opened
it closes again, in reverse order, when the ``with`` block ends. The engine itself never speaks
HTTP: it gets connectors, and a :class:`RequestCounter` it reads for the
``requests`` of its report.

The CLI, ``tolken serve``, the demo, the benchmarks and the tests all build
their engine here::

    with open_engine(load_config("tolken.yaml")) as engine:
        print(engine.run_cycle().to_json())

``transports`` (by system: ``poweroffice``, ``pms``) is the seam for tests and
for ``/metrics``: each client then sends through the given transport (an
in-process app, a counting wrapper) instead of its own.
"""

from __future__ import annotations

import inspect
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx

from tolken.config import PMSSettings, PowerOfficeSettings, TolkenConfig
from tolken.connectors import TokenClient
from tolken.connectors.base import Connector, load_connector_class
from tolken.connectors.ratelimit import RateLimiter, StopSignal, shared_limiter
from tolken.engine import SyncEngine
from tolken.mapping import load_mapping
from tolken.mapping.load import BUILTIN_PMS_CONNECTOR
from tolken.store import Store, open_store
from tolken.vocabulary import Side

__all__ = ["RequestCounter", "open_engine", "poweroffice_limiter"]


class RequestCounter:
    """Thread-safe count of HTTP requests per system; the engine reads :meth:`snapshot`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def hook(self, system: Side) -> Callable[[httpx.Request], None]:
        """An httpx ``request`` event hook that counts under ``system``."""

        def count(_request: httpx.Request) -> None:
            with self._lock:
                self._counts[system] += 1

        return count

    def snapshot(self) -> dict[str, int]:
        """The counts so far."""
        with self._lock:
            return dict(self._counts)


def poweroffice_limiter(
    settings: PowerOfficeSettings, *, stop: StopSignal | None = None
) -> RateLimiter:
    """The PowerOffice request budget: this process's in-memory one for the subscription key.

    Single mode runs one process per key, so its budget lives in memory and is
    shared by every connector of the process. (Fleet mode, many processes on one
    key, takes :func:`~tolken.connectors.ratelimit.postgres_limiter` on the
    store's database instead.) ``stop`` ends its waits.
    """
    return shared_limiter(
        settings.subscription_key.get_secret_value(), settings.requests_per_second, stop=stop
    )


@contextmanager
def open_engine(
    config: TolkenConfig,
    *,
    store: Store | None = None,
    transports: Mapping[str, httpx.BaseTransport] | None = None,
    stop: threading.Event | None = None,
    rate_limiter: RateLimiter | None = None,
) -> Iterator[SyncEngine]:
    """The engine for ``config`` with everything it needs; closed again on exit.

    A ``store`` handed in is shared, not owned: it stays open afterwards (the
    dashboard and the demo keep using theirs). ``stop`` (made here when not
    given) is the one stop signal of the engine and both connectors:
    ``engine.request_stop()`` sets it, and every retry wait and listing of a
    connector that takes a ``stop`` ends within a second
    (:class:`~tolken.errors.Stopped`). ``rate_limiter`` replaces PowerOffice's
    in-memory budget (fleet mode hands in the PostgreSQL one of its subscription
    key, drawing on ``stop`` too); the caller keeps and closes it.
    """
    # A bad mapping fails before anything is opened; a custom PMS connector has its own fields.
    contract = config.pms.connector == BUILTIN_PMS_CONNECTOR
    mapping = load_mapping(config.mapping, pms_contract=contract)
    with ExitStack() as opened:
        if store is None:
            store = opened.enter_context(open_store(config.store))
        counter = RequestCounter()
        given = transports or {}
        stop = stop if stop is not None else threading.Event()

        def connect(
            system: Side, name: str, settings: PowerOfficeSettings | PMSSettings, **extra: Any
        ) -> Connector:
            http = TokenClient(
                timeout=settings.timeout_seconds,
                event_hooks={"request": [counter.hook(system)]},
                transport=given.get(system),
            )
            opened.callback(http.close)
            connector_class: Any = load_connector_class(name)
            if _takes_stop(connector_class):
                extra = {**extra, "stop": stop}
            connector: Connector = connector_class(settings, http=http, **extra)
            opened.callback(connector.close)
            return connector

        limiter = rate_limiter or poweroffice_limiter(config.poweroffice, stop=stop)
        poweroffice = connect(
            "poweroffice", "poweroffice", config.poweroffice, rate_limiter=limiter
        )
        pms = connect("pms", config.pms.connector, config.pms)
        yield SyncEngine(config, store, poweroffice, pms, mapping, counter=counter, stop=stop)


def _takes_stop(connector_class: Any) -> bool:
    """True when the connector's constructor takes ``stop`` (the built-in ones do).

    A custom connector written before the stop signal existed is built as before;
    the engine still ends its listings between records when a stop comes.
    """
    try:
        return "stop" in inspect.signature(connector_class).parameters
    except (TypeError, ValueError):
        return False
