"""check-pms leaves no test record behind whatever the PMS answers, and says first what it makes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration.conformance.test_check_pms import Scope, Tamper, _is, _leftovers
from jsonserver import running_json_server
from loopback import serve
from tolken.conformance import RULES, run_conformance
from tolken.sandbox.pms import PMS_API_KEY, create_app


@pytest.fixture
def reference() -> Iterator[str]:
    """The reference PMS on loopback."""
    with serve(create_app(webhook_base_delay=0.05)) as url:
        yield url


def _writes(url: str) -> int:
    stats = httpx.get(f"{url}/_sandbox/stats", params={"api_key": PMS_API_KEY}).json()
    return sum(
        n
        for key, n in stats["requests"].items()
        if key.split(" ", 1)[0] in ("POST", "PATCH", "PUT", "DELETE") and "/_sandbox/" not in key
    )


def test_the_plan_comes_before_any_write_and_covers_every_create(reference: str) -> None:
    """The check says how many records it will create before it writes anything, and keeps to it."""
    seen: list[tuple[str, int]] = []
    report = run_conformance(
        reference, PMS_API_KEY, announce=lambda line: seen.append((line, _writes(reference)))
    )
    assert report.passed, report.failed
    assert [writes for _, writes in seen] == [0, 0]
    assert _writes(reference) > 0
    promised = sum(int(n) for n in re.findall(r"(\d+) (?:customers|projects)", seen[0][0]))
    assert 0 < len(report.created) <= promised
    assert report.plan == tuple(line for line, _ in seen)


def _fail_created_customers(scope: Scope, status: int, body: bytes) -> tuple[int, bytes]:
    # The record is stored, but the PMS answers as if it failed: the check never learns its id.
    if _is(scope, "POST", "/api/v1/customers") and status == 201 and b"read" in body:
        return 500, b'{"errors": [{"field": null, "message": "internal error"}]}'
    return status, body


def test_a_record_stored_behind_an_error_answer_is_found_and_deleted() -> None:
    """A POST that answers 500 yet stores the record: the sweep finds it by name and deletes it."""
    app = Tamper(create_app(webhook_base_delay=0.05), response=_fail_created_customers)
    with serve(app) as url:
        report = run_conformance(url, PMS_API_KEY, rules=["create-and-read"])
        assert report.failed == ["create-and-read"]
        assert report.left_behind == ()
        assert _leftovers(url) == ([], [])
    assert report.cleanup[0] == "deleted 1 test record(s)"


def _deletes_nothing(scope: Scope, body: bytes) -> bytes:
    # DELETE answered as a GET would be: 200, and the record stays.
    if scope["method"] == "DELETE" and scope["path"].startswith("/api/v1/customers/"):
        scope["method"] = "GET"
    return body


def test_a_pms_that_cannot_delete_gets_one_test_record_and_its_id() -> None:
    """When the probe cannot delete, no rule creates records and the one left is named by id."""
    app = Tamper(create_app(webhook_base_delay=0.05), request=_deletes_nothing)
    with serve(app) as url:
        report = run_conformance(url, PMS_API_KEY)
        names, _ = _leftovers(url)
    statuses = {r.name: r.status for r in report.results}
    assert statuses.pop("delete-test-records") == "fail"
    assert statuses.pop("auth") == "pass"
    assert set(statuses.values()) == {"skipped"}
    assert set(statuses) == set(RULES) - {"auth"}
    assert len(names) == 1
    assert names[0].endswith(" probe")
    [left] = report.left_behind
    assert left.startswith("customers/")
    assert any(left in note for note in report.cleanup)


def test_json_server_at_a_bare_host_keeps_one_record_and_the_check_names_it(
    tmp_path: Path,
) -> None:
    """json-server (no /api/v1): one test record instead of ten, and the report gives its id."""
    with running_json_server(tmp_path, middlewares=()) as js:
        report = run_conformance(js.url, "not-checked-by-json-server")
        records: list[dict[str, Any]] = js.records("customers")
    assert not report.passed
    assert report.results[0].name == "delete-test-records"
    assert [f"customers/{r['id']}" for r in records] == list(report.left_behind)
    assert len(records) == 1


def _no_feed(scope: Scope, status: int, body: bytes) -> tuple[int, bytes]:
    if scope["path"].startswith("/api/v1/changes") or _is(scope, "POST", "/api/v1/webhooks"):
        return 404, b'{"errors": [{"field": null, "message": "not found"}]}'
    return status, body


def _feed_without_has_more(scope: Scope, status: int, body: bytes) -> tuple[int, bytes]:
    if _is(scope, "GET", "/api/v1/changes") and status == 200:
        page = json.loads(body)
        page.pop("has_more", None)
        return status, json.dumps(page).encode()
    return status, body


def test_a_pms_without_feed_or_webhooks_has_them_reported_absent_not_failed() -> None:
    """No /changes and no /webhooks: those rules say ABSENT, and the PMS still passes."""
    app = Tamper(create_app(webhook_base_delay=0.05), response=_no_feed)
    feed_rules = ["changes-feed", "feed-has-more", "feed-records", "webhook-signature"]
    with serve(app) as url:
        report = run_conformance(url, PMS_API_KEY, rules=["auth", *feed_rules])
        assert _leftovers(url) == ([], [])
    assert {r.name: r.status for r in report.results} == {
        "auth": "pass",
        **dict.fromkeys(feed_rules, "absent"),
    }
    assert report.passed


def test_a_feed_without_has_more_reports_the_capability_absent() -> None:
    """A feed page without has_more: feed-has-more is ABSENT, the feed itself still passes."""
    app = Tamper(create_app(webhook_base_delay=0.05), response=_feed_without_has_more)
    with serve(app) as url:
        report = run_conformance(url, PMS_API_KEY, rules=["changes-feed", "feed-has-more"])
    assert [r.status for r in report.results] == ["pass", "absent"]
