"""The pure parts of `tolken check-pms`: URL handling, rule results, the report lines."""

from __future__ import annotations

import httpx
import pytest

from tolken.conformance import RULES, ConformanceReport, Rule, RuleResult, api_base, format_report
from tolken.conformance._context import CheckContext, Exchange
from tolken.conformance._receiver import WebhookReceiver
from tolken.conformance._registry import RuleFailed, rule
from tolken.errors import ConfigError


@pytest.mark.parametrize(
    ("given", "base"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000/api/v1"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000/api/v1"),
        ("https://pms.example.com/api/v1/", "https://pms.example.com/api/v1"),
        ("https://pms.example.com/custom/root", "https://pms.example.com/custom/root"),
    ],
)
def test_url_may_name_the_host_or_the_api_root(given: str, base: str) -> None:
    """A bare host gets the contract's /api/v1; an explicit root is used as given."""
    assert api_base(given) == base


def test_a_non_http_url_is_refused() -> None:
    """A typo in the URL is a configuration error, not a list of failed rules."""
    with pytest.raises(ConfigError, match="not an http"):
        api_base("pms.example.com")


def _ctx() -> CheckContext:
    return CheckContext("http://x/api/v1", "k", httpx.Client())


def test_rule_run_turns_every_ending_into_a_result() -> None:
    """A pass, a contract failure and a network error each become one result with a reason."""

    def fails(_ctx: CheckContext) -> str:
        raise RuleFailed("GET /customers gave HTTP 500")

    def breaks(_ctx: CheckContext) -> str:
        raise httpx.ConnectError("connection refused")

    assert Rule[CheckContext]("a", "", lambda _: "fine").run(_ctx()) == RuleResult(
        "a", True, "fine"
    )
    assert Rule[CheckContext]("b", "", fails).run(_ctx()) == RuleResult(
        "b", False, "GET /customers gave HTTP 500"
    )
    result = Rule[CheckContext]("c", "", breaks).run(_ctx())
    assert not result.passed
    assert result.reason == "request failed: ConnectError: connection refused"


def test_rule_names_are_unique() -> None:
    """Registering a second rule under an existing name is a programming error."""
    with pytest.raises(ValueError, match="registered twice"):
        rule("auth", "again")(lambda _: "")


def test_every_documented_rule_is_registered() -> None:
    """The rules the issue asks for are all in the registry, each with a summary."""
    assert {
        "auth",
        "paging",
        "cursor-stability",
        "updated-after-exclusive",
        "idempotent-post",
        "if-match",
        "merge-patch",
        "validation-422",
        "changes-feed",
        "webhook-signature",
    } <= set(RULES)
    assert all(r.summary for r in RULES.values())


def test_report_lines_and_json() -> None:
    """The report prints PASS/FAIL per rule with its reason, the cleanup, and a total."""
    report = ConformanceReport(
        url="http://x/api/v1",
        results=(
            RuleResult("auth", True, "401 without a key"),
            RuleResult("if-match", False, "got 200"),
        ),
        cleanup=("deleted 3 test record(s)",),
    )
    assert format_report(report) == [
        "PASS  auth      401 without a key",
        "FAIL  if-match  got 200",
        "cleanup: deleted 3 test record(s)",
        "1/2 rules passed against http://x/api/v1",
    ]
    assert not report.passed
    assert report.failed == ["if-match"]
    assert report.to_dict()["rules"] == [
        {
            "rule": "auth",
            "passed": True,
            "status": "pass",
            "reason": "401 without a key",
            "exchanges": [],
        },
        {
            "rule": "if-match",
            "passed": False,
            "status": "fail",
            "reason": "got 200",
            "exchanges": [],
        },
    ]


def test_absent_capabilities_pass_and_failures_show_what_was_sent() -> None:
    """An absent capability is reported, not failed; a failure shows the requests behind it."""
    sent = Exchange("PATCH", "customers/7", '{"name": "x"}', 200, '{"id": 7}')
    report = ConformanceReport(
        url="http://x",
        results=(
            RuleResult("changes-feed", True, "no /changes feed", "absent"),
            RuleResult("if-match", False, "stale If-Match gave 200", "fail", (sent,)),
            RuleResult("delete", False, "not run: it creates test records", "skipped"),
        ),
    )
    assert format_report(report) == [
        "ABSENT  changes-feed  no /changes feed",
        "FAIL    if-match      stale If-Match gave 200",
        '    PATCH customers/7 {"name": "x"} -> 200 {"id": 7}',
        "SKIP    delete        not run: it creates test records",
        "0/3 rules passed (1 capabilities absent) against http://x",
    ]
    assert report.failed == ["if-match"]
    assert not report.passed
    assert ConformanceReport("http://x", report.results[:1]).passed


def test_receiver_records_deliveries() -> None:
    """The check's own webhook receiver answers 204 and keeps the headers and raw body."""
    with WebhookReceiver() as receiver:
        response = httpx.post(
            receiver.url, content=b'{"id": "c1"}', headers={"X-PMS-Timestamp": "1"}
        )
        assert response.status_code == 204
        got = receiver.wait_for(lambda d: b"c1" in d.body, timeout=2)
        assert got is not None
        assert got.body == b'{"id": "c1"}'
        assert got.headers["X-PMS-Timestamp"] == "1"
        assert receiver.wait_for(lambda _: False, timeout=0.05) is None
