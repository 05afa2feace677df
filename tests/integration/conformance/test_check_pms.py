"""`tolken check-pms` against the reference PMS over real loopback HTTP, and against broken ones."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from typer.testing import CliRunner

from loopback import serve
from tolken.cli import app as cli
from tolken.conformance import RULES, run_conformance
from tolken.sandbox.pms import PMS_API_KEY, create_app

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGI = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]
RequestHook = Callable[[Scope, bytes], bytes]
ResponseHook = Callable[[Scope, int, bytes], tuple[int, bytes]]


class Tamper:
    """ASGI middleware that rewrites requests and/or responses of the wrapped app (a broken PMS)."""

    def __init__(
        self, app: ASGI, *, request: RequestHook | None = None, response: ResponseHook | None = None
    ):
        self.app, self.on_request, self.on_response = app, request, response

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        scope = dict(scope)
        if self.on_request is not None:
            body = self.on_request(scope, body)
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"content-length"] + [
                (b"content-length", str(len(body)).encode())
            ]
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        start: Message = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            status, out = start["status"], b"".join(chunks)
            if self.on_response is not None:
                status, out = self.on_response(scope, status, out)
            headers = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
            headers.append((b"content-length", str(len(out)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": out})

        await self.app(scope, replay, capture)


def _query(scope: Scope) -> dict[str, str]:
    return dict(parse_qsl(scope.get("query_string", b"").decode()))


def _set_query(scope: Scope, params: dict[str, str]) -> None:
    scope["query_string"] = urlencode(params).encode()


def _is(scope: Scope, method: str, path: str) -> bool:
    return scope["method"] == method and scope["path"].rstrip("/") == path


# -- the broken variants ------------------------------------------------------


def ignore_if_match(scope: Scope, body: bytes) -> bytes:
    scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"if-match"]
    return body


def inclusive_updated_after(scope: Scope, body: bytes) -> bytes:
    params = _query(scope)
    if "updated_after" in params:
        bound = datetime.fromisoformat(params["updated_after"].replace("Z", "+00:00"))
        earlier = bound - timedelta(microseconds=1)
        params["updated_after"] = earlier.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        _set_query(scope, params)
    return body


def drop_nulls_in_patches(scope: Scope, body: bytes) -> bytes:
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if v is not None}
        return value

    if scope["method"] == "PATCH" and body:
        return json.dumps(strip(json.loads(body))).encode()
    return body


def wrong_webhook_secret(scope: Scope, body: bytes) -> bytes:
    if _is(scope, "POST", "/api/v1/webhooks"):
        return json.dumps(json.loads(body) | {"secret": "not-the-registered-secret"}).encode()
    return body


def open_door(scope: Scope, body: bytes) -> bytes:
    headers = [(k, v) for k, v in scope["headers"] if k != b"authorization"]
    scope["headers"] = [*headers, (b"authorization", f"Bearer {PMS_API_KEY}".encode())]
    return body


def forget_project_billable(scope: Scope, body: bytes) -> bytes:
    if _is(scope, "POST", "/api/v1/projects") and body:
        return json.dumps({k: v for k, v in json.loads(body).items() if k != "billable"}).encode()
    return body


def cursor_skips_a_record(scope: Scope, status: int, body: bytes) -> tuple[int, bytes]:
    if _is(scope, "GET", "/api/v1/customers") and "cursor" in _query(scope) and status == 200:
        page = json.loads(body)
        page["items"] = page["items"][1:]
        return status, json.dumps(page).encode()
    return status, body


def accepts_bad_bodies(_scope: Scope, status: int, body: bytes) -> tuple[int, bytes]:
    return (200 if status == 422 else status), body


def no_tombstones(scope: Scope, status: int, body: bytes) -> tuple[int, bytes]:
    if _is(scope, "GET", "/api/v1/changes") and status == 200:
        page = json.loads(body)
        page["items"] = [i for i in page["items"] if i["op"] != "delete"]
        return status, json.dumps(page).encode()
    return status, body


def no_webhook_removal(scope: Scope, status: int, body: bytes) -> tuple[int, bytes]:
    if scope["method"] == "DELETE" and scope["path"].startswith("/api/v1/webhooks/"):
        return 405, b'{"errors": [{"field": null, "message": "method not allowed"}]}'
    return status, body


@pytest.fixture
def reference() -> Iterator[tuple[Any, str]]:
    app = create_app(webhook_base_delay=0.05)
    with serve(app) as url:
        yield app, url


def _leftovers(url: str) -> tuple[list[str], list[Any]]:
    headers = {"Authorization": f"Bearer {PMS_API_KEY}"}
    customers = httpx.get(f"{url}/api/v1/customers", params={"limit": 1000}, headers=headers).json()
    hooks = httpx.get(f"{url}/api/v1/webhooks", headers=headers).json()
    names = [c["name"] for c in customers["items"] if c["name"].startswith("tolken-check")]
    return names, hooks["items"]


def test_reference_pms_passes_every_rule_and_is_left_clean(reference: tuple[Any, str]) -> None:
    """Against the reference server every rule passes, and no test record or webhook remains."""
    _, url = reference
    report = run_conformance(url, PMS_API_KEY)
    assert [r.name for r in report.results] == list(RULES)
    assert report.failed == [], [r for r in report.results if not r.passed]
    assert any("removed webhook" in note for note in report.cleanup)
    assert _leftovers(url) == ([], [])


@pytest.mark.parametrize(
    ("request_hook", "response_hook", "broken_rule"),
    [
        (ignore_if_match, None, {"if-match"}),
        (inclusive_updated_after, None, {"updated-after-exclusive"}),
        (drop_nulls_in_patches, None, {"merge-patch"}),
        (wrong_webhook_secret, None, {"webhook-signature"}),
        (open_door, None, {"auth"}),
        (forget_project_billable, None, {"projects"}),
        (None, cursor_skips_a_record, {"paging", "cursor-stability"}),
        (None, accepts_bad_bodies, {"validation-422", "projects"}),
        (None, no_tombstones, {"changes-feed"}),
    ],
    ids=lambda v: getattr(v, "__name__", None) or "-",
)
def test_broken_pms_fails_exactly_the_broken_rule(
    request_hook: RequestHook | None, response_hook: ResponseHook | None, broken_rule: set[str]
) -> None:
    """A PMS that breaks one clause of the contract is named by the rule for that clause only."""
    app = Tamper(create_app(webhook_base_delay=0.05), request=request_hook, response=response_hook)
    with serve(app) as url:
        report = run_conformance(url, PMS_API_KEY, webhook_wait=3.0)
    assert set(report.failed) == broken_rule, [r for r in report.results if not r.passed]
    assert not report.passed


def test_cleanup_says_when_a_webhook_must_be_removed_by_hand() -> None:
    """A PMS without DELETE /webhooks/{id} still passes, and the report says what to remove."""
    app = Tamper(create_app(webhook_base_delay=0.05), response=no_webhook_removal)
    with serve(app) as url:
        report = run_conformance(url, PMS_API_KEY, rules=["webhook-signature"])
    assert report.passed
    assert any("remove the webhook to http://127.0.0.1:" in note for note in report.cleanup)


def test_cli_prints_one_line_per_rule_and_exits_zero(reference: tuple[Any, str]) -> None:
    """`tolken check-pms URL --api-key KEY` prints PASS lines and exits 0 on a conforming PMS."""
    _, url = reference
    result = CliRunner().invoke(cli, ["check-pms", url, "--api-key", PMS_API_KEY])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # The reference PMS offers no include=record feed bodies: an optional capability.
    absent = {"feed-records"}
    for name in RULES:
        label = "ABSENT" if name in absent else "PASS"
        assert any(line.startswith(label) and f" {name} " in line for line in lines), name
    passed = len(RULES) - len(absent)
    assert f"{passed}/{len(RULES)} rules passed ({len(absent)} capabilities absent)" in lines[-1]


def test_cli_json_and_exit_one_on_a_wrong_key(reference: tuple[Any, str]) -> None:
    """With a wrong key the rules fail naming the 401, the JSON says so, and the exit code is 1."""
    _, url = reference
    result = CliRunner().invoke(
        cli, ["check-pms", f"{url}/api/v1", "--api-key", "wrong", "--json", "--rule", "paging"]
    )
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)  # the plan goes to stderr
    assert doc["passed"] is False
    assert doc["rules"][0]["rule"] == "paging"
    assert "401" in doc["rules"][0]["reason"]
    assert "wrong" not in result.output.replace('"wrong"', "")


def test_cli_unknown_rule_is_a_usage_error(reference: tuple[Any, str]) -> None:
    """Naming a rule that does not exist exits 2 and lists the known rules."""
    _, url = reference
    result = CliRunner().invoke(cli, ["check-pms", url, "--api-key", "k", "--rule", "nope"])
    assert result.exit_code == 2
    assert "webhook-signature" in result.output


def test_cli_unreachable_pms_is_one_clear_line() -> None:
    """Pointing the check at a port where nothing listens prints one error line and exits 1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = CliRunner().invoke(cli, ["check-pms", f"http://127.0.0.1:{port}", "--api-key", "k"])
    assert result.exit_code == 1
    assert result.output.startswith(
        f"error: pms: cannot reach the PMS at http://127.0.0.1:{port}/api/v1"
    )
    assert len(result.output.strip().splitlines()) == 1


def test_console_script_runs_the_check(reference: tuple[Any, str]) -> None:
    """The installed `tolken check-pms` command passes the reference PMS and exits 0."""
    _, url = reference
    tolken = Path(sys.executable).with_name("tolken")
    done = subprocess.run(
        [str(tolken), "check-pms", url, "--json"],
        env={**os.environ, "PMS_API_KEY": PMS_API_KEY},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["passed"] is True
