"""The ``tolken`` command line. Thin: parse options, call the engine, print results.

Exit codes (fixed contract): 0 done, 1 fatal error (bad credentials,
unreachable system), 2 bad configuration.
"""

from __future__ import annotations

from pathlib import Path

import typer

from tolken import __version__
from tolken._starter import STARTER_CONFIG, STARTER_REST_CONFIG
from tolken.vocabulary import ConflictPolicy

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
    pms: str = typer.Option(
        "pms",
        "--pms",
        help="pms: a PMS offering tolken's REST contract; rest: a PMS with its own REST API "
        "(a commented pms.rest section to fill in, see docs/pms-rest.md).",
    ),
) -> None:
    """Write a starter tolken.yaml (secrets as ${VAR} references)."""
    starters = {"pms": STARTER_CONFIG, "rest": STARTER_REST_CONFIG}
    if pms not in starters:
        typer.echo(f"--pms must be one of {', '.join(starters)}, not {pms!r}", err=True)
        raise typer.Exit(2)
    if path.exists() and not force:
        typer.echo(f"{path} already exists; use --force to overwrite it", err=True)
        raise typer.Exit(2)
    path.write_text(starters[pms], encoding="utf-8")
    then = "tolken check-pms --config " + str(path) if pms == "rest" else "tolken sync"
    typer.echo(f"wrote {path}; set the environment variables it names, then run {then}")


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
    url: str | None = typer.Argument(
        None,
        help="The PMS API root, e.g. https://pms.example.com/api/v1 (bare host: + /api/v1). "
        "Leave out with --config.",
    ),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="PMS_API_KEY", help="The PMS API key (or set PMS_API_KEY)."
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="Check the PMS as this tolken.yaml configures it (its connector, URL and key) "
        "instead of URL against the REST contract.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of lines."),
    show_requests: bool = typer.Option(
        False, "--show-requests", help="Print every request of every rule and its answer."
    ),
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
    """Check a PMS against the REST contract, or as --config configures it: one line per rule.

    PASS, FAIL, ABSENT (a capability the PMS lacks; not a failure) or SKIP;
    exit 1 if any fails. It says first what test records it will create, and
    deletes them at the end (listing any it cannot).
    """
    from tolken._commands.check import check_pms_command

    check_pms_command(
        url,
        api_key,
        config,
        as_json=as_json,
        show_requests=show_requests,
        rules=rule or None,
        webhook_host=webhook_host,
        webhook_port=webhook_port,
        webhook_public_url=webhook_public_url,
    )


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


@app.command()
def demo(
    serve: bool = typer.Option(
        True, "--serve/--no-serve", help="Serve the dashboard and watch loop until Ctrl-C."
    ),
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        help="Folder for the config, store, logs and sandbox state (default: a new temp folder).",
    ),
    port: int = typer.Option(
        8470, "--port", help="Dashboard port (0: any free port; a busy 8470 falls back to one)."
    ),
) -> None:
    """Sandbox, Norwegian sample data, a first sync, an edit each way, then the dashboard."""
    from tolken._commands.common import console
    from tolken.demo import DemoOptions, run_demo

    raise typer.Exit(
        run_demo(DemoOptions(serve=serve, data_dir=data_dir, port=port), console=console())
    )


_CONFIG_HELP = "The tolken.yaml to use."


def _config_option() -> Path:
    value: Path = typer.Option(Path("tolken.yaml"), "--config", help=_CONFIG_HELP)
    return value


def _tenant_option() -> str | None:
    value: str | None = typer.Option(
        None, "--tenant", help="Fleet mode: the tenant to work on (tolken tenants list)."
    )
    return value


