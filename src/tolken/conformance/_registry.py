"""The registry of conformance rules: small named functions that pass or fail with a reason.

A rule ends in one of four ways (:data:`Status`): ``pass``; ``fail`` (the PMS
broke the clause); ``absent`` (the PMS lacks an optional capability the rule
checks: reported, not a failure); ``skipped`` (not run, because the check
could not delete what it creates and this rule creates records).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Generic, Literal, Protocol, TypeVar

import httpx

from tolken.conformance._context import (
    CapabilityAbsent,
    CheckContext,
    Exchange,
    RuleFailed,
    expect,
)
from tolken.errors import Stopped, TolkenError

__all__ = [
    "RULES",
    "CapabilityAbsent",
    "Rule",
    "RuleFailed",
    "RuleResult",
    "Status",
    "expect",
    "rule",
]

Status = Literal["pass", "fail", "absent", "skipped"]


@dataclass(frozen=True)
class RuleResult:
    """The outcome of one rule: ``passed`` and a one-line ``reason`` either way.

    ``status`` refines ``passed`` (an absent capability passes, a skipped rule
    does not); ``exchanges`` are the requests the rule sent and what came back.
    """

    name: str
    passed: bool
    reason: str
    status: Status | None = None
    exchanges: tuple[Exchange, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.status is None:
            object.__setattr__(self, "status", "pass" if self.passed else "fail")

    def to_dict(self) -> dict[str, object]:
        """The JSON shape ``check-pms --json`` prints."""
        return {
            "rule": self.name,
            "passed": self.passed,
            "status": self.status,
            "reason": self.reason,
            "exchanges": [e.to_dict() for e in self.exchanges],
        }


class _Recording(Protocol):
    @property
    def exchanges(self) -> list[Exchange]: ...


C = TypeVar("C", bound=_Recording)

RuleFunction = Callable[[CheckContext], str]


@dataclass(frozen=True)
class Rule(Generic[C]):
    """A named check of one clause of the contract; ``check`` returns the pass reason.

    ``creates`` is the most test records of each resource the rule makes
    against a conforming PMS (what ``check-pms`` announces before it starts);
    ``batch`` rules share the context's batch of customers instead.
    """

    name: str
    summary: str
    check: Callable[[C], str]
    creates: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    batch: bool = False

    def run(self, ctx: C) -> RuleResult:
        """Run the check, turning every way it can end into a RuleResult."""
        start = len(ctx.exchanges)

        def result(passed: bool, reason: str, status: Status) -> RuleResult:
            exchanges = tuple(ctx.exchanges[start:])
            return RuleResult(self.name, passed, reason, status, exchanges)

        try:
            reason = self.check(ctx)
        except RuleFailed as exc:
            return result(False, str(exc), "fail")
        except CapabilityAbsent as exc:
            return result(True, str(exc), "absent")
        except httpx.HTTPError as exc:
            return result(False, f"request failed: {type(exc).__name__}: {exc}", "fail")
        except Stopped:
            raise
        except TolkenError as exc:
            # A configured connector classifies the PMS's answers; its words say what went wrong.
            return result(False, f"{type(exc).__name__}: {exc}", "fail")
        return result(True, reason, "pass")

    def skip(self, reason: str) -> RuleResult:
        """The result of not running this rule."""
        return RuleResult(self.name, False, f"not run: {reason}", "skipped")


RULES: dict[str, Rule[CheckContext]] = {}
"""Every rule by name, in the order they run."""


def rule(
    name: str,
    summary: str,
    *,
    creates: Mapping[str, int] | None = None,
    batch: bool = False,
) -> Callable[[RuleFunction], RuleFunction]:
    """Register a rule function under ``name`` (decorator)."""

    def register(fn: RuleFunction) -> RuleFunction:
        if name in RULES:
            raise ValueError(f"rule {name!r} is registered twice")
        RULES[name] = Rule(name, summary, fn, MappingProxyType(dict(creates or {})), batch)
        return fn

    return register
