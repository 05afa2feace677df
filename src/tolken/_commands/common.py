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
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from tolken._redact import shared as shared_redactor
from tolken.config import TolkenConfig, load_config
from tolken.errors import ConfigError, Fatal, TolkenError
from tolken.logging import configure_logging

__all__ = ["EXIT_CONFIG", "EXIT_FATAL", "console", "dump_json", "load", "one_line_errors"]

EXIT_FATAL = 1
EXIT_CONFIG = 2


def console() -> Console:
    """A rich console on standard output (plain text when it is not a terminal).

    Piped output gets a wide page so table cells (error messages) stay on one line for grep.
    """
    width = None if sys.stdout.isatty() else 200
    return Console(highlight=False, soft_wrap=True, width=width)


def _error(message: str) -> None:
    typer.echo(f"error: {shared_redactor().text(message)}", err=True)


def load(path: Path) -> TolkenConfig:
    """The config at ``path``; a bad one prints the file, line and key and exits 2.

    Also sends logs to stderr (so ``--json`` output on stdout stays one JSON
    object), at ``TOLKEN_LOG_LEVEL`` (default ``ERROR``: retries are not news).
    """
    try:
        config = load_config(path)
    except ConfigError as exc:
        _error(str(exc))
        raise typer.Exit(EXIT_CONFIG) from None
    setup_logging(config)
    return config


def setup_logging(config: TolkenConfig) -> None:
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
        _error(str(exc))
        raise typer.Exit(EXIT_CONFIG) from None
    except (Fatal, TolkenError) as exc:
        if os.environ.get("TOLKEN_DEBUG"):
            raise
        _error(_describe(exc))
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
