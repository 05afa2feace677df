"""Run the conformance rules against a PMS, clean up, and report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

# Importing the rule modules registers their rules (_rules_feed imports
# _rules_records first, so record rules run before feed rules).
from tolken.conformance import _rules_feed  # noqa: F401
from tolken.conformance._context import CheckContext
from tolken.conformance._registry import RULES, RuleResult
from tolken.errors import ConfigError, Unreachable

__all__ = ["ConformanceReport", "api_base", "format_report", "run_conformance"]


@dataclass(frozen=True)
class ConformanceReport:
    """Every rule's result plus what the cleanup did."""

    url: str
    results: tuple[RuleResult, ...]
    cleanup: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        """True when every rule that ran passed."""
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[str]:
        """Names of the rules that failed."""
        return [r.name for r in self.results if not r.passed]

    def to_dict(self) -> dict[str, object]:
        """The JSON document ``check-pms --json`` prints."""
        return {
            "url": self.url,
            "passed": self.passed,
            "rules": [r.to_dict() for r in self.results],
            "cleanup": list(self.cleanup),
        }


def api_base(url: str) -> str:
    """The API root: ``URL`` as given, or ``URL/api/v1`` when it names only a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"not an http(s) URL: {url!r}")
    base = url.rstrip("/")
    return base if parts.path.strip("/") else f"{base}/api/v1"


def run_conformance(
    url: str,
    api_key: str,
    *,
    rules: Sequence[str] | None = None,
    webhook_host: str = "127.0.0.1",
    webhook_port: int = 0,
    webhook_public_url: str | None = None,
    webhook_wait: float = 10.0,
    timeout: float = 15.0,
    http: httpx.Client | None = None,
) -> ConformanceReport:
    """Run ``rules`` (default: all, in order) against the PMS at ``url`` and clean up after.

    Rules run one after another and each creates its own test records; a
    failing rule never stops the others. ``http`` lets tests supply a client.
    """
    names = list(rules) if rules is not None else list(RULES)
    unknown = [n for n in names if n not in RULES]
    if unknown:
        raise ConfigError(f"unknown rule(s) {', '.join(unknown)}; known: {', '.join(RULES)}")
    base = api_base(url)
    client = http or httpx.Client(timeout=timeout)
    ctx = CheckContext(
        base_url=base,
        api_key=api_key,
        http=client,
        webhook_host=webhook_host,
        webhook_port=webhook_port,
        webhook_public_url=webhook_public_url,
        webhook_wait=webhook_wait,
    )
    results: list[RuleResult] = []
    try:
        _probe(ctx)
        try:
            for name in names:
                results.append(RULES[name].run(ctx))
        finally:
            # Also after Ctrl-C: what the run created must not stay behind.
            notes = ctx.cleanup()
    finally:
        if http is None:
            client.close()
    return ConformanceReport(url=base, results=tuple(results), cleanup=tuple(notes))


def _probe(ctx: CheckContext) -> None:
    """Fail fast, with one clear error, when nothing answers at the URL."""
    try:
        ctx.call("GET", "customers", params={"limit": 1}, auth=None)
    except httpx.TransportError as exc:
        raise Unreachable(f"cannot reach the PMS at {ctx.base_url}: {exc}", system="pms") from exc


def format_report(report: ConformanceReport) -> list[str]:
    """One ``PASS``/``FAIL`` line per rule with its reason, then cleanup and a total."""
    width = max((len(r.name) for r in report.results), default=0)
    lines = [
        f"{'PASS' if r.passed else 'FAIL'}  {r.name:<{width}}  {r.reason}" for r in report.results
    ]
    lines += [f"cleanup: {note}" for note in report.cleanup]
    passed = sum(r.passed for r in report.results)
    lines.append(f"{passed}/{len(report.results)} rules passed against {report.url}")
    return lines
