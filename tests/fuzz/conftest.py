"""Settings of the fuzzing tier: a small budget by default, more with ``TOLKEN_FUZZ_EXAMPLES``.

``make test`` runs this tier with the default (the whole tier stays under a
minute); ``TOLKEN_FUZZ_EXAMPLES=5000 .venv/bin/pytest tests/fuzz`` digs deeper.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("TOLKEN_FUZZ_EXAMPLES", "150"))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
"""Apply with ``@FUZZ`` above ``@given``: per-example time is bounded by each test itself."""
