"""Normalisers for merge-rule keys: two values match when their normalised forms are equal.

Picked by name in the mapping (``normalise: digits``); a Python mapping may
pass any ``str -> str`` callable. An empty result means "no key": a record
without an organisation number never matches on it.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["NORMALISERS", "Normaliser", "register_normaliser"]

Normaliser = Callable[[str], str]


def _exact(text: str) -> str:
    return text.strip()


def _casefold(text: str) -> str:
    return text.strip().casefold()


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _alphanumeric(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch.isalnum())


NORMALISERS: dict[str, Normaliser] = {
    "exact": _exact,
    "casefold": _casefold,
    "digits": _digits,
    "alphanumeric": _alphanumeric,
}

DESCRIPTIONS: dict[str, str] = {
    "exact": "exact (surrounding spaces ignored)",
    "casefold": "case-insensitive",
    "digits": "digits only",
    "alphanumeric": "letters and digits only, case-insensitive",
}


def register_normaliser(name: str, function: Normaliser, description: str = "") -> None:
    """Make a custom normaliser available by ``name`` in mapping files."""
    NORMALISERS[name] = function
    DESCRIPTIONS[name] = description or name
