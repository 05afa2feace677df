"""The connector contract: every subject (see conftest.py) passes every test here."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Generator, Mapping
from typing import Any

import pytest

from contract.subject import ResourceCase, SubjectHandle
from tolken.connectors.base import Connector, RemoteRecord
from tolken.errors import (
    AuthError,
    NotFound,
    RateLimited,
    Retriable,
    ServerError,
    ValidationFailed,
)


def token() -> str:
    return uuid.uuid4().hex[:8]


def contains(actual: Mapping[str, Any], expected: Mapping[str, Any]) -> bool:
    """Every field path of `expected` (``"MailAddress.City"``) is in the nested record `actual`
    with the same value."""
    for path, value in expected.items():
        node: Any = actual
        for part in path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return False
            node = node[part]
        if node != value:
            return False
    return True


def create(connector: Connector, case: ResourceCase) -> tuple[RemoteRecord, dict[str, Any], str]:
    data, key = case.new(token())
    return connector.create(case.resource, data, idempotency_key=key), data, key


def test_refused_credentials_are_a_fatal_auth_error(handle: SubjectHandle) -> None:
    """Wrong credentials stop the run with one line naming the system, never the secret."""
    connector = handle.connect(valid_credentials=False)
    with pytest.raises(AuthError) as info:
        list(connector.list(connector.resources()[0]))
    text = str(info.value)
    assert info.value.system == connector.system
    assert connector.system in text
    assert handle.bad_secret not in text
    assert "\n" not in text


def test_paging_returns_every_record_exactly_once(
    handle: SubjectHandle, case: ResourceCase
) -> None:
    """A listing across many small pages yields each record once, as one big page does."""
    handle.control.seed(case.resource, 23)
    connector = handle.connect(page_size=5)
    paged = [r.id for r in connector.list(case.resource)]
    pages = handle.control.requests("GET", case.resource)
    whole = {r.id for r in handle.connect().list(case.resource)}
    assert len(paged) >= 23
    assert len(paged) == len(set(paged))
    assert set(paged) == whole
    assert math.ceil(len(paged) / 5) <= pages <= math.ceil(len(paged) / 5) + 1


def test_listing_streams_page_by_page(handle: SubjectHandle, case: ResourceCase) -> None:
    """Reading the first record fetches the first page and at most one more (memory stays
    flat), not the whole listing."""
    handle.control.seed(case.resource, 23)
    records = handle.connect(page_size=5).list(case.resource)
    next(records)
    time.sleep(0.05)  # let a read-ahead, if the connector has one, reach the server
    assert 1 <= handle.control.requests("GET", case.resource) <= 2
    if isinstance(records, Generator):  # stop the listing: nothing more is read
        records.close()


def test_changed_since_is_strict_and_incremental(handle: SubjectHandle, case: ResourceCase) -> None:
    """Listing changes after a record's time returns later records, not that record."""
    connector = handle.connect()
    first, _, _ = create(connector, case)
    time.sleep(0.01)
    second, _, _ = create(connector, case)
    assert first.changed_at is not None
    assert second.changed_at is not None
    assert second.changed_at > first.changed_at
    ids = {r.id for r in connector.list(case.resource, changed_after=first.changed_at)}
    assert second.id in ids
    assert first.id not in ids


def test_create_then_update_round_trip(handle: SubjectHandle, case: ResourceCase) -> None:
    """What is created from flat field paths reads back; a change is applied and reads back, in
    one write, leaving the fields it does not name (a nested object's too) as they were."""
    connector = handle.connect()
    created, data, _ = create(connector, case)
    assert contains(created.data, data)
    fetched = connector.get(case.resource, created.id)
    assert fetched.id == created.id
    assert contains(fetched.data, data)
    updated = connector.update(case.resource, created.id, case.change)
    assert contains(updated.data, case.change)
    assert contains(connector.get(case.resource, created.id).data, {**data, **case.change})
    assert handle.control.requests("PATCH", case.resource, item=True) == 1


def test_create_is_idempotent(handle: SubjectHandle, case: ResourceCase) -> None:
    """The same idempotency key twice yields one record, found again by that key."""
    connector = handle.connect()
    first, data, key = create(connector, case)
    second = connector.create(case.resource, data, idempotency_key=key)
    assert second.id == first.id
    found = connector.find_by_idempotency_key(case.resource, key)
    assert found is not None
    assert found.id == first.id
    assert connector.find_by_idempotency_key(case.resource, case.new(token())[1]) is None
    matching = [r for r in connector.list(case.resource) if contains(r.data, data)]
    assert [r.id for r in matching] == [first.id]


def test_a_create_that_failed_ambiguously_never_duplicates(
    handle: SubjectHandle, case: ResourceCase
) -> None:
    """After a create answered 5xx, creating again with the same key leaves one record."""
    connector = handle.connect()
    list(connector.list(case.resource))  # authenticate before the faults start
    data, key = case.new(token())
    handle.control.faults(statuses=[503])
    with pytest.raises(Retriable):
        connector.create(case.resource, data, idempotency_key=key)
    handle.control.clear_faults()
    again = connector.create(case.resource, data, idempotency_key=key)
    matching = [r for r in connector.list(case.resource) if contains(r.data, data)]
    assert [r.id for r in matching] == [again.id]


@pytest.mark.parametrize(
    ("statuses", "error"), [([429], RateLimited), ([500, 502, 503], ServerError)]
)
def test_429_and_5xx_are_retried_within_bounds_then_classified(
    handle: SubjectHandle, case: ResourceCase, statuses: list[int], error: type[Exception]
) -> None:
    """A read that keeps failing is tried exactly max_attempts times, then raises its class."""
    connector = handle.connect()
    list(connector.list(case.resource))  # authenticate before the faults start
    before = handle.control.requests("GET", case.resource)
    handle.control.faults(statuses=statuses)
    with pytest.raises(error) as info:
        list(connector.list(case.resource))
    handle.control.clear_faults()
    assert isinstance(info.value, Retriable)
    assert handle.control.requests("GET", case.resource) - before == handle.max_attempts


def test_4xx_is_classified_and_not_retried(handle: SubjectHandle, case: ResourceCase) -> None:
    """A missing record is NotFound and a refused change ValidationFailed with the remote's
    words, each after a single request."""
    connector = handle.connect()
    with pytest.raises(NotFound) as missing:
        connector.get(case.resource, case.missing_id)
    assert missing.value.system == connector.system
    assert handle.control.requests("GET", case.resource, item=True) == 1
    created, _, _ = create(connector, case)
    with pytest.raises(ValidationFailed) as refused:
        connector.update(case.resource, created.id, case.invalid_change)
    assert refused.value.message.strip()
    assert refused.value.status in (400, 422)
    assert handle.control.requests("PATCH", case.resource, item=True) == 1
