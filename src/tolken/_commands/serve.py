"""``tolken serve``: load the config, then hand over to the web side of its mode.

Single mode (:func:`tolken.web.serve.run_serve`): the dashboard and the watch
loop of one tenant. Fleet mode, a config with a ``fleet:`` section
(:func:`tolken.web.fleet_serve.run_fleet_serve`): the tenants page, each
tenant's pages, webhooks and onboarding; the workers sync.
"""

from __future__ import annotations

from pathlib import Path

import typer

from tolken._commands.common import EXIT_CONFIG, load, one_line_errors
from tolken.config import FleetConfig, ServeSettings, TolkenConfig, load_any_config
from tolken.errors import ConfigError

__all__ = ["serve_command"]


def serve_command(config_path: Path, *, host: str | None, port: int | None) -> None:
    """Body of ``tolken serve``; exits 0 after SIGTERM/SIGINT, 1 fatal, 2 bad config."""
    config = _load(config_path)
    if config.serve is None:
        typer.echo(
            f"error: {config_path}: no serve: section (serve.token is needed for the dashboard)",
            err=True,
        )
        raise typer.Exit(EXIT_CONFIG)
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    if overrides:
        serve = ServeSettings.model_validate({**config.serve.model_dump(), **overrides})
        config = config.model_copy(update={"serve": serve})
    if isinstance(config, FleetConfig):
        from tolken.web.fleet_serve import run_fleet_serve

        with one_line_errors():
            code = run_fleet_serve(config, echo=typer.echo)
        raise typer.Exit(code)
    from tolken.web.serve import run_serve

    with one_line_errors():
        code = run_serve(config, echo=typer.echo)
    raise typer.Exit(code)


def _load(config_path: Path) -> TolkenConfig | FleetConfig:
    """Either mode's config; a single-mode one exactly as the other commands load it."""
    try:
        found = load_any_config(config_path)
    except ConfigError:
        found = None
    if found is None or isinstance(found, TolkenConfig):
        return load(config_path)  # prints the error and exits 2, or sets logging up
    return found
