"""Change-capture cursor rules of both sides.

PowerOffice: overlap, run-start cap, boundary dedupe, failures hold it back.
PMS: feed and listing positions, their stored text, how they move, feed collapse.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tolken.connectors.base import FeedItem, FeedPage
from tolken.engine.cursor import (
    RESOLUTION,
    Advance,
    CursorState,
    FeedPosition,
    ListingPosition,
    Outcome,
    PMSPosition,
    Seen,
    advance,
    collapse_feed,
    content_hash,
    feed_next,
    feed_read_on,
    format_pms_cursor,
    format_po_cursor,
    is_duplicate,
    listing_next,
    parse_pms_cursor,
    parse_po_cursor,
    read_after,
    settled_at,
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


def test_content_hash_is_the_stored_one() -> None:
    """Stored shadows hold hashes of earlier versions: the formula does not change (sorted keys,
    compact separators, ``str`` for what JSON lacks, ASCII escapes)."""
    data = {"b": [1, 2.5, None], "a": {"ø": "å", "t": datetime(2024, 1, 2, tzinfo=UTC)}}
    text = '{"a":{"t":"2024-01-02 00:00:00+00:00","\\u00f8":"\\u00e5"},"b":[1,2.5,null]}'
    assert content_hash(data) == hashlib.sha256(text.encode()).hexdigest()


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


def _after_bulk() -> CursorState:
    """The cursor after a bulk change of three records stamped within a second, at 10 s."""
    outcomes = [Outcome(f"r{n}", f"h{n}", at(9.5 + n / 4), True) for n in range(3)]
    return advance(CursorState(), outcomes, run_started_at=at(11), overlap=OVERLAP)


def test_a_read_begun_past_the_window_settles_the_position() -> None:
    """Once PowerOffice's clock was past the newest change plus the overlap when a read
    began, the next read starts at the newest change: the window is not listed again."""
    state = _after_bulk()
    assert read_after(state, OVERLAP) == at(10) - OVERLAP  # still inside the window
    quiet = advance(state, [], run_started_at=at(200), overlap=OVERLAP, listed_at=at(130))
    assert quiet.settled == at(10)
    assert read_after(quiet, OVERLAP) == at(10)
    assert quiet.seen == frozenset()  # nothing at or before it can be read again
    assert CursorState.from_json(quiet.to_json()) == quiet


def test_a_read_begun_inside_the_window_does_not_settle() -> None:
    """A read whose PowerOffice clock was not yet past the window keeps re-reading it."""
    state = _after_bulk()
    early = advance(state, [], run_started_at=at(200), overlap=OVERLAP, listed_at=at(129))
    assert early.settled is None
    assert read_after(early, OVERLAP) == at(10) - OVERLAP
    unknown = advance(state, [], run_started_at=at(200), overlap=OVERLAP, listed_at=None)
    assert read_after(unknown, OVERLAP) == at(10) - OVERLAP


def test_a_newer_change_re_reads_only_back_to_the_settled_time() -> None:
    """After a quiet spell, a new change re-reads its overlap but nothing already settled."""
    quiet = advance(_after_bulk(), [], run_started_at=at(200), overlap=OVERLAP, listed_at=at(130))
    later = advance(
        quiet, [Outcome("r9", "h9", at(60), True)], run_started_at=at(61), overlap=OVERLAP
    )
    assert later.position == at(60)
    assert read_after(later, OVERLAP) == at(10)
    assert later.seen == frozenset({Seen("r9", "h9", at(60))})


def test_the_settled_time_never_passes_the_position() -> None:
    """A failure that holds the position back pulls the settled time back with it."""
    assert settled_at(at(50), at(40), None, OVERLAP) == at(40)
    assert settled_at(None, at(40), at(100), OVERLAP) is None
    assert settled_at(None, at(40), at(160), OVERLAP) == at(40)


@st.composite
def late_commits(draw: st.DrawFn) -> list[tuple[int, int]]:
    """Records as (second stamped, seconds until PowerOffice committed it: within the overlap)."""
    count = draw(st.integers(1, 12))
    return [(draw(st.integers(0, 300)), draw(st.integers(0, 119))) for _ in range(count)]


@given(
    records=late_commits(),
    reads=st.lists(st.integers(0, 600), min_size=1, max_size=8),
    stale=st.integers(0, 5),
)
def test_property_a_record_committed_late_inside_the_window_is_still_read(
    records: list[tuple[int, int]], reads: list[int], stale: int
) -> None:
    """Reads at any moments, with PowerOffice's Date a little behind, never miss a record
    whose timestamp was committed late but within the overlap; later reads go quiet."""
    handled: set[str] = set()
    state = CursorState()
    for second in [*sorted(set(reads)), 1000, 1200]:
        bound = read_after(state, OVERLAP)
        outcomes = []
        for n, (stamped, lag) in enumerate(records):
            visible = stamped + lag <= second and (bound is None or at(stamped) > bound)
            if visible and not is_duplicate(state, f"r{n}", "h"):
                handled.add(f"r{n}")
                outcomes.append(Outcome(f"r{n}", "h", at(stamped), True))
        state = advance(
            state,
            outcomes,
            run_started_at=at(second),
            overlap=OVERLAP,
            listed_at=at(second - stale),
        )
    assert handled == {f"r{n}" for n in range(len(records))}
    assert read_after(state, OVERLAP) == state.position  # quiet after the window passed


def _advance_at_once(
    state: CursorState,
    outcomes: list[Outcome],
    *,
    run_started_at: datetime,
    overlap: timedelta,
    listed_at: datetime | None,
) -> CursorState:
    """Rules 2-5 over the whole run at once, every outcome in hand: the model :class:`Advance`
    must equal (it holds only the overlap of its running position)."""
    handled = [o for o in outcomes if o.ok and o.changed_at is not None]
    failed_times = [o.changed_at for o in outcomes if not o.ok and o.changed_at is not None]
    failed_ids = {o.id for o in outcomes if not o.ok}
    candidates = [o.changed_at for o in handled if o.changed_at is not None]
    if state.position is not None:
        candidates.append(state.position)
    if not candidates:
        return state
    position = min(max(candidates), run_started_at)
    if failed_times:
        position = min(position, min(failed_times) - RESOLUTION)
    if any(not o.ok and o.changed_at is None for o in outcomes) and state.position is not None:
        position = min(position, state.position)
    settled = settled_at(state.settled, position, listed_at, overlap)
    horizon = position - overlap if settled is None else max(position - overlap, settled)
    seen = {s for s in state.seen if s.id not in failed_ids} | {
        Seen(o.id, o.digest, o.changed_at) for o in handled if o.changed_at is not None
    }
    return CursorState(
        position=position,
        seen=frozenset(s for s in seen if s.changed_at > horizon),
        settled=settled,
    )


@st.composite
def runs(draw: st.DrawFn) -> tuple[CursorState, list[Outcome]]:
    """A stored cursor (maybe settled, with a boundary set) and a run's outcomes in any order:
    some failed, some without a time, ids and hashes repeating."""
    position = draw(st.none() | st.integers(0, 600))
    seen = frozenset(
        Seen(f"r{draw(st.integers(0, 9))}", draw(st.sampled_from("ab")), at(s))
        for s in draw(st.lists(st.integers(0, 600), max_size=5))
    )
    settled = draw(st.none() | st.integers(0, 600)) if position is not None else None
    state = CursorState(
        None if position is None else at(position),
        seen,
        None if settled is None else at(min(settled, position or 0)),
    )
    outcomes = [
        Outcome(
            f"r{draw(st.integers(0, 9))}",
            draw(st.sampled_from("ab")),
            draw(st.none() | st.integers(0, 900).map(at)),
            draw(st.booleans() | st.just(True)),
        )
        for _ in range(draw(st.integers(0, 40)))
    ]
    return state, outcomes


@given(
    run=runs(),
    start=st.integers(0, 900),
    listed=st.none() | st.integers(0, 1200),
    overlap=st.integers(0, 300),
)
def test_property_the_cursor_folded_a_record_at_a_time_is_the_cursor_of_the_whole_run(
    run: tuple[CursorState, list[Outcome]], start: int, listed: int | None, overlap: int
) -> None:
    """Folding the handled outcomes one by one (failures first, in any order) gives the cursor
    of the whole run at once, while holding only records within the overlap of the position
    so far: a long listing is never held."""
    state, outcomes = run
    window = timedelta(seconds=overlap)
    kwargs = {
        "run_started_at": at(start),
        "overlap": window,
        "listed_at": None if listed is None else at(listed),
    }
    whole = _advance_at_once(state, outcomes, **kwargs)  # type: ignore[arg-type]
    assert advance(state, outcomes, **kwargs) == whole  # type: ignore[arg-type]
    times = [o.changed_at for o in outcomes if o.changed_at is not None]
    # Told the newest time listed (or not), the fold gives the same cursor.
    for newest in {None, max(times, default=None)}:
        fold = Advance(state, [o for o in outcomes if not o.ok], newest=newest, **kwargs)  # type: ignore[arg-type]
        added: list[datetime] = []
        for outcome in outcomes:
            if outcome.ok:
                fold.add(outcome)
                if outcome.changed_at is not None:
                    added.append(outcome.changed_at)
                position = fold.position
                if position is not None:
                    assert fold.held <= sum(1 for t in added if t > position - window)
        assert fold.result() == whole


def test_a_fold_holds_only_the_overlap_of_a_long_listing() -> None:
    """Ten thousand records a second apart, listed oldest first: the fold holds the two
    minutes of records within the overlap of the newest, not the listing."""
    fold = Advance(CursorState(), [], run_started_at=at(20_000), overlap=OVERLAP)
    for second in range(10_000):
        fold.add(Outcome(f"r{second}", "h", at(second), True))
        assert fold.held <= OVERLAP.total_seconds()
    assert fold.result().position == at(9_999)
    assert len(fold.result().seen) == OVERLAP.total_seconds()


def test_a_fold_told_the_read_is_settled_holds_nothing_of_a_bulk_change() -> None:
    """A bulk change of ten thousand records within a second, listed once PowerOffice's clock
    had passed it plus the overlap: given the newest time listed, the fold holds nothing at
    or before its running position, the same cursor as without it (which holds them all)."""
    bulk = [Outcome(f"r{n}", "h", at(10 + n / 10_000), True) for n in range(10_000)]
    kwargs = {"run_started_at": at(500), "overlap": OVERLAP, "listed_at": at(300)}
    told = Advance(CursorState(), [], newest=bulk[-1].changed_at, **kwargs)  # type: ignore[arg-type]
    blind = Advance(CursorState(), [], **kwargs)  # type: ignore[arg-type]
    for outcome in bulk:
        told.add(outcome)
        blind.add(outcome)
        assert told.held <= 1
    assert blind.held == len(bulk)
    assert told.result() == blind.result()
    assert told.result().settled == bulk[-1].changed_at
    assert told.result().seen == frozenset()


def test_a_fold_is_given_its_failures_first() -> None:
    """A failed outcome added to the fold is a mistake (the caps come from the failures)."""
    fold = Advance(CursorState(), [], run_started_at=at(100), overlap=OVERLAP)
    with pytest.raises(ValueError, match="failed"):
        fold.add(Outcome("1", "h", at(10), False))


def test_po_cursor_text_round_trips_and_nothing_stored_is_a_fresh_start() -> None:
    """The stored text restores the same cursor; no text (or empty) means a full listing."""
    state = CursorState(at(5), frozenset({Seen("1", "h", at(4))}))
    assert parse_po_cursor(format_po_cursor(state)) == state
    assert parse_po_cursor(None) == CursorState()
    assert parse_po_cursor("") == CursorState()


# -- PMS ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("seq:0", FeedPosition(0)),
        ("seq:4217", FeedPosition(4217)),
        (
            "updated_after:2026-01-01T00:00:01.000001Z",
            ListingPosition("2026-01-01T00:00:01.000001Z"),
        ),
        (
            "updated_after:2026-03-01T12:00:00.123456789+01:00",
            ListingPosition("2026-03-01T12:00:00.123456789+01:00"),
        ),
        (
            "changed_after:2026-01-01T00:00:05+00:00",
            ListingPosition("2026-01-01T00:00:05+00:00"),
        ),
        (None, None),
        ("", None),
        ("seq:", None),
        ("seq:x", None),
        ("updated_after:", None),
        ("42", None),
    ],
)
def test_stored_pms_cursors_of_every_version_parse(
    text: str | None, position: PMSPosition | None
) -> None:
    """Cursor text already in users' databases reads as the same position (unknown text: none)."""
    assert parse_pms_cursor(text) == position


