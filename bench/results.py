"""``bench/results.json``: the benchmarks' headline figures as one flat JSON object.

Each benchmark calls :func:`record` with the figures it measured; keys it does
not name keep the values an earlier benchmark wrote, so ``make bench`` (every
benchmark in turn) or one benchmark alone both leave a complete file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

__all__ = ["RESULTS_JSON", "record"]

RESULTS_JSON = Path(__file__).with_name("results.json")


def record(figures: Mapping[str, float]) -> None:
    """Update ``bench/results.json`` with ``figures`` (other keys kept), written sorted."""
    target = RESULTS_JSON
    for key, value in figures.items():
        number: object = value  # callers' Mapping[str, float] is not checked at run time
        if (
            isinstance(number, bool)
            or not isinstance(number, int | float)
            or not math.isfinite(number)
        ):
            raise ValueError(f"bench figure {key!r} must be a finite number, not {value!r}")
    current: dict[str, float] = {}
    if target.exists():
        loaded = json.loads(target.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            current = loaded
    current.update(figures)
    target.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n", encoding="utf-8")
