"""Three-way merge of one linked pair (DESIGN §4): one behaviour per test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tolken.engine.merge import decide_winner, merge_fields
from tolken.engine.model import FieldConflict

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
EARLIER = T0 - timedelta(minutes=5)


def test_unchanged_pair_writes_nothing() -> None:
    """Both sides equal to the shadow: no writes, no conflicts, no shadow change."""
    shadow = {"name": "Acme", "active": True}
    result = merge_fields(shadow, dict(shadow), dict(shadow))
    assert (result.to_poweroffice, result.to_pms, result.settled, result.conflicts) == (
        {},
        {},
        {},
        (),
    )
    assert result.shadow == shadow


def test_poweroffice_edit_goes_to_pms() -> None:
    """A field changed in PowerOffice only is written to the PMS."""
    result = merge_fields({"name": "Acme"}, {"name": "Acme AS"}, {"name": "Acme"})
    assert result.to_pms == {"name": "Acme AS"}
    assert result.to_poweroffice == {}
    assert result.shadow == {"name": "Acme AS"}


def test_pms_edit_goes_to_poweroffice() -> None:
    """A field changed in the PMS only is written to PowerOffice."""
    result = merge_fields({"name": "Acme"}, {"name": "Acme"}, {"name": "Acme Ltd"})
    assert result.to_poweroffice == {"name": "Acme Ltd"}
    assert result.to_pms == {}
    assert result.shadow == {"name": "Acme Ltd"}


def test_edits_to_different_fields_on_both_sides_both_survive() -> None:
    """PowerOffice edits one field, the PMS another: each goes to the other side, no conflict."""
    shadow = {"name": "Acme", "phone": "1"}
    result = merge_fields(shadow, {"name": "Acme AS", "phone": "1"}, {"name": "Acme", "phone": "2"})
    assert result.to_pms == {"name": "Acme AS"}
    assert result.to_poweroffice == {"phone": "2"}
    assert result.conflicts == ()
    assert result.shadow == {"name": "Acme AS", "phone": "2"}


def test_same_change_on_both_sides_is_not_a_conflict() -> None:
    """Both sides changed a field to the same value: no write, no conflict, the shadow moves."""
    result = merge_fields({"city": "Oslo"}, {"city": "Bergen"}, {"city": "Bergen"})
    assert not result.has_writes
    assert result.conflicts == ()
    assert result.settled == {"city": "Bergen"}
    assert result.shadow == {"city": "Bergen"}


def test_newest_wins_picks_the_later_pms_edit() -> None:
    """newest-wins: a conflicting PMS edit made later than PowerOffice's wins."""
    result = merge_fields(
        {"city": "Oslo"},
        {"city": "Bergen"},
        {"city": "Trondheim"},
        po_changed_at=EARLIER,
        pms_changed_at=T0,
    )
    assert result.to_poweroffice == {"city": "Trondheim"}
    assert result.to_pms == {}
    assert result.conflicts[0].winner == "pms"


def test_newest_wins_picks_the_later_poweroffice_edit() -> None:
    """newest-wins: a conflicting PowerOffice edit made later than the PMS's wins."""
    result = merge_fields(
        {"city": "Oslo"},
        {"city": "Bergen"},
        {"city": "Trondheim"},
        po_changed_at=T0,
        pms_changed_at=EARLIER,
    )
    assert result.to_pms == {"city": "Bergen"}
    assert result.conflicts[0].winner == "poweroffice"


def test_newest_wins_exact_tie_goes_to_poweroffice() -> None:
    """An exact modification-time tie goes to PowerOffice, the system of record."""
    result = merge_fields(
        {"city": "Oslo"},
        {"city": "Bergen"},
        {"city": "Trondheim"},
        po_changed_at=T0,
        pms_changed_at=T0,
    )
    assert result.to_pms == {"city": "Bergen"}
    assert result.conflicts[0].winner == "poweroffice"


def test_newest_wins_compares_instants_across_offsets() -> None:
    """Times are compared as instants: 13:00+02:00 is earlier than 12:00 UTC."""
    plus_two = timezone(timedelta(hours=2))
    po_time = datetime(2026, 1, 1, 13, 0, tzinfo=plus_two)  # 11:00 UTC
    result = merge_fields(
        {"n": "a"}, {"n": "b"}, {"n": "c"}, po_changed_at=po_time, pms_changed_at=T0
    )
    assert result.conflicts[0].winner == "pms"


def test_unknown_time_never_beats_a_known_time() -> None:
    """newest-wins: a side without a modification time loses to a side with one."""
    assert decide_winner("newest-wins", None, T0) == "pms"
    assert decide_winner("newest-wins", T0, None) == "poweroffice"
    assert decide_winner("newest-wins", None, None) == "poweroffice"


def test_poweroffice_wins_policy_ignores_times() -> None:
    """poweroffice-wins: PowerOffice's value wins even when the PMS edit is newer."""
    result = merge_fields(
        {"n": "a"},
        {"n": "b"},
        {"n": "c"},
        policy="poweroffice-wins",
        po_changed_at=EARLIER,
        pms_changed_at=T0,
    )
    assert result.to_pms == {"n": "b"}
    assert result.conflicts[0].policy == "poweroffice-wins"


def test_pms_wins_policy_ignores_times() -> None:
    """pms-wins: the PMS value wins even when the PowerOffice edit is newer."""
    result = merge_fields(
        {"n": "a"},
        {"n": "b"},
        {"n": "c"},
        policy="pms-wins",
        po_changed_at=T0,
        pms_changed_at=EARLIER,
    )
    assert result.to_poweroffice == {"n": "c"}
    assert result.conflicts[0].winner == "pms"