def test_a_listing_position_keeps_the_pms_spelling() -> None:
    """The stamp is stored exactly as the PMS sent it, and read as the time it names."""
    position = ListingPosition("2026-01-01T00:00:01.000001Z")
    assert format_pms_cursor(position) == "updated_after:2026-01-01T00:00:01.000001Z"
    assert position.at == datetime(2026, 1, 1, 0, 0, 1, 1, tzinfo=UTC)
    assert ListingPosition("not a time").at is None


stamps = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.isoformat().replace("+00:00", "Z"))
positions = st.one_of(st.integers(0, 2**63).map(FeedPosition), stamps.map(ListingPosition))


@given(position=positions)
def test_property_pms_cursor_text_round_trips(position: PMSPosition) -> None:
    """Whatever position is stored is exactly the position read back."""
    assert parse_pms_cursor(format_pms_cursor(position)) == position


items = st.builds(
    FeedItem,
    seq=st.integers(1, 10_000),
    resource=st.sampled_from(["customers", "projects"]),
    id=st.sampled_from(["a", "b", "c"]),
    op=st.sampled_from(["upsert", "delete"]),
)


@given(
    after=st.integers(0, 10_000),
    page_items=st.lists(items, max_size=6),
    has_more=st.sampled_from([None, True, False]),
    last_seq=st.none() | st.integers(0, 20_000),
)
def test_property_the_feed_position_never_moves_back_nor_past_what_was_read(
    after: int, page_items: list[FeedItem], has_more: bool | None, last_seq: int | None
) -> None:
    """The next position is the last item received (or stays), whatever the PMS reports."""
    page = FeedPage(tuple(page_items), last_seq=last_seq, has_more=has_more)
    position = feed_next(after, page)
    assert position == max([after, *(i.seq for i in page_items)])
    if feed_read_on(after, page):
        assert position > after
        assert has_more is not False


