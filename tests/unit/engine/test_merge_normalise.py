"""Value normalisation: values equal for a user compare equal, so they never ping-pong."""

from __future__ import annotations

import unicodedata
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tolken.engine.merge import comparison_key, is_empty, merge_fields, values_equal


@pytest.mark.parametrize("value", [None, "", "   ", "\n\t", [], {}, (), {"a": None}])
def test_blank_values_are_empty(value: object) -> None:
    """None, blank strings and empty containers all count as "no value"."""
    assert is_empty(value)


@pytest.mark.parametrize("value", [False, 0, 0.0, "0", "-", [None, 1]])
def test_falsy_values_are_not_empty(value: object) -> None:
    """False, zero and "0" are real values, not an empty field."""
    assert not is_empty(value)


def test_none_equals_empty_string() -> None:
    """A PMS sending "" and PowerOffice sending null for the same blank field agree."""
    assert values_equal(None, "")


def test_surrounding_whitespace_is_ignored() -> None:
    """Leading/trailing whitespace is not an edit (systems trim on save)."""
    assert values_equal(" Oslo\n", "Oslo")


def test_inner_whitespace_counts() -> None:
    """A doubled inner space is a visible edit and is kept apart."""
    assert not values_equal("Acme  AS", "Acme AS")


def test_case_counts() -> None:
    """A case change is a real edit (a user fixing "acme" to "Acme")."""
    assert not values_equal("acme", "Acme")


def test_composed_and_decomposed_letters_are_equal() -> None:
    """Å typed as one code point or as A + ring compares equal."""
    assert values_equal(unicodedata.normalize("NFD", "Bærum Å"), "Bærum Å")


def test_line_endings_are_equal() -> None:
    """CRLF and LF line breaks compare equal."""
    assert values_equal("a\r\nb", "a\nb")


@pytest.mark.parametrize(
    "value",
    [
        date(2024, 1, 5),
        "2024-01-05",
        "2024-01-05T00:00:00",
        "2024-01-05T00:00:00.0000000",
        "2024-01-05T00:00:00Z",
        "2024-01-05T00:00:00+01:00",
        datetime(2024, 1, 5),
        datetime(2024, 1, 5, tzinfo=timezone(timedelta(hours=1))),
    ],
)
def test_dates_compare_as_calendar_days(value: object) -> None:
    """A date, an ISO date string and a midnight date-time (PowerOffice style) are the same day."""
    assert comparison_key(value) == "2024-01-05"


def test_different_days_differ() -> None:
    """Two different calendar days are different values."""
    assert not values_equal("2024-01-05", date(2024, 1, 6))


def test_datetimes_compare_as_instants() -> None:
    """10:00+01:00 and 09:00Z are the same moment; a naive time reads as UTC."""
    assert values_equal("2024-01-05T10:00:00+01:00", datetime(2024, 1, 5, 9, 0, tzinfo=UTC))
    assert values_equal("2024-01-05T09:00:00", "2024-01-05T09:00:00Z")


def test_integer_equals_its_digits() -> None:
    """PowerOffice's numeric 10001 and the PMS's string "10001" are the same number."""
    assert values_equal(10001, "10001")


def test_leading_zeros_count() -> None:
    """ "0042" is a different code than 42."""
    assert not values_equal("0042", 42)


def test_numbers_compare_by_value() -> None:
    """1, 1.0 and Decimal("1.00") are equal; 1.5 and Decimal("1.5") too."""
    assert values_equal(1, 1.0)
    assert values_equal(1, Decimal("1.00"))
    assert values_equal(1.5, Decimal("1.5"))


def test_nan_equals_itself() -> None:
    """A NaN compares equal to NaN, so it cannot ping-pong."""
    assert values_equal(float("nan"), float("nan"))


def test_true_is_not_one() -> None:
    """A boolean never equals a number or its string."""
    assert not values_equal(True, 1)
    assert not values_equal(True, "True")
    assert values_equal(True, True)


def test_equal_for_the_user_means_no_write() -> None:
    """PowerOffice's midnight date-time against the PMS date: no write in either direction."""
    shadow = {"start_date": "2024-01-05", "number": "10001"}
    result = merge_fields(
        shadow,
        {"start_date": "2024-01-05T00:00:00", "number": 10001},
        {"start_date": date(2024, 1, 5), "number": "10001"},
    )
    assert not result.has_writes
    assert result.conflicts == ()
