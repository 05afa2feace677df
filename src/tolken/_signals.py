"""SIGTERM/SIGINT that ask a watch loop to stop instead of killing it mid-record.

Shared by ``tolken sync --watch``, ``tolken serve`` and the demo. It imports
nothing of tolken, so any layer may use it.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["stop_on_signals"]


@contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """Inside the block SIGTERM and SIGINT call ``stop()``; the old handlers come back after."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
