"""Change-capture cursor rules: overlap, run-start cap, boundary dedupe, failures hold it back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from tolken.engine.cursor import (
    CursorState,
    Outcome,
    Seen,
    advance,
    content_hash,
    is_duplicate,
    read_after,
)

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
OVERLAP = timedelta(minutes=2)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_first_run_reads_everything() -> None:
    """A cursor that was never stored asks for a full listing."""
    assert read_after(CursorState(), OVERLAP) is None


def test_overlap_is_subtracted_when_reading() -> None:
    """The read starts `overlap` before the stored position."""
    assert read_after(CursorState(at(600)), OVERLAP) == at(480)


def test_cursor_moves_to_the_latest_handled_record() -> None:
    """After a clean run the position is the newest handled record's time."""
    state = advance(
        CursorState(at(0)),
        [Outcome("1", "h1", at(10), True), Outcome("2", "h2", at(30), True)],
        run_started_at=at(100),
        overlap=OVERLAP,
    )
    assert state.position == at(30)


def test_cursor_is_capped_at_the_run_start() -> None:
    """A record stamped after the run started does not move the cursor past the start."""
    state = advance(
        CursorState(at(0)),
        [Outcome("1", "h1", at(500), True)],
        run_started_at=at(100),
        overlap=OVERLAP,
    )
    assert state.position == at(100)
    # ...and it is remembered, so the re-read next run is skipped unless it changed.
    assert is_duplicate(state, "1", "h1")
    assert not is_duplicate(state, "1", "h1-changed")


def test_cursor_never_passes_a_failed_record() -> None:
    """The position stays strictly before the earliest failure, so it is read again."""
    state = advance(
        CursorState(at(0)),
        [
            Outcome("1", "h1", at(10), True),
            Outcome("2", "h2", at(20), False),
            Outcome("3", "h3", at(30), True),
        ],
        run_started_at=at(100),
        overlap=OVERLAP,
    )
    assert state.position is not None
    assert at(10) <= state.position < at(20)
    assert not is_duplicate(state, "2", "h2")
    assert is_duplicate(state, "3", "h3")


def test_an_empty_read_keeps_the_position() -> None:
    """No records read: the cursor stays (it never jumps to the run start)."""
    state = CursorState(at(50), frozenset({Seen("1", "h", at(49))}))
    assert advance(state, [], run_started_at=at(100), overlap=OVERLAP) == state
    assert advance(CursorState(), [], run_started_at=at(100), overlap=OVERLAP) == CursorState()


def test_boundary_set_keeps_only_records_inside_the_overlap() -> None:
    """Handled records older than position - overlap are forgotten (they cannot be re-read)."""
    state = advance(
        CursorState(),
        [Outcome("old", "a", at(0), True), Outcome("new", "b", at(600), True)],
        run_started_at=at(1000),
        overlap=OVERLAP,
    )
    assert {s.id for s in state.seen} == {"new"}


def test_a_failed_record_is_forgotten_from_the_boundary() -> None:
    """A record handled before but failing now is no longer treated as a duplicate."""
    state = CursorState(at(100), frozenset({Seen("1", "h", at(100))}))
    after = advance(
        state, [Outcome("1", "h2", at(110), False)], run_started_at=at(200), overlap=OVERLAP
    )
    assert after.position is not None
    assert after.position < at(110)
    assert not any(s.id == "1" for s in after.seen)


def test_content_hash_ignores_key_order() -> None:
    """The same content in another key order hashes the same; other content differs."""
    assert content_hash({"a": 1, "b": [1, 2]}) == content_hash({"b": [1, 2], "a": 1})
    assert content_hash({"a": 1}) != content_hash({"a": 2})


def test_state_round_trips_through_json() -> None:
    """What the store saves restores the same cursor."""
    state = CursorState(at(5), frozenset({Seen("1", "h", at(4)), Seen("2", "g", at(5))}))
    assert CursorState.from_json(state.to_json()) == state
    assert CursorState.from_json(CursorState().to_json()) == CursorState()


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[str, int, bool]]:
    """Records as (id, second of last change, handled ok?)."""
    count = draw(st.integers(0, 12))
    return [
        (f"r{i}", draw(st.integers(0, 300)), draw(st.booleans() | st.just(True)))
        for i in range(count)
    ]


@given(history=histories(), start=st.integers(0, 400))
def test_property_no_failed_or_concurrent_record_is_ever_skipped(
    history: list[tuple[str, int, bool]], start: int
) -> None:
    """Whatever the outcomes, every failed record and every record stamped after the run
    start is still returned by the next read, and is not treated as a duplicate."""
    outcomes = [Outcome(i, f"h{i}", at(s), ok) for i, s, ok in history]
    state = advance(CursorState(), outcomes, run_started_at=at(start), overlap=OVERLAP)
    bound = read_after(state, OVERLAP)
    for record_id, second, ok in history:
        must_reappear = not ok or second > start
        if must_reappear:
            assert bound is None or at(second) > bound
            if not ok:
                assert not is_duplicate(state, record_id, f"h{record_id}")
    if state.position is not None:
        assert state.position <= at(start)