def test_manual_policy_parks_the_field() -> None:
    """manual: a conflicting field is written nowhere and its shadow stays as it was."""
    result = merge_fields(
        {"n": "a", "m": 1}, {"n": "b", "m": 2}, {"n": "c", "m": 1}, policy="manual"
    )
    assert result.to_poweroffice == {}
    assert result.to_pms == {"m": 2}
    assert result.shadow == {"n": "a", "m": 2}
    assert result.conflicts == (FieldConflict("n", "b", "c", "a", winner=None, policy="manual"),)


def test_conflict_records_both_values_and_the_shadow() -> None:
    """A conflict record carries PowerOffice's, the PMS's and the shadow value, and the loser."""
    result = merge_fields(
        {"city": "Oslo"}, {"city": "Bergen"}, {"city": "Trondheim"}, po_changed_at=T0
    )
    (conflict,) = result.conflicts
    assert (conflict.field, conflict.poweroffice, conflict.pms, conflict.shadow) == (
        "city",
        "Bergen",
        "Trondheim",
        "Oslo",
    )
    assert conflict.losing_value == "Trondheim"
    assert conflict.winning_value == "Bergen"


def test_unknown_policy_is_rejected() -> None:
    """A misspelt policy is an error, not a silent default."""
    with pytest.raises(ValueError, match="unknown conflict policy"):
        merge_fields({"n": "a"}, {"n": "b"}, {"n": "c"}, policy="oldest-wins")  # type: ignore[arg-type]


def test_clearing_a_synced_field_propagates() -> None:
    """After the first sync, clearing a field on one side clears it on the other."""
    result = merge_fields({"phone": "123"}, {"phone": None}, {"phone": "123"})
    assert result.to_pms == {"phone": None}


def test_clearing_vs_editing_is_a_conflict() -> None:
    """One side clears a field while the other edits it: a conflict decided by policy."""
    result = merge_fields(
        {"phone": "1"}, {"phone": ""}, {"phone": "2"}, po_changed_at=EARLIER, pms_changed_at=T0
    )
    assert result.to_poweroffice == {"phone": "2"}
    assert result.conflicts[0].poweroffice == ""


def test_first_link_empty_never_overwrites_non_empty() -> None:
    """First link: an empty value on one side is filled from the other, never the reverse."""
    result = merge_fields(
        None,
        {"email": "", "phone": "99", "web": None},
        {"email": "a@b.no", "phone": None, "web": "x.no"},
        policy="poweroffice-wins",
    )
    assert result.to_poweroffice == {"email": "a@b.no", "web": "x.no"}
    assert result.to_pms == {"phone": "99"}
    assert result.conflicts == ()


def test_first_link_missing_field_counts_as_empty() -> None:
    """First link: a field the PowerOffice projection lacks does not blank the PMS value."""
    result = merge_fields(None, {}, {"website": "acme.no"}, policy="poweroffice-wins")
    assert result.to_pms == {}
    assert result.to_poweroffice == {"website": "acme.no"}


def test_first_link_two_different_values_is_a_conflict() -> None:
    """First link: two different non-empty values are a conflict; the loser is recorded."""
    result = merge_fields(None, {"name": "Acme AS"}, {"name": "ACME"}, policy="pms-wins")
    assert result.to_poweroffice == {"name": "ACME"}
    (conflict,) = result.conflicts
    assert not conflict.shadow_known
    assert conflict.losing_value == "Acme AS"


def test_first_link_equal_values_settle_the_shadow() -> None:
    """First link: equal values need no write, but the shadow learns them (both empty too)."""
    result = merge_fields(None, {"name": "Acme", "phone": None}, {"name": "Acme", "phone": ""})
    assert not result.has_writes
    assert result.settled == {"name": "Acme", "phone": None}


def test_field_new_to_the_mapping_gets_first_link_rules() -> None:
    """A field missing from an existing shadow never blanks a non-empty value."""
    result = merge_fields(
        {"name": "Acme"}, {"name": "Acme", "web": None}, {"name": "Acme", "web": "a.no"}
    )
    assert result.to_poweroffice == {"web": "a.no"}


def test_false_is_a_value_not_empty() -> None:
    """First link: ``active: False`` against ``True`` is a conflict, not an empty field."""
    result = merge_fields(None, {"active": False}, {"active": True}, policy="poweroffice-wins")
    assert result.to_pms == {"active": False}
    assert len(result.conflicts) == 1


def test_echo_of_our_own_write_changes_nothing() -> None:
    """The PMS reports back the value tolken just wrote: nothing is sent anywhere."""
    first = merge_fields({"name": "A"}, {"name": "B"}, {"name": "A"})
    echo = merge_fields(first.shadow, {"name": "B"}, {"name": "B"})
    assert not echo.has_writes
    assert echo.settled == {}


def test_trimmed_echo_is_not_a_change() -> None:
    """A system that trims whitespace on save does not cause a write back."""
    result = merge_fields({"name": "Acme "}, {"name": "Acme "}, {"name": "Acme"})
    assert not result.has_writes
    assert result.settled == {}


def test_writes_carry_the_raw_winning_value() -> None:
    """The written value is the side's own value, not the normalised comparison form."""
    result = merge_fields({"name": "x"}, {"name": "  Ærlig AS "}, {"name": "x"})
    assert result.to_pms == {"name": "  Ærlig AS "}


def test_shadow_only_fields_are_kept() -> None:
    """A shadow entry for a field no side projects any more is kept, not turned into a write."""
    result = merge_fields({"name": "A", "fax": "1"}, {"name": "A"}, {"name": "A"})
    assert not result.has_writes
    assert result.shadow == {"name": "A", "fax": "1"}
