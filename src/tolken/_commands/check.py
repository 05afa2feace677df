"""``tolken check-pms``: the contract check of a URL, or the check of the PMS as configured."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import typer

from tolken._commands.common import EXIT_CONFIG, EXIT_FATAL, load
from tolken.conformance import (
    ConformanceReport,
    format_report,
    run_configured_check,
    run_conformance,
)
from tolken.errors import ConfigError, Fatal
from tolken.mapping.load import BUILTIN_PMS_CONNECTOR

__all__ = ["check_pms_command"]


def check_pms_command(
    url: str | None,
    api_key: str | None,
    config_path: Path | None,
    *,
    as_json: bool,
    show_requests: bool,
    rules: Sequence[str] | None,
    webhook_host: str,
    webhook_port: int,
    webhook_public_url: str | None,
) -> None:
    """Body of ``tolken check-pms``: exit 0 all passed, 1 a rule failed or fatal, 2 usage."""

    def announce(line: str) -> None:
        # The plan comes before any request; with --json stdout keeps one document.
        typer.echo(line, err=as_json)

    if config_path is not None and url is not None:
        _usage("give the PMS URL or --config, not both")
    report: ConformanceReport
    try:
        if config_path is not None:
            config = load(config_path)
            if config.pms.connector == BUILTIN_PMS_CONNECTOR:
                url = config.pms.base_url
                api_key = config.pms.api_key_value()
            else:
                report = run_configured_check(config, rules=rules, announce=announce)
                _print(report, as_json=as_json, show_requests=show_requests)
                return
        if url is None:
            _usage("missing the PMS URL (or --config tolken.yaml)")
        if api_key is None:
            _usage("missing --api-key (or PMS_API_KEY)")
        report = run_conformance(
            url,
            api_key,
            rules=rules,
            webhook_host=webhook_host,
            webhook_port=webhook_port,
            webhook_public_url=webhook_public_url,
            announce=announce,
        )
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    except Fatal as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_FATAL) from None
    _print(report, as_json=as_json, show_requests=show_requests)


def _print(report: ConformanceReport, *, as_json: bool, show_requests: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for line in format_report(report, exchanges=show_requests):
            typer.echo(line)
    raise typer.Exit(0 if report.passed else EXIT_FATAL)


def _usage(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_CONFIG)
