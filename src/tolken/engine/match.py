"""Merge rules: find the existing record on the other side that a record should link to.

A :class:`MatchRule` compares one key of each side after a normaliser
(``digits``, ``casefold``, ``exact``). Rules are tried in order; the first rule
that finds exactly one candidate wins. A rule that finds several candidates
stops the search and reports them: ambiguous candidates are never linked
automatically (a later, weaker rule must not pick one of them). Records that are
already linked, deleted, or fail the rule's condition are not candidates.

Keys are flat-field paths (both sides are projected to PMS paths, so usually the
same path on both sides) or callables over the projected values, so a mapping
can supply its own rules through a thin adapter.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tolken.engine.merge import comparison_key, values_equal
from tolken.engine.model import ProjectedRecord, Side, Values
from tolken.mapping.apply import merge_key_flat
from tolken.mapping.models import Flow

__all__ = [
    "DEFAULT_RULES",
    "NORMALISERS",
    "CandidateIndex",
    "Condition",
    "KeySpec",
    "MatchResult",
    "MatchRule",
    "Normaliser",
    "rules_from_mapping",
]

Normaliser = Callable[[Any], Any]
"""Turns a raw key value into a comparable, hashable key (None: the record has no key)."""

KeySpec = str | Callable[[Values], Any]
"""A flat-field path, or a function of the projected values."""

Condition = Mapping[str, Any] | Callable[[Values], bool] | None
"""Which records a rule applies to: ``{path: value}`` (a tuple/list/set value
means "any of"), a predicate, or None for every record."""


def _digits(value: Any) -> str | None:
    """Only the digits (``"NO 912 345 678 MVA"`` → ``"912345678"``); no digits → no key."""
    if value is None or isinstance(value, bool):
        return None
    digits = re.sub(r"\D", "", str(value))
    return digits or None


def _casefold(value: Any) -> Any:
    """Case-insensitive text (e-mail addresses), after trimming and NFC."""
    if isinstance(value, str):
        text = unicodedata.normalize("NFC", value).strip().casefold()
        return text or None
    return comparison_key(value)


def _exact(value: Any) -> Any:
    """The value as :func:`tolken.engine.merge.comparison_key` sees it (trimmed, NFC)."""
    return comparison_key(value)


NORMALISERS: Mapping[str, Normaliser] = {
    "digits": _digits,
    "casefold": _casefold,
    "exact": _exact,
}


def _read(spec: KeySpec, values: Values) -> Any:
    return values.get(spec) if isinstance(spec, str) else spec(values)


def _holds(condition: Condition, values: Values) -> bool:
    if condition is None:
        return True
    if callable(condition):
        return bool(condition(values))
    for path, expected in condition.items():
        actual = values.get(path)
        options = expected if isinstance(expected, tuple | list | set | frozenset) else (expected,)
        if not any(values_equal(actual, option) for option in options):
            return False
    return True


@dataclass(frozen=True)
class MatchRule:
    """One merge rule: ``po_key`` on a PowerOffice record equals ``pms_key`` on a PMS record."""

    name: str
    po_key: KeySpec
    pms_key: KeySpec
    normalise: str | Normaliser = "exact"
    po_condition: Condition = None
    pms_condition: Condition = None

    def __post_init__(self) -> None:
        if isinstance(self.normalise, str) and self.normalise not in NORMALISERS:
            known = ", ".join(sorted(NORMALISERS))
            raise ValueError(f"unknown normaliser {self.normalise!r}; known: {known}")

    def key(self, side: Side, values: Values) -> Any:
        """The normalised key of a record of ``side``; None when the rule does not apply."""
        condition = self.po_condition if side == "poweroffice" else self.pms_condition
        if not _holds(condition, values):
            return None
        spec = self.po_key if side == "poweroffice" else self.pms_key
        normalise = (
            NORMALISERS[self.normalise] if isinstance(self.normalise, str) else self.normalise
        )
        return normalise(_read(spec, values))


@dataclass(frozen=True)
class MatchResult:
    """The outcome for one record: ``rule`` found ``candidates`` (none, one, or several)."""

    rule: str | None = None
    candidates: tuple[str, ...] = ()

    @property
    def unique(self) -> str | None:
        """The single candidate to link to, or None."""
        return self.candidates[0] if len(self.candidates) == 1 else None

    @property
    def ambiguous(self) -> bool:
        """True when the deciding rule found several candidates."""
        return len(self.candidates) > 1


@dataclass(frozen=True)
class CandidateIndex:
    """Candidates of one side indexed by every rule's key, for matching records of the other side.

    ``side`` is the side the candidates live on. Ids in ``exclude`` (already
    linked) and tombstones are left out.
    """

    side: Side
    rules: tuple[MatchRule, ...]
    _keys: tuple[dict[Any, tuple[str, ...]], ...] = field(repr=False, compare=False)

    @classmethod
    def build(
        cls,
        side: Side,
        candidates: Iterable[ProjectedRecord],
        rules: Iterable[MatchRule],
        *,
        exclude: Collection[str] = frozenset(),
    ) -> CandidateIndex:
        """Index ``candidates`` (records of ``side``) under each rule."""
        rules = tuple(rules)
        seen: dict[str, ProjectedRecord] = {}
        for record in candidates:
            if not record.deleted and record.id not in exclude:
                seen[record.id] = record  # a later copy of a record is the fresher one
        keys: list[dict[Any, tuple[str, ...]]] = []
        for rule in rules:
            by_key: dict[Any, list[str]] = {}
            for record_id in sorted(seen):
                key = rule.key(side, seen[record_id].values)
                if key is not None:
                    by_key.setdefault(key, []).append(record_id)
            keys.append({k: tuple(v) for k, v in by_key.items()})
        return cls(side=side, rules=rules, _keys=tuple(keys))

    def find(self, values: Values) -> MatchResult:
        """Match a record of the other side: the first rule with any candidate decides."""
        other: Side = "pms" if self.side == "poweroffice" else "poweroffice"
        for rule, by_key in zip(self.rules, self._keys, strict=True):
            key = rule.key(other, values)
            if key is None:
                continue
            found = by_key.get(key, ())
            if found:
                return MatchResult(rule=rule.name, candidates=found)
        return MatchResult()


_CUSTOMER_KINDS = {"kind": ("company", "person")}
_PERSON = {"kind": "person"}

DEFAULT_RULES: Mapping[str, tuple[MatchRule, ...]] = {
    "customers": (
        MatchRule(
            "organization-number",
            "organization_number",
            "organization_number",
            "digits",
            pms_condition=_CUSTOMER_KINDS,
        ),
        MatchRule(
            "person-email",
            "email",
            "email",
            "casefold",
            po_condition=_PERSON,
            pms_condition=_PERSON,
        ),
    ),
    "departments": (
        MatchRule(
            "department-code", "number", "number", "exact", pms_condition={"kind": "department"}
        ),
    ),
    "projects": (MatchRule("project-code", "code", "code", "exact"),),
}
"""The merge rules of DESIGN §3, in the flat PMS-path space of the default mapping."""


def _identity(value: Any) -> Any:
    return value


def rules_from_mapping(flow: Flow) -> tuple[MatchRule, ...]:
    """A mapping flow's ``merge_rules:`` (from the YAML) as :class:`MatchRule` values.

    Both sides are projected to PMS paths, so one key function (the mapping's
    own :func:`tolken.mapping.apply.merge_key_flat`, which applies the rule's
    ``when`` condition and normaliser) serves both sides.
    """
    rules: list[MatchRule] = []
    for rule in flow.merge_rules:

        def key(values: Values, rule: Any = rule) -> Any:
            return merge_key_flat(rule, values)

        name = f"{rule.poweroffice} = {rule.pms}"
        rules.append(MatchRule(name, po_key=key, pms_key=key, normalise=_identity))
    return tuple(rules)
