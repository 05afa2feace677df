"""``tolken serve``: load the config, then hand over to :func:`tolken.web.serve.run_serve`."""

from __future__ import annotations

from pathlib import Path

import typer

from tolken._commands.common import EXIT_CONFIG, load, one_line_errors
from tolken.config import ServeSettings

__all__ = ["serve_command"]


def serve_command(config_path: Path, *, host: str | None, port: int | None) -> None:
    """Body of ``tolken serve``; exits 0 after SIGTERM/SIGINT, 1 fatal, 2 bad config."""
    config = load(config_path)
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
    from tolken.web.serve import run_serve

    with one_line_errors():
        code = run_serve(config, echo=typer.echo)
    raise typer.Exit(code)
