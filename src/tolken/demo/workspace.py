"""The demo's working folder: its config, store, logs, and the ports it listens on.

Everything the demo writes lives in one folder (a new temporary one unless
``--data-dir`` names it): ``tolken.yaml``, ``tolken.db``, ``tolken.log`` and the
sandbox's state under ``sandbox/``. A rerun in the same folder starts over,
but only in a folder whose ``tolken.yaml`` the demo wrote itself.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx

from tolken.config import TolkenConfig
from tolken.logging import Redactor, configure_logging
from tolken.sandbox import credentials
from tolken.sandbox.runner import HOST, SandboxURLs

__all__ = [
    "WATCH_INTERVAL_SECONDS",
    "command_name",
    "dashboard_port",
    "forget_old_store",
    "logs_to",
    "owned_by_demo",
    "reset_sandbox",
    "write_config",
]

WATCH_INTERVAL_SECONDS = 5
# First line of the config the demo writes: a rerun may replace only such a folder's files.
_MARKER = "# Written by `tolken demo`"


def write_config(
    path: Path,
    urls: SandboxURLs,
    *,
    store: Path,
    dashboard_port: int,
    token: str,
    webhook_secret: str,
) -> None:
    """Write a ``tolken.yaml`` for the sandbox at ``urls``.

    The keys are written out rather than as ``${VAR}`` references: they are the
    sandbox's fixed, public credentials and this file's own random tokens.
    """
    public_url = f"http://{HOST}:{dashboard_port}"
    path.write_text(
        f"{_MARKER} for its sandbox. Every tolken command takes\n"
        f"# --config {path}\n"
        f"store: sqlite:///{store}\n"
        "tenant: default\n"
        "poweroffice:\n"
        f"  base_url: {urls.poweroffice}/v2\n"
        f"  token_url: {urls.poweroffice}/OAuth/Token\n"
        f"  application_key: {credentials.APPLICATION_KEY}\n"
        f"  client_key: {credentials.CLIENT_KEY}\n"
        f"  subscription_key: {credentials.SUBSCRIPTION_KEY}\n"
        "  requests_per_second: 10\n"
        "  timeout_seconds: 10\n"
        "pms:\n"
        f"  base_url: {urls.pms}\n"
        f"  api_key: {credentials.PMS_API_KEY}\n"
        "  timeout_seconds: 10\n"
        "sync:\n"
        f"  interval_seconds: {WATCH_INTERVAL_SECONDS}\n"
        "  reconcile_every: 12\n"
        "  conflict_policy: newest-wins\n"
        "serve:\n"
        f"  host: {HOST}\n"
        f"  port: {dashboard_port}\n"
        f"  token: {token}\n"
        f"  public_url: {public_url}\n"
        f"  webhook_secret: {webhook_secret}\n",
        encoding="utf-8",
    )


def command_name() -> str:
    """How the user ran tolken (``.venv/bin/tolken`` from make), so printed commands paste."""
    invoked = sys.argv[0] if sys.argv else ""
    if Path(invoked).name != "tolken":
        return "tolken"
    on_path = shutil.which("tolken")
    if on_path and Path(on_path).resolve() == Path(invoked).resolve():
        return "tolken"
    return invoked


@contextlib.contextmanager
def logs_to(path: Path, config: TolkenConfig) -> Iterator[Redactor]:
    """tolken's JSON log lines go to ``path`` (the terminal is for the story)."""
    with path.open("a", encoding="utf-8") as stream:
        redactor = configure_logging(config.secrets(), stream=stream)
        try:
            yield redactor
        finally:
            root = logging.getLogger()
            for handler in list(root.handlers):
                if getattr(handler, "stream", None) is stream:
                    root.removeHandler(handler)


def owned_by_demo(config_path: Path) -> bool:
    """True when there is no config at ``config_path`` or the demo wrote it."""
    try:
        with config_path.open(encoding="utf-8") as stream:
            return stream.readline().startswith(_MARKER)
    except FileNotFoundError:
        return True


def forget_old_store(data_dir: Path) -> None:
    """A rerun in the same folder starts over: tolken's own store goes (the sandbox is reset)."""
    for name in ("tolken.db", "tolken.db-wal", "tolken.db-shm"):
        (data_dir / name).unlink(missing_ok=True)


def reset_sandbox(urls: SandboxURLs) -> None:
    """Empty both simulators (state left in the folder by an earlier demo)."""
    pms_root = urls.pms.removesuffix("/api/v1")
    for root in (urls.poweroffice, pms_root):
        httpx.post(f"{root}/_sandbox/reset", json={}, timeout=10).raise_for_status()


def dashboard_port(port: int, *, fallback: bool) -> int:
    """``port`` if free (0: any free port); a busy default falls back to any free port."""
    for candidate in (port, 0) if fallback else (port,):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((HOST, candidate))
            except OSError:
                continue
            bound: int = sock.getsockname()[1]
            return bound
    raise OSError(f"port {port} on {HOST} is in use")