@app.command()
def sync(
    config: Path = _config_option(),
    tenant: str | None = _tenant_option(),
    once: bool = typer.Option(False, "--once", help="Run one cycle of every flow and exit."),
    watch: bool = typer.Option(
        False, "--watch", help="Run cycles every sync.interval_seconds until SIGTERM/SIGINT."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per cycle."),
    reconcile: bool = typer.Option(
        False, "--reconcile", help="Compare full listings (address-only edits, deletes)."
    ),
    confirm_deletes: bool = typer.Option(
        False, "--confirm-deletes", help="Let a reconcile deactivate more than the breaker allows."
    ),
) -> None:
    """Synchronise PowerOffice Go and the PMS (exit 0 done, 1 fatal error, 2 bad config)."""
    from tolken._commands.sync import sync_command

    sync_command(
        config,
        tenant=tenant,
        once=once,
        watch=watch,
        as_json=as_json,
        reconcile=reconcile,
        confirm_deletes=confirm_deletes,
    )


@app.command()
def plan(
    config: Path = _config_option(),
    tenant: str | None = _tenant_option(),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    reconcile: bool = typer.Option(False, "--reconcile", help="Plan a reconcile cycle."),
) -> None:
    """Dry run: what a sync would create, link and update, and the ambiguous matches."""
    from tolken._commands.sync import plan_command

    plan_command(config, tenant=tenant, as_json=as_json, reconcile=reconcile)


@app.command()
def status(
    config: Path = _config_option(),
    tenant: str | None = _tenant_option(),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Links per flow, open failures, parked conflicts and the last run."""
    from tolken._commands.inspect import status_command

    status_command(config, tenant=tenant, as_json=as_json)


@app.command()
def links(
    config: Path = _config_option(),
    tenant: str | None = _tenant_option(),
    flow: str | None = typer.Option(None, "--flow", help="Only this flow."),
    state: str | None = typer.Option(
        None, "--state", help="Only links in this state (active, source-deleted, pms-deleted)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array."),
) -> None:
    """List the links between PowerOffice and PMS records."""
    from tolken._commands.inspect import links_command

    links_command(config, tenant=tenant, flow=flow, state=state, as_json=as_json)


@app.command()
def conflicts(
    config: Path = _config_option(),
    tenant: str | None = _tenant_option(),
    flow: str | None = typer.Option(None, "--flow", help="Only this flow."),
    parked: bool = typer.Option(False, "--parked", help="Only conflicts waiting for a person."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array."),
) -> None:
    """List recorded conflicts with both values, the policy and the winner."""
    from tolken._commands.inspect import conflicts_command

    conflicts_command(config, tenant=tenant, flow=flow, parked=parked, as_json=as_json)


@app.command()
def failures(
    config: Path = _config_option(),
    tenant: str | None = _tenant_option(),
    flow: str | None = typer.Option(None, "--flow", help="Only this flow."),
    include_resolved: bool = typer.Option(False, "--all", help="Include resolved failures."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array."),
) -> None:
    """List parked records with the remote error message and the next retry."""
    from tolken._commands.inspect import failures_command

    failures_command(
        config, tenant=tenant, flow=flow, include_resolved=include_resolved, as_json=as_json
    )


@app.command()
def retry(
    failure_ids: list[int] | None = typer.Argument(
        None, help="Failure ids (from tolken failures); all parked records when omitted."
    ),
    config: Path = _config_option(),
    tenant: str | None = _tenant_option(),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Make parked records due now and run a sync cycle."""
    from tolken._commands.sync import retry_command

    retry_command(config, failure_ids or [], tenant=tenant, as_json=as_json)


@app.command()
def link(
    po_id: str = typer.Argument(..., help="The PowerOffice record id."),
    pms_id: str = typer.Argument(..., help="The PMS record id."),
    flow: str = typer.Option(..., "--flow", help="departments, customers or projects."),
    config: Path = _config_option(),
    tenant: str | None = _tenant_option(),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Link two existing records by hand (refuses a record that is already linked)."""
    from tolken._commands.inspect import link_command

    link_command(config, tenant=tenant, flow=flow, po_id=po_id, pms_id=pms_id, as_json=as_json)


@app.command()
def serve(
    config: Path = _config_option(),
    host: str | None = typer.Option(None, "--host", help="Listen here instead of serve.host."),
    port: int | None = typer.Option(
        None, "--port", help="Listen on this port instead of serve.port (0: any free port)."
    ),
) -> None:
    """Run the watch loop with the dashboard, /metrics, /healthz and the PMS webhook receiver."""
    from tolken._commands.serve import serve_command

    serve_command(config, host=host, port=port)


@app.command()
def worker(
    config: Path = _config_option(),
    concurrency: int | None = typer.Option(
        None, "--concurrency", help="Jobs at once in this process (default: fleet.concurrency)."
    ),
) -> None:
    """Fleet mode: run tenants' sync jobs, the dispatcher and stalled-job recovery until SIGTERM."""
    from tolken._commands.fleet import worker_command

    worker_command(config, concurrency=concurrency)


tenants_app = typer.Typer(
    help="Fleet mode: add, update, list, pause, resume, resync, remove, check, onboard, rekey.",
    no_args_is_help=True,
)
app.add_typer(tenants_app, name="tenants")

_JSON_HELP = "Print JSON."


def _tenant_argument() -> str:
    value: str = typer.Argument(..., help="The tenant id.")
    return value


def _json_option() -> bool:
    value: bool = typer.Option(False, "--json", help=_JSON_HELP)
    return value


def _interval_option() -> float | None:
    value: float | None = typer.Option(
        None, "--interval-seconds", help="Seconds between scheduled syncs (default: the config's)."
    )
    return value


def _policy_option() -> ConflictPolicy | None:
    value: ConflictPolicy | None = typer.Option(
        None, "--conflict-policy", help="newest-wins, poweroffice-wins, pms-wins or manual."
    )
    return value


@tenants_app.command("add")
def tenants_add(
    tenant_id: str = _tenant_argument(),
    poweroffice_client_key: str = typer.Option(
        ...,
        "--poweroffice-client-key",
        envvar="POWEROFFICE_CLIENT_KEY",
        help="The tenant's PowerOffice client key (or set POWEROFFICE_CLIENT_KEY).",
    ),
    pms_api_key: str = typer.Option(
        ..., "--pms-api-key", envvar="PMS_API_KEY", help="The tenant's PMS API key (or PMS_API_KEY)"
    ),
    pms_base_url: str | None = typer.Option(
        None, "--pms-base-url", help="The tenant's PMS API root (default: pms.base_url)."
    ),
    webhook_secret: str | None = typer.Option(
        None,
        "--webhook-secret",
        envvar="TOLKEN_TENANT_WEBHOOK_SECRET",
        help="The secret the tenant's PMS signs webhooks with (16+ characters).",
    ),
    interval_seconds: float | None = _interval_option(),
    conflict_policy: ConflictPolicy | None = _policy_option(),
    config: Path = _config_option(),
    as_json: bool = _json_option(),
) -> None:
    """Add a tenant (credentials encrypted in the store); it is due at once."""
    from tolken._commands.fleet import tenants_add as body

    body(
        config,
        tenant_id,
        poweroffice_client_key=poweroffice_client_key,
        pms_api_key=pms_api_key,
        pms_base_url=pms_base_url,
        webhook_secret=webhook_secret,
        interval_seconds=interval_seconds,
        conflict_policy=conflict_policy,
        as_json=as_json,
    )


@tenants_app.command("update")
def tenants_update(
    tenant_id: str = _tenant_argument(),
    poweroffice_client_key: str | None = typer.Option(
        None,
        "--poweroffice-client-key",
        envvar="POWEROFFICE_CLIENT_KEY",
        help="A new PowerOffice client key (or set POWEROFFICE_CLIENT_KEY).",
    ),
    pms_api_key: str | None = typer.Option(
        None, "--pms-api-key", envvar="PMS_API_KEY", help="A new PMS API key (or PMS_API_KEY)."
    ),
    pms_base_url: str | None = typer.Option(
        None, "--pms-base-url", help="A new PMS API root for this tenant."
    ),
    webhook_secret: str | None = typer.Option(
        None,
        "--webhook-secret",
        envvar="TOLKEN_TENANT_WEBHOOK_SECRET",
        help="A new webhook secret (16+ characters).",
    ),
    interval_seconds: float | None = _interval_option(),
    conflict_policy: ConflictPolicy | None = _policy_option(),
    config: Path = _config_option(),
    as_json: bool = _json_option(),
) -> None:
    """Change a tenant's settings or credentials; what is not given stays as it is."""
    from tolken._commands.fleet import tenants_update as body

    body(
        config,
        tenant_id,
        changes={
            "poweroffice_client_key": poweroffice_client_key,
            "pms_api_key": pms_api_key,
            "pms_base_url": pms_base_url,
            "webhook_secret": webhook_secret,
            "interval_seconds": interval_seconds,
            "conflict_policy": conflict_policy,
        },
        as_json=as_json,
    )


@tenants_app.command("list")
def tenants_list(config: Path = _config_option(), as_json: bool = _json_option()) -> None:
    """Every tenant: state, last and next run, links, open failures, last error."""
    from tolken._commands.fleet import tenants_list as body

    body(config, as_json=as_json)


@tenants_app.command("pause")
def tenants_pause(
    tenant_id: str = _tenant_argument(),
    config: Path = _config_option(),
    as_json: bool = _json_option(),
) -> None:
    """Queue no further sync of the tenant (a running one finishes)."""
    from tolken._commands.fleet import tenants_set

    tenants_set(config, tenant_id, action="pause", as_json=as_json)


@tenants_app.command("resume")
def tenants_resume(
    tenant_id: str = _tenant_argument(),
    config: Path = _config_option(),
    as_json: bool = _json_option(),
) -> None:
    """Sync the tenant again, due at once so it catches up."""
    from tolken._commands.fleet import tenants_set

    tenants_set(config, tenant_id, action="resume", as_json=as_json)


@tenants_app.command("resync")
def tenants_resync(
    tenant_id: str = _tenant_argument(),
    config: Path = _config_option(),
    as_json: bool = _json_option(),
) -> None:
    """Queue a reconcile of the tenant now (full listings: address-only edits, deletes)."""
    from tolken._commands.fleet import tenants_set

    tenants_set(config, tenant_id, action="resync", as_json=as_json)


@tenants_app.command("remove")
def tenants_remove(
    tenant_id: str = _tenant_argument(),
    purge: bool = typer.Option(
        False, "--purge", help="Also delete every row of its data (links, history, runs, ...)."
    ),
    config: Path = _config_option(),
    as_json: bool = _json_option(),
) -> None:
    """Remove the tenant and its waiting jobs (with --purge, all its data too)."""
    from tolken._commands.fleet import tenants_remove as body

    body(config, tenant_id, purge=purge, as_json=as_json)


@tenants_app.command("rekey")
def tenants_rekey(
    new_secret_key_env: str = typer.Option(
        "TOLKEN_NEW_SECRET_KEY",
        "--new-secret-key-env",
        help="The environment variable holding the new passphrase (never a command-line value).",
    ),
    config: Path = _config_option(),
    as_json: bool = _json_option(),
) -> None:
    """Re-encrypt every tenant's credentials under a new fleet.secret_key (workers stopped)."""
    from tolken._commands.fleet import tenants_rekey as body

    body(config, new_secret_key_env=new_secret_key_env, as_json=as_json)


@tenants_app.command("check")
def tenants_check(
    tenant_id: str = _tenant_argument(),
    config: Path = _config_option(),
    as_json: bool = _json_option(),
) -> None:
    """PowerOffice privileges (valid, invalid) and PMS access of the tenant (exit 1 if lacking)."""
    from tolken._commands.fleet import tenants_check as body

    body(config, tenant_id, as_json=as_json)


@tenants_app.command("onboard")
def tenants_onboard(
    redirect_uri: str | None = typer.Option(
        None, "--redirect-uri", help="Start: print the consent URL; PowerOffice returns here."
    ),
    organization_number: str | None = typer.Option(
        None, "--organization-number", help="With --redirect-uri: only this client may be chosen."
    ),
    finalize: str | None = typer.Option(
        None, "--finalize", help="Finish: the onboarding token; adds one tenant per client."
    ),
    pms_api_key: str | None = typer.Option(
        None, "--pms-api-key", envvar="PMS_API_KEY", help="With --finalize: the PMS API key."
    ),
    pms_base_url: str | None = typer.Option(
        None, "--pms-base-url", help="With --finalize: the PMS API root (default: pms.base_url)."
    ),
    interval_seconds: float | None = _interval_option(),
    conflict_policy: ConflictPolicy | None = _policy_option(),
    config: Path = _config_option(),
    as_json: bool = _json_option(),
) -> None:
    """Add tenants through PowerOffice's onboarding: the consent URL, then --finalize TOKEN."""
    from tolken._commands.fleet import tenants_onboard as body

    body(
        config,
        redirect_uri=redirect_uri,
        organization_number=organization_number,
        finalize=finalize,
        pms_api_key=pms_api_key,
        pms_base_url=pms_base_url,
        interval_seconds=interval_seconds,
        conflict_policy=conflict_policy,
        as_json=as_json,
    )


def main() -> None:
    """Console-script entry point."""
    app()
