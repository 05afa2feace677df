"""``tolken serve``: the watch loop and the web app in one process.

The web app (uvicorn) runs in a background thread; the watch loop runs in the
caller's thread so SIGTERM/SIGINT reach it. They meet at a :class:`WorkQueue`:
the webhook receiver puts verified PMS change items in it and the dashboard's
retry buttons ring it; the loop wakes at once and runs a cycle, which reads
the PMS changes feed (so the changed record is synchronised within a second)
and the failures marked due. Without either it waits ``sync.interval_seconds``.

For an embedding process (the demo, tests)::

    with serving(config) as running:       # app up, webhook registered
        print(running.url)
        watch_loop(running.engine, running.queue)   # until engine.request_stop()
"""

from __future__ import annotations

import os
import secrets as secrets_module
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import httpx
import uvicorn
from fastapi import FastAPI

from tolken._signals import stop_on_signals
from tolken.compose import open_engine
from tolken.config import TolkenConfig
from tolken.connectors.base import WebhookSource
from tolken.engine import CycleReport, SyncEngine
from tolken.errors import AuthError, ConfigError, TolkenError
from tolken.logging import Redactor, get_logger, log_context
from tolken.store import open_store
from tolken.web.app import create_app
from tolken.web.metrics import Metrics
from tolken.web.webhooks import ChangeItem

__all__ = ["Serving", "WorkQueue", "run_serve", "serving", "watch_loop"]

_log = get_logger("tolken.serve")
_WILDCARD_HOSTS = ("0.0.0.0", "::", "")


