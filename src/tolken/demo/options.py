"""What ``tolken demo`` is asked for (kept light: the CLI imports it before anything heavy)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_DASHBOARD_PORT", "DemoOptions"]

DEFAULT_DASHBOARD_PORT = 8470


@dataclass(frozen=True)
class DemoOptions:
    """``serve``: keep serving after the story; ``data_dir``: the working folder (None: a new
    temporary one); ``port``: the dashboard's (0: any free port)."""

    serve: bool = True
    data_dir: Path | None = None
    port: int = DEFAULT_DASHBOARD_PORT
