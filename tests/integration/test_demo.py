"""`tolken demo` as a user runs it: a real process, the sandbox on loopback, a real SQLite store."""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tolken.config import load_config

TOLKEN = str(Path(sys.executable).parent / "tolken")
ROW = re.compile(r"^│ (departments|customers|projects|total)\s*│" + r"\s*(\d+)\s*│" * 5)
DASHBOARD = re.compile(r"^Dashboard: (http://127\.0\.0\.1:\d+)/\?token=(\S+)$")
FLOWS = ("departments", "customers", "projects")


def _summary(stdout: str) -> dict[str, dict[str, int]]:
    """The summary table's rows: flow -> created, linked, updated, conflicts, failed."""
    columns = ("created", "linked", "updated", "conflicts", "failed")
    rows = {}
    for line in stdout.splitlines():
        if found := ROW.match(line):
            rows[found.group(1)] = dict(zip(columns, map(int, found.groups()[1:]), strict=True))
    return rows


@pytest.fixture(scope="module")
def no_serve_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    data_dir = tmp_path_factory.mktemp("demo")
    done = subprocess.run(
        [TOLKEN, "demo", "--no-serve", "--data-dir", str(data_dir), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done, data_dir


@pytest.mark.slow
def test_no_serve_prints_the_summary_and_exits_0(
    no_serve_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    """`tolken demo --no-serve` exits 0 after a per-flow table with records created and linked."""
    done, _ = no_serve_run
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    rows = _summary(done.stdout)
    assert set(rows) == {*FLOWS, "total"}, done.stdout
    for flow in FLOWS:
        assert rows[flow]["created"] > 0, (flow, rows)
        assert rows[flow]["linked"] > 0, (flow, rows)
    assert rows["total"]["failed"] == 0
    assert rows["total"]["conflicts"] == 1  # the one deliberate first-link disagreement
    assert rows["total"]["created"] == sum(rows[f]["created"] for f in FLOWS)


@pytest.mark.slow
def test_no_serve_reports_the_ambiguous_match_and_the_conflict(
    no_serve_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    """Notes give the ambiguous company a `tolken link` command and show both conflict values."""
    done, data_dir = no_serve_run
    out = done.stdout
    ambiguous = [line for line in out.splitlines() if line.startswith("• ambiguous")]
    assert len(ambiguous) == 1, out
    assert '"Fjordkraft Bygg AS"' in ambiguous[0]
    assert "tolken link --flow customers" in ambiguous[0]
    assert f"--config {data_dir.resolve() / 'tolken.yaml'}" in ambiguous[0]
    conflict = [line for line in out.splitlines() if line.startswith("• conflict")]
    assert len(conflict) == 1, out
    assert '"post@polarlystransport.no"' in conflict[0]
    assert '"firmapost@polarlys.no"' in conflict[0]


@pytest.mark.slow
def test_no_serve_shows_both_edits_arriving(
    no_serve_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    """The PowerOffice phone edit reaches the PMS and the PMS name edit reaches PowerOffice."""
    done, _ = no_serve_run
    lines = done.stdout.splitlines()
    assert any(line.startswith("PowerOffice → PMS") and "phone" in line for line in lines)
    assert any(line.startswith("PMS → PowerOffice") and "name" in line for line in lines)
    after = [line for line in lines if "after sync" in line]
    assert len(after) == 2, done.stdout
    assert '"+47 909 12 345"' in after[0]
    assert "✓ arrived" in after[0]
    assert '"Nybygg lager Tromsø – byggetrinn 2"' in after[1]
    assert "✓ arrived" in after[1]


@pytest.mark.slow
def test_no_serve_leaves_a_config_other_commands_use(
    no_serve_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    """The printed tolken.yaml loads, and `tolken links` reads the demo's links from its store."""
    done, data_dir = no_serve_run
    config_path = data_dir.resolve() / "tolken.yaml"
    assert f"Config:    {config_path}" in done.stdout
    config = load_config(config_path)
    assert config.serve is not None
    assert config.serve.token is not None
    links = subprocess.run(
        [TOLKEN, "links", "--config", str(config_path), "--json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert links.returncode == 0, links.stderr
    by_flow = dict.fromkeys(FLOWS, 0)
    for link in json.loads(links.stdout):
        by_flow[link["flow"]] += 1
    rows = _summary(done.stdout)
    for flow in FLOWS:
        assert by_flow[flow] == rows[flow]["created"] + rows[flow]["linked"]


@pytest.mark.slow
def test_serve_answers_the_dashboard_and_exits_0_on_sigint(tmp_path: Path) -> None:
    """With serving on, the printed dashboard URL opens with its token; Ctrl-C exits 0 cleanly."""
    printed: list[str] = []
    with subprocess.Popen(
        [TOLKEN, "demo", "--data-dir", str(tmp_path), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        lines: queue.Queue[str] = queue.Queue()
        stdout = process.stdout

        def pump() -> None:
            for line in stdout:
                lines.put(line.rstrip("\n"))

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 60
            url = token = None
            while not (url and printed[-1].startswith("Syncing every")):
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
                printed.append(line)
                if found := DASHBOARD.match(line):
                    url, token = found.groups()
            assert httpx.get(f"{url}/healthz").status_code == 200
            assert httpx.get(f"{url}/").status_code == 401
            with httpx.Client(follow_redirects=True) as browser:
                page = browser.get(f"{url}/?token={token}")
            assert page.status_code == 200
            assert all(flow in page.text for flow in FLOWS)
            process.send_signal(signal.SIGINT)
            code = process.wait(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
        stderr = process.stderr.read()
        reader.join(5)
    while not lines.empty():
        printed.append(lines.get())
    assert code == 0, "\n".join(printed) + stderr
    assert "Traceback" not in stderr
    assert printed[-1] == "stopped"


@pytest.mark.slow
def test_rerun_in_the_same_folder_starts_over(
    no_serve_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    """A second demo in the same --data-dir tells the same story, not one on top of the first."""
    first, data_dir = no_serve_run
    again = subprocess.run(
        [TOLKEN, "demo", "--no-serve", "--data-dir", str(data_dir), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert _summary(again.stdout) == _summary(first.stdout)


@pytest.mark.slow
def test_refuses_a_folder_with_someone_elses_config(tmp_path: Path) -> None:
    """A --data-dir holding a tolken.yaml the demo did not write is left alone (exit 2)."""
    config = tmp_path / "tolken.yaml"
    config.write_text("store: sqlite:///production.db\n", encoding="utf-8")
    (tmp_path / "tolken.db").write_bytes(b"precious")
    done = subprocess.run(
        [TOLKEN, "demo", "--no-serve", "--data-dir", str(tmp_path), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "was not written by tolken demo" in done.stdout
    assert config.read_text(encoding="utf-8") == "store: sqlite:///production.db\n"
    assert (tmp_path / "tolken.db").read_bytes() == b"precious"
