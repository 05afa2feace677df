"""bench/results.json: each benchmark's figures merged into one flat, sorted object."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest


def _load_results() -> ModuleType:
    """bench/results.py (the bench package is not on the tests' import path)."""
    path = Path(__file__).parents[2] / "bench" / "results.py"
    spec = importlib.util.spec_from_file_location("bench_results_under_test", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


results = _load_results()


@pytest.fixture
def results_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "results.json"
    monkeypatch.setattr(results, "RESULTS_JSON", target)
    return target


def test_record_keeps_other_benchmarks_figures_and_writes_sorted_keys(results_json: Path) -> None:
    """A benchmark updates its own keys; figures another benchmark wrote stay."""
    results.record({"initial_sync_wall_ratio": 0.93, "pms_edit_requests": 3})
    results.record({"peak_rss_mib_100k_links": 180.5, "initial_sync_wall_ratio": 0.88})
    text = results_json.read_text()
    assert json.loads(text) == {
        "initial_sync_wall_ratio": 0.88,
        "peak_rss_mib_100k_links": 180.5,
        "pms_edit_requests": 3,
    }
    assert list(json.loads(text)) == sorted(json.loads(text))


def test_record_refuses_a_figure_that_is_not_a_number(results_json: Path) -> None:
    """A missing measurement never lands in results.json as text, null or NaN."""
    for bad in ("1.2", None, float("nan"), True):
        with pytest.raises(ValueError, match="finite number"):
            results.record({"initial_sync_cpu_ratio": bad})
    assert not results_json.exists()
