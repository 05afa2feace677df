"""schemathesis 4 against both sandbox servers, as a newcomer would run it (issue 11).

schemathesis lives in ``.venv-schemathesis/`` (``make schemathesis``; its
hypothesis-jsonschema clashes with our pinned Hypothesis). The sandbox runs as
the fixed contract of DESIGN §7 says (``tolken sandbox --poweroffice-port P
--pms-port Q --data-dir DIR``), and schemathesis runs over loopback with a
fixed seed and 30 examples per operation:

- the reference PMS's own ``/api/v1/openapi.json`` with ``--checks all``
  (``schemathesis-pms.toml`` names the three data-dependent rules);
- the public PowerOffice spec subset with ``not_a_server_error``: the
  simulator copies the real API, whose answers the public spec does not fully
  document (problem+json errors, 400 for a duplicate code, the gateway's 404 to
  unknown methods; see test_po_spec_conformance.py), but it never answers 5xx.

Run alone: ``make schemathesis && .venv/bin/pytest tests/contract/test_schemathesis.py``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCHEMATHESIS = ROOT / ".venv-schemathesis" / "bin" / "schemathesis"
PO_SPEC = ROOT / "tests" / "data" / "poweroffice-go-v2-dept-cust-proj.subset.json"
PMS_CONFIG = Path(__file__).with_name("schemathesis-pms.toml")
COMMON = ["--max-examples", "30", "--seed", "1", "--generation-database", "none", "--no-color"]

pytestmark = pytest.mark.timeout(400)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``tolken sandbox`` on two free loopback ports: (PowerOffice base, PMS base)."""
    if not SCHEMATHESIS.exists():
        if os.environ.get("TOLKEN_REQUIRE_SCHEMATHESIS"):
            pytest.fail(f"{SCHEMATHESIS} is missing: run `make schemathesis`")
        pytest.skip("no .venv-schemathesis (make test sets it up)")
    po_port, pms_port = _free_port(), _free_port()
    tolken = Path(sys.executable).with_name("tolken")
    data = tmp_path_factory.mktemp("schemathesis-sandbox")
    process = subprocess.Popen(
        [
            str(tolken),
            "sandbox",
            "--data-dir",
            str(data),
            f"--poweroffice-port={po_port}",
            f"--pms-port={pms_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    po, pms = f"http://127.0.0.1:{po_port}", f"http://127.0.0.1:{pms_port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{pms}/api/v1/openapi.json").raise_for_status()
                httpx.get(f"{po}/_sandbox/stats").raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
        # The 10 req/s limit would turn most fuzzing requests into 429s.
        httpx.post(f"{po}/_sandbox/settings", json={"rate_limit_per_second": None})
        yield po, pms
    finally:
        process.terminate()
        process.wait(timeout=30)


def _run(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(SCHEMATHESIS), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_schemathesis_finds_no_failure_in_either_sandbox_server(
    sandbox: tuple[str, str], tmp_path: Path
) -> None:
    """A vendor fuzzing the PMS document, or us fuzzing the PowerOffice spec, finds nothing."""
    po, pms = sandbox
    token = httpx.post(
        f"{po}/OAuth/Token",
        auth=("sandbox-application-key", "sandbox-client-key"),
        headers={"Ocp-Apim-Subscription-Key": "sandbox-subscription-key"},
        data={"grant_type": "client_credentials"},
    ).json()["access_token"]
    runs = {
        "PMS": _run(
            [
                "--config-file",
                str(PMS_CONFIG),
                "run",
                f"{pms}/api/v1/openapi.json",
                "--checks",
                "all",
                "-H",
                "Authorization: Bearer sandbox-pms-key",
                *COMMON,
            ],
            tmp_path,
        ),
        "PowerOffice": _run(
            [
                "run",
                str(PO_SPEC),
                "--url",
                f"{po}/v2",
                "--checks",
                "not_a_server_error",
                "-H",
                f"Authorization: Bearer {token}",
                "-H",
                "Ocp-Apim-Subscription-Key: sandbox-subscription-key",
                *COMMON,
            ],
            tmp_path,
        ),
    }
    failed = []
    for name, run in runs.items():
        output, _ = run.communicate(timeout=360)
        if run.returncode != 0:
            failed.append(f"--- schemathesis against the {name} ---\n{output[-20000:]}")
    assert not failed, "\n".join(failed)
