"""The ``tolken`` command line. Thin: parse options, call the engine, print results.

Exit codes (fixed contract): 0 done, 1 fatal error (bad credentials,
unreachable system), 2 bad configuration.
"""

from __future__ import annotations

from pathlib import Path

import typer

from tolken import __version__
from tolken._starter import STARTER_CONFIG

app = typer.Typer(
    name="tolken",
    help="Two-way sync between PowerOffice Go and your project-management system.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tolken {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Two-way sync between PowerOffice Go and your project-management system."""


@app.command()
def init(
    path: Path = typer.Option(Path("tolken.yaml"), "--config", help="Where to write the file."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a starter tolken.yaml (secrets as ${VAR} references)."""
    if path.exists() and not force:
        typer.echo(f"{path} already exists; use --force to overwrite it", err=True)
        raise typer.Exit(2)
    path.write_text(STARTER_CONFIG, encoding="utf-8")
    typer.echo(f"wrote {path}; set the environment variables it names, then run tolken sync")


@app.command()
def docs(
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write the RST here instead of to standard output."
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="Use the mapping this tolken.yaml names (default: ./tolken.yaml if present, "
        "else the built-in mapping). Secrets need not be set.",
    ),
) -> None:
    """Write the dataflow document (RST) from the active mapping."""
    from datetime import date

    from tolken.errors import ConfigError
    from tolken.mapping.docs import dataflow_document

    try:
        text = dataflow_document(config, generated=date.today())
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)


@app.command("check-pms")
def check_pms(
    url: str = typer.Argument(
        ..., help="The PMS API root, e.g. https://pms.example.com/api/v1 (bare host: + /api/v1)."
    ),
    api_key: str = typer.Option(
        ..., "--api-key", envvar="PMS_API_KEY", help="The PMS API key (or set PMS_API_KEY)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of lines."),
    rule: list[str] | None = typer.Option(None, "--rule", help="Run only this rule (repeatable)."),
    webhook_host: str = typer.Option(
        "127.0.0.1", "--webhook-host", help="Interface the check's webhook receiver listens on."
    ),
    webhook_port: int = typer.Option(
        0, "--webhook-port", help="Port of the webhook receiver (0: any free port)."
    ),
    webhook_public_url: str | None = typer.Option(
        None,
        "--webhook-public-url",
        help="URL the PMS should post webhooks to, when it reaches the receiver through a proxy "
        "or tunnel (a remote PMS).",
    ),
) -> None:
    """Check a PMS against the REST contract: one PASS/FAIL line per rule (exit 1 if any fail)."""
    import json

    from tolken.conformance import format_report, run_conformance
    from tolken.errors import ConfigError, Unreachable

    try:
        report = run_conformance(
            url,
            api_key,
            rules=rule or None,
            webhook_host=webhook_host,
            webhook_port=webhook_port,
            webhook_public_url=webhook_public_url,
        )
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except Unreachable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for line in format_report(report):
            typer.echo(line)
    raise typer.Exit(0 if report.passed else 1)


@app.command()
def sandbox(
    poweroffice_port: int = typer.Option(
        8471, "--poweroffice-port", help="Port of the PowerOffice Go simulator (0: any free port)."
    ),
    pms_port: int = typer.Option(
        8472, "--pms-port", help="Port of the reference PMS (0: any free port)."
    ),
    data_dir: Path = typer.Option(
        Path(".tolken-sandbox"), "--data-dir", help="Where both keep their SQLite state."
    ),
) -> None:
    """Run the PowerOffice Go simulator and the reference PMS on 127.0.0.1 until SIGTERM/Ctrl-C."""
    from tolken.sandbox.runner import run_sandbox

    raise typer.Exit(
        run_sandbox(data_dir, poweroffice_port=poweroffice_port, pms_port=pms_port, echo=typer.echo)
    )


def main() -> None:
    """Console-script entry point."""
    app()
