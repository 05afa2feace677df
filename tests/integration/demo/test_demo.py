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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tolken.config import load_config
from tolken.sandbox import credentials

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
    lines = out.splitlines()
    ambiguous = [i for i, line in enumerate(lines) if line.startswith("• ambiguous")]
    assert len(ambiguous) == 1, out
    assert '"Fjordkraft Bygg AS"' in lines[ambiguous[0]]
    command = lines[ambiguous[0] + 1]
    assert "tolken link --flow customers" in command
    assert command.endswith(f"--config {data_dir.resolve() / 'tolken.yaml'}")
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


class _Demo:
    """A `tolken demo` (serving) process and the lines it printed."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.printed: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None
        stdout = process.stdout

        def pump() -> None:
            for line in stdout:
                self._lines.put(line.rstrip("\n"))

        self.reader = threading.Thread(target=pump, daemon=True)
        self.reader.start()

    def wait_for(self, text: str, timeout: float) -> str:
        """The next printed line containing ``text``; fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line {text!r}:\n" + "\n".join(self.printed)) from None
            self.printed.append(line)
            if text in line:
                return line

    def line_after(self, prefix: str) -> str:
        """The line printed right after the first one starting with ``prefix``."""
        index = next(i for i, line in enumerate(self.printed) if line.startswith(prefix))
        return self.printed[index + 1]

    def stop(self) -> tuple[int, str]:
        """Ctrl-C; the exit code and standard error."""
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=20)
        assert self.process.stderr is not None
        stderr = self.process.stderr.read()
        self.reader.join(5)
        while not self._lines.empty():
            self.printed.append(self._lines.get())
        return code, stderr


@contextmanager
def _serving_demo(data_dir: Path) -> Iterator[_Demo]:
    with subprocess.Popen(
        [TOLKEN, "demo", "--data-dir", str(data_dir), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            demo = _Demo(process)
            demo.wait_for("Syncing every", timeout=60)
            yield demo
        finally:
            if process.poll() is None:
                process.kill()


@pytest.mark.slow
def test_serve_answers_the_dashboard_and_exits_0_on_sigint(tmp_path: Path) -> None:
    """With serving on, the printed dashboard URL opens with its token; Ctrl-C exits 0 cleanly."""
    with _serving_demo(tmp_path) as demo:
        found = next(m for line in demo.printed if (m := DASHBOARD.match(line)))
        url, token = found.groups()
        assert httpx.get(f"{url}/healthz").status_code == 200
        assert httpx.get(f"{url}/").status_code == 401
        with httpx.Client(follow_redirects=True) as browser:
            page = browser.get(f"{url}/?token={token}")
        assert page.status_code == 200
        assert all(flow in page.text for flow in FLOWS)
        code, stderr = demo.stop()
    assert code == 0, "\n".join(demo.printed) + stderr
    assert "Traceback" not in stderr
    assert demo.printed[-1] == "stopped"


@pytest.mark.slow
def test_serve_printed_instructions_work(tmp_path: Path) -> None:
    """The printed PMS edit arrives by webhook at once; the printed link command settles the
    ambiguous match and the project waiting for it follows."""
    with _serving_demo(tmp_path) as demo:
        curl = demo.line_after("Try it:")
        body = json.loads(curl.split(" -d '", 1)[1].split("' ", 1)[0])
        edited = httpx.patch(
            curl.rsplit(" ", 1)[1],
            json=body,
            headers={
                "Authorization": f"Bearer {credentials.PMS_API_KEY}",
                "Content-Type": "application/merge-patch+json",
            },
        )
        assert edited.status_code == 200
        # The watch interval is 5 s: a cycle within 3 s was woken by the webhook.
        assert demo.wait_for("sync cycle:", timeout=4.5).endswith("sync cycle: updated 1")
        command = demo.line_after("• ambiguous").split()
        assert command[1:3] == ["link", "--flow"]
        linked = subprocess.run([TOLKEN, *command[1:]], capture_output=True, text=True, timeout=30)
        assert linked.returncode == 0, linked.stderr
        # The waiting project follows at the next cycle.
        assert demo.wait_for("sync cycle:", timeout=10).endswith("sync cycle: created 1")
        code, _ = demo.stop()
    assert code == 0


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
    assert "was not written by tolken demo" in done.stderr
    assert config.read_text(encoding="utf-8") == "store: sqlite:///production.db\n"
    assert (tmp_path / "tolken.db").read_bytes() == b"precious"


def test_ctrl_c_while_starting_exits_0(tmp_path: Path) -> None:
    """Ctrl-C while the demo is still loading or starting the sandbox exits 0, no traceback."""
    with subprocess.Popen(
        [TOLKEN, "demo", "--no-serve", "--data-dir", str(tmp_path), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert banner.startswith("tolken demo:")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, (out, err)
    assert "Traceback" not in err
    assert out.rstrip().endswith("stopped")