def test_the_feed_is_read_on_until_an_empty_page_or_has_more_false() -> None:
    """An empty page ends the read; so does has_more: false; an absent has_more reads on."""
    item = FeedItem(3, "customers", "a", "upsert")
    assert not feed_read_on(2, FeedPage(()))
    assert not feed_read_on(2, FeedPage((item,), has_more=False))
    assert feed_read_on(2, FeedPage((item,)))
    assert feed_read_on(2, FeedPage((item,), has_more=True))
    assert not feed_read_on(5, FeedPage((item,), has_more=True))  # no progress: stop


def test_collapse_keeps_the_last_operation_per_record() -> None:
    """Several feed items for one record reduce to the latest, ordered by that latest seq."""
    changes = [
        FeedItem(1, "customers", "a", "upsert"),
        FeedItem(2, "customers", "b", "upsert"),
        FeedItem(3, "customers", "a", "delete"),
        FeedItem(4, "projects", "a", "upsert"),
    ]
    collapsed = collapse_feed(changes, "customers")
    assert list(collapsed) == ["b", "a"]
    assert collapsed["a"].op == "delete"


@given(feed=st.lists(items, max_size=20))
def test_property_collapse_keeps_exactly_each_records_last_item(feed: list[FeedItem]) -> None:
    """One entry per record of the resource: its last item in feed order."""
    collapsed = collapse_feed(feed, "customers")
    last_index = {i.id: n for n, i in enumerate(feed) if i.resource == "customers"}
    assert collapsed == {record_id: feed[n] for record_id, n in last_index.items()}
    assert list(collapsed) == sorted(last_index, key=last_index.__getitem__)


@given(
    start=st.none() | stamps,
    listed=st.lists(st.none() | stamps | st.just("garbage"), max_size=8),
)
def test_property_the_listing_position_moves_to_the_newest_stamp_never_back(
    start: str | None, listed: list[str | None]
) -> None:
    """After a listing the position is the newest time seen (as spelt), or stays where it was."""
    before = ListingPosition(start) if start is not None else None
    after = listing_next(before, listed)
    times = [t for s in [start, *listed] if s is not None and (t := ListingPosition(s).at)]
    if not times:
        assert after is None
        return
    assert after is not None
    assert after.at == max(times)
    assert after.stamp in [start, *listed]
    if before is not None:
        assert before.at is not None
        assert after.at >= before.at
        if after.at == before.at:
            assert after == before