class WorkQueue:
    """Webhook items and wake-ups for the watch loop (thread-safe)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._items: list[tuple[float, ChangeItem]] = []
        self._woken = False

    def put(self, item: ChangeItem) -> None:
        """A verified PMS change item (the receiver's ``on_webhook``): sync it now."""
        with self._cond:
            self._items.append((time.monotonic(), item))
            self._cond.notify_all()

    def wake(self) -> None:
        """Run a cycle now (failures marked due, a conflict settled, or stopping)."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def wait(self, timeout: float) -> bool:
        """Block until there is work or ``timeout`` passes; True when woken early."""
        with self._cond:
            return self._cond.wait_for(lambda: bool(self._items) or self._woken, timeout)

    def take(self) -> list[ChangeItem]:
        """The items waiting (oldest first), emptying the queue and clearing a wake-up."""
        with self._cond:
            items = [item for _, item in self._items]
            self._items.clear()
            self._woken = False
            return items

    def oldest_age(self) -> float | None:
        """Seconds the oldest waiting item has waited, or None."""
        with self._cond:
            return time.monotonic() - self._items[0][0] if self._items else None


def watch_loop(
    engine: SyncEngine,
    queue: WorkQueue,
    *,
    on_cycle: Callable[[CycleReport], None] | None = None,
    reconcile_first: bool = False,
) -> None:
    """Run cycles until ``engine.request_stop()``: every interval, or at once when woken.

    :meth:`SyncEngine.watch` waiting on ``queue``, logging each cycle with the
    webhook items that woke it. Bad credentials or configuration end the loop
    (raised); an outage or anything else retriable is logged and waited out
    until the next interval. Reconciles every ``sync.reconcile_every`` cycles.
    """
    # The webhook items that woke the coming cycle, and when it started.
    items: list[ChangeItem] = []
    started = 0.0

    def take() -> None:
        nonlocal items, started
        items, started = queue.take(), time.monotonic()

    def wait(seconds: float) -> None:
        queue.wait(seconds)
        take()

    def go_on(exc: TolkenError) -> bool:
        if isinstance(exc, AuthError | ConfigError):
            return False
        _log.error("cycle failed; retrying at the next interval", error=str(exc))
        return True

    def cycled(report: CycleReport) -> None:
        _log_cycle(report, items, time.monotonic() - started)
        if on_cycle is not None:
            on_cycle(report)

    take()
    engine.watch(on_cycle=cycled, on_error=go_on, wait=wait, reconcile_first=reconcile_first)


def _log_cycle(report: CycleReport, items: list[ChangeItem], seconds: float) -> None:
    # The engine logs each flow and each write itself (with run_id, flow, link_id).
    with log_context(run_id=report.run_id):
        _log.info(
            "cycle finished",
            reconcile=report.reconciled,
            webhooks=len(items),
            seconds=round(seconds, 3),
            requests=report.requests,
            interrupted=report.interrupted,
        )


@dataclass
class Serving:
    """A running web app next to an engine: where it listens and how to feed the loop."""

    url: str
    app: FastAPI
    engine: SyncEngine
    queue: WorkQueue
    metrics: Metrics
    webhook_url: str | None


def _start_server(
    app: FastAPI, host: str, port: int
) -> tuple[uvicorn.Server, threading.Thread, int]:
    # log_config=None: uvicorn keeps its hands off logging, so its lines go through ours.
    config = uvicorn.Config(app, host=host, port=port, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="tolken-web", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise ConfigError(f"the dashboard could not listen on {host}:{port}")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, int(bound)


@contextmanager
def serving(
    config: TolkenConfig,
    *,
    engine: SyncEngine | None = None,
    redactor: Redactor | None = None,
    register_webhook: bool = True,
    transports: dict[str, httpx.BaseTransport] | None = None,
    metrics: Metrics | None = None,
) -> Iterator[Serving]:
    """Start the web app for ``config`` (and an engine unless given); stop it on exit.

    An engine made here counts its HTTP responses in ``/metrics``
    (``transports`` are the inner transports, for tests); a given engine's
    connectors should count into ``metrics`` (``metrics.response_hook(system)``), which
    the caller then hands in too.

    Registers ``{serve.public_url}/webhooks/pms`` with the PMS (the listening
    address when no public URL is set and the host is not a wildcard). Without
    ``serve.webhook_secret`` a random secret is made for this process.
    """
    if config.serve is None or config.serve.token is None:
        raise ConfigError("is not set: the dashboard needs a token", key="serve.token")
    serve = config.serve
    secret = (
        serve.webhook_secret.get_secret_value()
        if serve.webhook_secret is not None
        else secrets_module.token_urlsafe(32)
    )
    if redactor is not None:
        redactor.add(secret)
    with ExitStack() as stack:
        if engine is None:
            store = stack.enter_context(open_store(config.store))
            metrics = metrics or Metrics(store.for_tenant(config.tenant))
            # Every response either connector gets is counted by system and status.
            given = transports or {}
            counted = {s: metrics.transport(s, given.get(s)) for s in ("poweroffice", "pms")}
            engine = stack.enter_context(open_engine(config, store=store, transports=counted))
        else:
            metrics = metrics or Metrics(engine.store)
        queue = WorkQueue()
        app = create_app(
            config,
            engine.store,
            on_webhook=queue.put,
            wake=queue.wake,
            metrics=metrics,
            webhook_secret=secret,
        )
        server, thread, port = _start_server(app, serve.host, serve.port)
        stack.callback(_stop_server, server, thread)
        shown_host = "127.0.0.1" if serve.host in _WILDCARD_HOSTS else serve.host
        url = f"http://{shown_host}:{port}"
        base = serve.public_url or (None if serve.host in _WILDCARD_HOSTS else url)
        webhook_url = f"{base.rstrip('/')}/webhooks/pms" if base else None
        if register_webhook and webhook_url:
            _register(engine, webhook_url, secret)
        elif webhook_url is None:
            _log.warning("no serve.public_url: PMS webhooks are not registered (polling only)")
        _log.info("dashboard listening", url=url, webhook_url=webhook_url)
        yield Serving(url, app, engine, queue, metrics, webhook_url)


def _register(engine: SyncEngine, url: str, secret: str) -> None:
    if not isinstance(engine.pms, WebhookSource):
        _log.warning("the PMS connector cannot register webhooks; polling only")
        return
    try:
        engine.pms.ensure_webhook(url, secret)
    except TolkenError as exc:
        # The loop still polls the changes feed; webhooks only make it faster.
        _log.warning("could not register the PMS webhook; polling only", error=str(exc))
        return
    _log.info("PMS webhook registered", url=url)


def _stop_server(server: uvicorn.Server, thread: threading.Thread) -> None:
    server.should_exit = True
    thread.join(timeout=10)


def run_serve(
    config: TolkenConfig,
    *,
    echo: Callable[[str], None] = print,
    on_cycle: Callable[[CycleReport], None] | None = None,
    reconcile_first: bool = False,
) -> int:
    """Body of ``tolken serve`` (and of ``sync --watch`` with a ``serve:`` section).

    Serves the dashboard and the webhook receiver and syncs until
    SIGTERM/SIGINT; returns the exit code. ``on_cycle`` sees every cycle's report;
    ``reconcile_first`` starts with a reconcile (``sync --watch --reconcile``).
    """
    from tolken.logging import configure_logging

    level = os.environ.get("TOLKEN_LOG_LEVEL", "INFO").upper()
    redactor = configure_logging(config.secrets(), level=level)
    with serving(config, redactor=redactor) as running:
        engine, queue = running.engine, running.queue

        def stop() -> None:
            engine.request_stop()  # finish the record in flight, commit
            queue.wake()

        with stop_on_signals(stop):
            echo(f"dashboard: {running.url}/  (sign in with ?token=<serve.token>)")
            if running.webhook_url:
                echo(f"PMS webhooks: {running.webhook_url}")
            try:
                watch_loop(engine, queue, on_cycle=on_cycle, reconcile_first=reconcile_first)
            except (AuthError, ConfigError) as exc:
                echo(f"error: {exc}")
                return 1 if isinstance(exc, AuthError) else 2
    echo("stopped")
    return 0
