"""Run the PowerOffice Go simulator and the reference PMS together (``tolken sandbox``).

Both are uvicorn servers on one asyncio loop in the calling thread. uvicorn's
own signal capture is switched off (it re-raises the signal after shutdown,
which would turn a clean SIGTERM into a non-zero exit); this module handles
SIGTERM/SIGINT itself, stops both servers and returns 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from tolken.sandbox import credentials

DEFAULT_POWEROFFICE_PORT = 8471
DEFAULT_PMS_PORT = 8472
HOST = "127.0.0.1"
GRACE_SECONDS = 3


@dataclass(frozen=True)
class SandboxURLs:
    """Where the two servers listen once ready."""

    poweroffice: str  # e.g. http://127.0.0.1:8471 (API under /v2, token at /OAuth/Token)
    pms: str  # e.g. http://127.0.0.1:8472/api/v1


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Signals are handled by serve_sandbox for both servers at once.
        yield


def _apps(data_dir: Path) -> tuple[Any, Any]:
    # Imported here so `tolken --help` does not load the simulators.
    from tolken.sandbox.pms import create_app as create_pms
    from tolken.sandbox.poweroffice import create_app as create_poweroffice

    return create_poweroffice(data_dir), create_pms(data_dir)


def ready_lines(urls: SandboxURLs) -> list[str]:
    """What ``tolken sandbox`` prints when both servers answer."""
    return [
        f"PowerOffice Go simulator ready at {urls.poweroffice} (API /v2, token /OAuth/Token)",
        f"Reference PMS ready at {urls.pms}",
        f"PowerOffice application key: {credentials.APPLICATION_KEY}",
        f"PowerOffice client key: {credentials.CLIENT_KEY}",
        f"PowerOffice subscription key: {credentials.SUBSCRIPTION_KEY}",
        f"PMS API key: {credentials.PMS_API_KEY}",
    ]


async def serve_sandbox(
    data_dir: Path,
    *,
    poweroffice_port: int = DEFAULT_POWEROFFICE_PORT,
    pms_port: int = DEFAULT_PMS_PORT,
    stop: asyncio.Event,
    on_ready: Callable[[SandboxURLs], None],
) -> None:
    """Serve both apps until ``stop`` is set; ``on_ready`` gets the real URLs (port 0 = any).

    Raises OSError when a port cannot be bound (for example, it is taken).
    """
    # Bind first: a taken port is then a plain OSError here, and port 0 is resolved
    # before anything starts (uvicorn itself would call sys.exit on a failed bind).
    first = _bind(poweroffice_port)
    try:
        sockets = [first, _bind(pms_port)]
    except OSError:
        first.close()
        raise
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        poweroffice_app, pms_app = _apps(data_dir)
        servers = [
            # A request held open by the fault injector's drop (up to 30 s) must not
            # hold up a SIGTERM: in-flight requests get a few seconds, then go.
            _Server(
                uvicorn.Config(
                    app,
                    host=HOST,
                    port=0,
                    log_level="warning",
                    lifespan="on",
                    timeout_graceful_shutdown=GRACE_SECONDS,
                    # The PowerOffice simulator dates its answers itself (one Date header).
                    date_header=app is not poweroffice_app,
                )
            )
            for app in (poweroffice_app, pms_app)
        ]
        tasks = [
            asyncio.create_task(server.serve(sockets=[sock]))
            for server, sock in zip(servers, sockets, strict=True)
        ]
        try:
            while not all(server.started for server in servers):
                if any(task.done() for task in tasks):
                    raise OSError("a sandbox server could not start")
                await asyncio.sleep(0.02)
            po_port, pms_real = (sock.getsockname()[1] for sock in sockets)
            on_ready(SandboxURLs(f"http://{HOST}:{po_port}", f"http://{HOST}:{pms_real}/api/v1"))
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
        finally:
            for server in servers:
                server.should_exit = True
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for sock in sockets:
            sock.close()


def _bind(port: int) -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets whose proto is
    # IPPROTO_TCP, and without it every keep-alive response waits ~40 ms (Nagle + delayed ACK).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {HOST}:{port}: {exc.strerror}") from exc
    return sock


def run_sandbox(
    data_dir: Path,
    *,
    poweroffice_port: int = DEFAULT_POWEROFFICE_PORT,
    pms_port: int = DEFAULT_PMS_PORT,
    echo: Callable[[str], None] | None = None,
) -> int:
    """Serve both simulators until SIGTERM/SIGINT; returns the exit code (0 clean, 1 failed)."""
    say = echo or (lambda line: print(line, flush=True))

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        def ready(urls: SandboxURLs) -> None:
            for line in ready_lines(urls):
                say(line)

        try:
            await serve_sandbox(
                data_dir,
                poweroffice_port=poweroffice_port,
                pms_port=pms_port,
                stop=stop,
                on_ready=ready,
            )
        except OSError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            return 1
        return 0

    return asyncio.run(main())


@contextlib.contextmanager
def sandbox_in_thread(
    data_dir: Path, *, poweroffice_port: int = 0, pms_port: int = 0
) -> Iterator[SandboxURLs]:
    """Run both simulators in a background thread for the duration of a ``with`` block."""
    found: list[SandboxURLs] = []
    failure: list[BaseException] = []
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def on_ready(urls: SandboxURLs) -> None:
        found.append(urls)
        ready.set()

    def run() -> None:
        try:
            loop.run_until_complete(
                serve_sandbox(
                    data_dir,
                    poweroffice_port=poweroffice_port,
                    pms_port=pms_port,
                    stop=stop,
                    on_ready=on_ready,
                )
            )
        except BaseException as exc:  # noqa: BLE001 - whatever stops the thread is the caller's error
            failure.append(exc)
        finally:
            ready.set()
            loop.close()

    thread = threading.Thread(target=run, name="tolken-sandbox", daemon=True)
    thread.start()
    ready.wait(30)
    if not found:
        thread.join(5)
        raise OSError("the sandbox did not start") from (failure[0] if failure else None)
    try:
        yield found[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(15)
