"""A throwaway webhook receiver for ``check-pms``: records every POST it gets.

Standard library only (``http.server`` in a daemon thread), so the check runs
anywhere the CLI runs. It answers 204 to every delivery; verification happens
afterwards in the rule, which can then say precisely what was wrong.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tolken._closing import Closeable

__all__ = ["Delivery", "WebhookReceiver"]

_MAX_BODY = 1_000_000


@dataclass(frozen=True)
class Delivery:
    """One POST the receiver got: its headers and raw body."""

    headers: dict[str, str]
    body: bytes
    received_at: float


class WebhookReceiver(Closeable):
    """Listens on ``host:port`` (0 = any free port) until closed; ``deliveries`` fills up."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.deliveries: list[Delivery] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = min(int(self.headers.get("Content-Length") or 0), _MAX_BODY)
                body = self.rfile.read(length)
                with receiver._changed:
                    receiver.deliveries.append(
                        Delivery(dict(self.headers.items()), body, time.time())
                    )
                    receiver._changed.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, _format: str, *_args: object) -> None:
                # Deliveries are reported by the rule, not on stderr.
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="check-pms-webhooks", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """The receiver's own loopback/LAN address."""
        address = self._server.server_address
        host = address[0].decode() if isinstance(address[0], bytes) else str(address[0])
        port = address[1]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/tolken-check-webhook"

    def wait_for(self, predicate: Callable[[Delivery], bool], timeout: float) -> Delivery | None:
        """The first delivery ``predicate`` accepts, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for delivery in self.deliveries:
                    if predicate(delivery):
                        return delivery
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)

    def close(self) -> None:
        """Stop listening."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
