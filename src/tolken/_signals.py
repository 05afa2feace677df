"""SIGTERM/SIGINT ask a loop to stop instead of killing it mid-record; a second one is final.

Shared by ``tolken sync``, ``tolken serve`` and the demo. It imports
nothing of tolken, so any layer may use it.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["stop_on_signals"]

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """Inside the block the first SIGTERM or SIGINT calls ``stop()``; a second one is final.

    ``stop()`` asks for a graceful stop (the record in flight is finished and
    committed; waits and listings end within a second). A second signal is
    never ignored: it raises :class:`KeyboardInterrupt` at once (the run is
    recorded as failed; the CLI exits 1), and from then on both signals have
    their default action, so a third ends the process outright. The old
    handlers come back after the block.
    """
    asked = False

    def handler(signum: int, _frame: FrameType | None) -> None:
        nonlocal asked
        if asked:
            for sig in _SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            raise KeyboardInterrupt(f"a second {signal.Signals(signum).name}: stopping at once")
        asked = True
        stop()

    previous = {sig: signal.signal(sig, handler) for sig in _SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
