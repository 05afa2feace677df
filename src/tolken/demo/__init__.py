"""``tolken demo``: the sandbox, realistic Norwegian sample data, a first sync and live edits.

Public API: :func:`run_demo` with :class:`DemoOptions`; the sample data is in
:mod:`tolken.demo.sample`, the story in :mod:`tolken.demo.story`.
"""

from __future__ import annotations

import time

from rich.console import Console

from tolken.demo.options import DemoOptions

__all__ = ["DemoOptions", "run_demo"]


def run_demo(options: DemoOptions, *, console: Console) -> int:
    """Run the demo; the exit code (0 also after Ctrl-C, 1 when something failed)."""
    started = time.monotonic()
    try:
        # The banner first: loading the engine, the sandbox and the web app takes a second.
        console.print(
            "[bold]tolken demo[/]: PowerOffice Go ⇄ a project-management system, on a sandbox"
        )
        from tolken.demo.story import tell_story
    except KeyboardInterrupt:
        console.print("stopped")
        return 0
    return tell_story(options, console=console, started=started)
