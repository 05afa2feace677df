"""SIGTERM/SIGINT: the first asks for a graceful stop, a second is never ignored."""

from __future__ import annotations

import os
import signal

import pytest

from tolken._signals import stop_on_signals


def test_the_first_signal_asks_for_a_stop_and_a_second_stops_at_once() -> None:
    """One SIGTERM calls stop(); a second one raises at once instead of being ignored."""
    asked: list[bool] = []

    def two_signals() -> None:
        with stop_on_signals(lambda: asked.append(True)):
            os.kill(os.getpid(), signal.SIGTERM)
            assert asked == [True]
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(KeyboardInterrupt, match="second SIGTERM"):
        two_signals()
    assert asked == [True]


def test_the_old_handlers_come_back_after_the_block() -> None:
    """Leaving the block restores what was installed before it."""
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals(lambda: None):
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
