"""What every operator command shares: loading the config, exit codes, one-line errors.

Error lines and JSON output go through the process's redactor (the one the
JSON logs use, holding the configured secrets), as the last line of defence
behind the connectors, which redact remote messages as they arrive, and the
store, which redacts the messages it keeps. (Tables print what the store
holds; the demo prints its dashboard token on purpose.)
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from tolken._redact import shared as shared_redactor
from tolken.compose import open_engine
from tolken.config import FleetConfig, TolkenConfig, load_any_config
from tolken.engine import SyncEngine
from tolken.errors import ConfigError, Fatal, TolkenError
from tolken.logging import configure_logging

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FATAL",
    "console",
    "dump_json",
    "load",
    "one_line_errors",
    "open_command_engine",
    "print_error",
]

EXIT_FATAL = 1
EXIT_CONFIG = 2


def console() -> Console:
    """A rich console on standard output (plain text when it is not a terminal).

    Piped output gets a wide page so table cells (error messages) stay on one line for grep.
    """
    width = None if sys.stdout.isatty() else 200
    return Console(highlight=False, soft_wrap=True, width=width)


def print_error(message: str) -> None:
    """``error: <message>`` on stderr, redacted."""
    typer.echo(f"error: {shared_redactor().text(message)}", err=True)


# The fleets whose tenants this process loaded, by (store, tenant): their engines draw on
# the subscription key's PostgreSQL budget, shared with the workers.
_fleet_tenants: dict[tuple[str, str], FleetConfig] = {}


def load(path: Path, tenant: str | None = None) -> TolkenConfig:
    """The config at ``path``; a bad one prints the file, line and key and exits 2.

    A fleet config needs ``tenant`` (``--tenant ID``) and gives that tenant's
    single-mode config; a single-mode config refuses one. Also sends logs to
    stderr (so ``--json`` output on stdout stays one JSON object), at
    ``TOLKEN_LOG_LEVEL`` (default ``ERROR``: retries are not news).
    """
    try:
        config = load_any_config(path)
        if isinstance(config, FleetConfig):
            if tenant is None:
                raise ConfigError(
                    "this is a fleet config: name the tenant with --tenant ID "
                    "(tolken tenants list shows them)",
                    location=str(path),
                    key="fleet",
                )
            setup_logging(config)
            with one_line_errors():
                single = _tenant_config(config, tenant)
            _fleet_tenants[(single.store, single.tenant)] = config
            return single
        if tenant is not None:
            raise ConfigError(
                "--tenant is for fleet configs (with a fleet: section); "
                "this single-mode config syncs one client: leave --tenant out",
                location=str(path),
            )
    except ConfigError as exc:
        print_error(str(exc))
        raise typer.Exit(EXIT_CONFIG) from None
    setup_logging(config)
    return config


def _tenant_config(config: FleetConfig, tenant: str) -> TolkenConfig:
    from tolken.store import UnknownTenant, open_store

    with open_store(config.store) as store:
        try:
            found = store.tenant_registry(config.fleet.secret_key).get(tenant)
        except UnknownTenant:
            raise ConfigError(
                f"the fleet has no tenant {tenant!r} (tolken tenants list shows them)"
            ) from None
    shared_redactor().add(*found.settings.secrets())
    return config.tenant_config(found.settings)


@contextmanager
def open_command_engine(config: TolkenConfig) -> Iterator[SyncEngine]:
    """The engine of a command: a fleet tenant's draws on the fleet's shared budget."""
    fleet = _fleet_tenants.get((config.store, config.tenant))
    if fleet is None:
        with open_engine(config) as engine:
            yield engine
        return
    from tolken.connectors.ratelimit import postgres_limiter

    stop = threading.Event()
    poweroffice = fleet.poweroffice
    limiter = postgres_limiter(
        fleet.store,
        poweroffice.subscription_key.get_secret_value(),
        poweroffice.requests_per_second,
        stop=stop,
    )
    try:
        with open_engine(config, stop=stop, rate_limiter=limiter) as engine:
            yield engine
    finally:
        limiter.close()


def setup_logging(config: TolkenConfig | FleetConfig) -> None:
    """Logs as redacted lines on stderr, never on stdout."""
    level_name = os.environ.get("TOLKEN_LOG_LEVEL", "ERROR").upper()
    level = logging.getLevelName(level_name)
    if not isinstance(level, int):
        level = logging.ERROR
    configure_logging(config.secrets(), level=level)


def _describe(exc: TolkenError) -> str:
    text = str(exc).strip().splitlines()
    line = " ".join(part.strip() for part in text) or type(exc).__name__
    if exc.system is None and not isinstance(exc, ConfigError):
        line = f"{type(exc).__name__}: {line}"
    return line


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn tolken errors into one line on stderr and the contract's exit code, no traceback.

    ``ConfigError`` exits 2, any other error that stops the work exits 1.
    ``TOLKEN_DEBUG=1`` re-raises so the traceback shows.
    """
    try:
        yield
    except ConfigError as exc:
        print_error(str(exc))
        raise typer.Exit(EXIT_CONFIG) from None
    except (Fatal, TolkenError) as exc:
        if os.environ.get("TOLKEN_DEBUG"):
            raise
        print_error(_describe(exc))
        raise typer.Exit(EXIT_FATAL) from None


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def dump_json(data: Any, *, one_line: bool = False) -> None:
    """Print ``data`` as JSON on standard output (``one_line``: a JSON Lines record)."""
    text = json.dumps(data, default=_default, indent=None if one_line else 2)
    sys.stdout.write(shared_redactor().text(text) + "\n")
    sys.stdout.flush()
