"""bench/bench_idle.py: the peak RSS growth from one link count to three times it."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


@pytest.fixture
def bench_idle(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The bench package is not on the tests' import path; the repository root holds it."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[2]))
    return importlib.import_module("bench.bench_idle")


def _scale_run(bench_idle: ModuleType, links: int, first_link: float, **peaks: list[float]) -> Any:
    """A measured set-up whose first link and cycle runs peaked at the given MiB."""
    measured = bench_idle.Measured(0, "", "", wall=1.0, cpu=1.0, peak_rss_mib=first_link)
    cycles: dict[str, list[tuple[dict[str, float], dict[str, Any]]]] = {
        kind: [({"peak_rss": peak, "cpu": 0.05}, {}) for peak in runs]
        for kind, runs in peaks.items()
    }
    return bench_idle.ScaleRun(links, links, measured, {}, cycles, {})


def test_growth_is_each_cycle_kinds_worst_peak_at_three_times_the_links(
    bench_idle: ModuleType,
) -> None:
    """Each kind's growth is its highest peak at 300k over its highest at 100k, as a fraction;
    the bare script is no cycle kind of tolken's."""
    base = _scale_run(
        bench_idle,
        100_000,
        1000.0,
        burst=[200.0],
        idle=[90.0, 100.0, 92.0],
        bare=[45.0, 45.0, 45.0],
        edit=[95.0],
        reconcile=[200.0],
    )
    grown = _scale_run(
        bench_idle,
        300_000,
        3000.0,
        burst=[210.0],
        idle=[100.0, 90.0, 90.0],
        bare=[500.0, 45.0, 45.0],
        edit=[95.0],
        reconcile=[260.0],
    )
    growth = bench_idle.growth(base, grown)
    assert growth == pytest.approx(
        {"first link": 2.0, "burst": 0.05, "idle": 0.0, "edit": 0.0, "reconcile": 0.3}
    )
    assert max(growth.values()) == pytest.approx(2.0)


def test_growth_compares_only_the_cycle_kinds_both_runs_measured(bench_idle: ModuleType) -> None:
    """A run of fewer kinds (the million-link run: idle and reconcile) is compared on those."""
    base = _scale_run(bench_idle, 100_000, 1000.0, burst=[200.0], idle=[90.0], reconcile=[200.0])
    grown = _scale_run(bench_idle, 1_000_000, 9000.0, idle=[99.0], reconcile=[300.0])
    assert bench_idle.growth(base, grown) == pytest.approx(
        {"first link": 8.0, "idle": 0.1, "reconcile": 0.5}
    )
