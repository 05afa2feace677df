"""The registry of conformance rules: small named functions that pass or fail with a reason."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx

from tolken.conformance._context import CheckContext, RuleFailed, expect

__all__ = ["RULES", "Rule", "RuleFailed", "RuleResult", "expect", "rule"]


@dataclass(frozen=True)
class RuleResult:
    """The outcome of one rule: ``passed`` and a one-line ``reason`` either way."""

    name: str
    passed: bool
    reason: str

    def to_dict(self) -> dict[str, object]:
        """The JSON shape ``check-pms --json`` prints."""
        return {"rule": self.name, "passed": self.passed, "reason": self.reason}


RuleFunction = Callable[[CheckContext], str]


@dataclass(frozen=True)
class Rule:
    """A named check of one clause of the contract; ``check`` returns the pass reason."""

    name: str
    summary: str
    check: RuleFunction

    def run(self, ctx: CheckContext) -> RuleResult:
        """Run the check, turning every way it can end into a RuleResult."""
        try:
            reason = self.check(ctx)
        except RuleFailed as exc:
            return RuleResult(self.name, False, str(exc))
        except httpx.HTTPError as exc:
            return RuleResult(self.name, False, f"request failed: {type(exc).__name__}: {exc}")
        return RuleResult(self.name, True, reason)


RULES: dict[str, Rule] = {}
"""Every rule by name, in the order they run."""


def rule(name: str, summary: str) -> Callable[[RuleFunction], RuleFunction]:
    """Register a rule function under ``name`` (decorator)."""

    def register(fn: RuleFunction) -> RuleFunction:
        if name in RULES:
            raise ValueError(f"rule {name!r} is registered twice")
        RULES[name] = Rule(name, summary, fn)
        return fn

    return register
