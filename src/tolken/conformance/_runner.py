"""Run the conformance rules against a PMS, clean up, and report."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

# Importing the rule modules registers their rules (_rules_feed imports
# _rules_records first, so record rules run before feed rules).
from tolken.conformance import _rules_feed  # noqa: F401
from tolken.conformance._cleanup import clean_up, now, probe_delete
from tolken.conformance._context import BATCH_SIZE as _BATCH_SIZE
from tolken.conformance._context import CheckContext
from tolken.conformance._registry import RULES, Rule, RuleResult
from tolken.errors import ConfigError, Unreachable

__all__ = ["ConformanceReport", "api_base", "format_report", "plan_lines", "run_conformance"]

PROBE_RULE = "delete-test-records"
"""The result reported when the check cannot delete a record it created (only then)."""


@dataclass(frozen=True)
class ConformanceReport:
    """Every rule's result plus what the cleanup did."""

    url: str
    results: tuple[RuleResult, ...]
    cleanup: tuple[str, ...] = field(default=())
    plan: tuple[str, ...] = field(default=())
    left_behind: tuple[str, ...] = field(default=())
    """``resource/id`` of every test record the check could not delete."""
    created: tuple[str, ...] = field(default=())
    """``resource/id`` of every test record the check created (and deleted, unless left)."""

    @property
    def passed(self) -> bool:
        """True when every rule passed or found its capability absent, and none was skipped."""
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[str]:
        """Names of the rules that failed."""
        return [r.name for r in self.results if r.status == "fail"]

    def to_dict(self) -> dict[str, object]:
        """The JSON document ``check-pms --json`` prints."""
        return {
            "url": self.url,
            "passed": self.passed,
            "plan": list(self.plan),
            "rules": [r.to_dict() for r in self.results],
            "cleanup": list(self.cleanup),
            "created": list(self.created),
            "left_behind": list(self.left_behind),
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
    announce: Callable[[str], None] | None = None,
) -> ConformanceReport:
    """Run ``rules`` (default: all, in order) against the PMS at ``url`` and clean up after.

    Rules run one after another and each creates its own test records; a
    failing rule never stops the others. Before any request, ``announce`` gets
    the plan line by line (what the check will create, and that it deletes it
    again). ``http`` lets tests supply a client.
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
    selected = [RULES[name] for name in names]
    plan = tuple(plan_lines(ctx, selected))
    results: list[RuleResult] = []
    started_at = now()
    try:
        _probe(ctx)
        for line in plan:
            if announce is not None:
                announce(line)
        try:
            start = len(ctx.exchanges)
            cannot_delete = probe_delete(ctx) if any(_creates(r) for r in selected) else None
            if cannot_delete is not None:
                probe = tuple(ctx.exchanges[start:])
                results.append(RuleResult(PROBE_RULE, False, cannot_delete, "fail", probe))
            for chosen in selected:
                if cannot_delete is not None and _creates(chosen):
                    results.append(chosen.skip(f"it creates test records ({PROBE_RULE})"))
                else:
                    results.append(chosen.run(ctx))
        finally:
            # Also after Ctrl-C: what the run created must not stay behind.
            cleanup = clean_up(ctx, started_at)
    finally:
        if http is None:
            client.close()
    return ConformanceReport(
        url=base,
        results=tuple(results),
        cleanup=cleanup.notes,
        plan=plan,
        left_behind=cleanup.left_behind,
        created=tuple(f"{resource}/{record_id}" for resource, record_id in ctx.created),
    )


def _creates(chosen: Rule[CheckContext]) -> bool:
    return chosen.batch or any(chosen.creates.values())


def plan_lines(ctx: CheckContext, selected: Sequence[Rule[CheckContext]]) -> list[str]:
    """What the run will create, said before it starts."""
    total: Counter[str] = Counter({"customers": 1})  # the delete probe
    if any(r.batch for r in selected):
        total["customers"] += _BATCH_SIZE
    for chosen in selected:
        total.update(chosen.creates)
    made = ", ".join(f"{n} {resource}" for resource, n in total.items() if n)
    return [
        f"check-pms will create up to {made} named '{ctx.name('')}…'"
        + (" and one webhook" if any(r.name == "webhook-signature" for r in selected) else ""),
        "it deletes one first to make sure it can, deletes them all at the end, "
        "and lists any it cannot delete",
    ]


def _probe(ctx: CheckContext) -> None:
    """Fail fast, with one clear error, when nothing answers at the URL."""
    try:
        ctx.call("GET", "customers", params={"limit": 1}, auth=None)
    except httpx.TransportError as exc:
        raise Unreachable(f"cannot reach the PMS at {ctx.base_url}: {exc}", system="pms") from exc


_LABELS = {"pass": "PASS", "fail": "FAIL", "absent": "ABSENT", "skipped": "SKIP"}
_SHOWN_EXCHANGES = 3


def format_report(report: ConformanceReport, *, exchanges: bool = False) -> list[str]:
    """One line per rule (``PASS``, ``FAIL``, ``ABSENT``, ``SKIP``) with its reason, then cleanup.

    A failed rule is followed by the last requests it sent and what came
    back; ``exchanges`` shows every request of every rule.
    """
    width = max((len(r.name) for r in report.results), default=0)
    labels = [_LABELS[r.status or "fail"] for r in report.results]
    label_width = max((len(label) for label in labels), default=0)
    lines: list[str] = []
    for r, label in zip(report.results, labels, strict=True):
        lines.append(f"{label:<{label_width}}  {r.name:<{width}}  {r.reason}")
        shown = r.exchanges if exchanges else r.exchanges[-_SHOWN_EXCHANGES:]
        if exchanges or r.status == "fail":
            lines += [f"    {e.line()}" for e in shown]
    lines += [f"cleanup: {note}" for note in report.cleanup]
    passed = sum(r.status == "pass" for r in report.results)
    absent = sum(r.status == "absent" for r in report.results)
    lines.append(
        f"{passed}/{len(report.results)} rules passed"
        + (f" ({absent} capabilities absent)" if absent else "")
        + f" against {report.url}"
    )
    return lines
