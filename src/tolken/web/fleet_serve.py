"""``tolken serve`` in fleet mode: the fleet's web app, and no sync in this process.

The workers (``tolken worker``) run every tenant's jobs; this process serves
the tenants page and each tenant's pages, takes PMS webhooks and queues the
tenant's job, finalises PowerOffice onboardings, and answers ``/metrics``
from the store. Several may run behind a load balancer: all they share is the
store (and its job queue).

For an embedding process (tests)::

    with fleet_serving(config) as running:
        print(running.url)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from tolken._signals import stop_on_signals
from tolken.config import FleetConfig
from tolken.errors import ConfigError
from tolken.fleet import Fleet, open_fleet
from tolken.logging import Redactor, get_logger
from tolken.web.fleet import create_fleet_app
from tolken.web.onboarding import Onboarding
from tolken.web.serve import _WILDCARD_HOSTS, _start_server, _stop_server

__all__ = ["FleetServing", "fleet_serving", "run_fleet_serve"]

_log = get_logger("tolken.serve")


@dataclass
class FleetServing:
    """The fleet's web app, running: where it listens, and the fleet it serves."""

    url: str
    app: FastAPI
    fleet: Fleet


@contextmanager
def fleet_serving(
    config: FleetConfig,
    *,
    redactor: Redactor | None = None,
) -> Iterator[FleetServing]:
    """Open the fleet of ``config`` and serve its web app; stop and close both on exit."""
    if config.serve is None or config.serve.token is None:
        raise ConfigError("is not set: the dashboard needs a token", key="serve.token")
    serve = config.serve
    with ExitStack() as stack:
        fleet = stack.enter_context(open_fleet(config))
        onboarding = Onboarding(fleet, redactor=redactor)
        app = create_fleet_app(fleet, extra=onboarding.add_routes)
        server, thread, port = _start_server(app, serve.host, serve.port)
        stack.callback(_stop_server, server, thread)
        shown_host = "127.0.0.1" if serve.host in _WILDCARD_HOSTS else serve.host
        url = f"http://{shown_host}:{port}"
        onboarding.listening_at(url)
        _log.info("fleet dashboard listening", url=url)
        yield FleetServing(url, app, fleet)


def run_fleet_serve(config: FleetConfig, *, echo: Callable[[str], None] = print) -> int:
    """Body of ``tolken serve`` for a fleet config: serve until SIGTERM/SIGINT; the exit code."""
    from tolken.logging import configure_logging

    level = os.environ.get("TOLKEN_LOG_LEVEL", "INFO").upper()
    redactor = configure_logging(config.secrets(), level=level)
    stopped = threading.Event()
    with fleet_serving(config, redactor=redactor) as running, stop_on_signals(stopped.set):
        echo(f"fleet dashboard: {running.url}/  (sign in with ?token=<serve.token>)")
        public = (config.serve.public_url if config.serve else None) or running.url
        echo(f"PMS webhooks: {public.rstrip('/')}/webhooks/pms/<tenant>")
        while not stopped.wait(1.0):
            pass
    echo("stopped")
    return 0
