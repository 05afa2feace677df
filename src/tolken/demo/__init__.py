"""``tolken demo``: the sandbox, realistic Norwegian sample data, a first sync and live edits.

Public API: :func:`run_demo` with :class:`DemoOptions`; the sample data is in
:mod:`tolken.demo.sample`.
"""

from tolken.demo.story import DemoOptions, run_demo

__all__ = ["DemoOptions", "run_demo"]
