"""Batches of creates and first links: few store transactions, same outcome as one by one."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from enginehelp import (
    PMS_BASE,
    World,
    history,
    open_world,
    pms_customer,
    po_customer,
    stored_shadow,
)
from tolken.config import PMSSettings
from tolken.connectors.pms import PMSClient
from tolken.engine import batch
from tolken.engine.model import Action, CreateInPMS, Link, SaveShadow, Unchanged, UpdatePMS
from tolken.engine.plan import idempotency_key
from tolken.errors import Fatal
from tolken.sandbox import credentials


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with open_world(tmp_path) as opened:
        yield opened


def _creates(world: World, names: list[str]) -> list[CreateInPMS]:
    svc = world.executor().services
    actions = []
    for name in names:
        po = po_customer(world, Name=name, OrganizationNumber=None)
        projected = svc.project_po(po)
        assert projected is not None
        key = idempotency_key(svc.tenant, "customers", "poweroffice", po.id)
        actions.append(CreateInPMS(po.id, projected.values, key))
    return actions


def test_a_batch_of_creates_makes_and_links_every_record(world: World) -> None:
    """Every PowerOffice record of a batch gets its PMS twin, link, shadow and history."""
    ex = world.executor()
    actions = _creates(world, ["Alfa", "Beta", "Gamma"])
    batch.create_many_in_pms(ex, actions)
    assert sorted(r.data["name"] for r in world.pms.list("customers")) == ["Alfa", "Beta", "Gamma"]
    for action in actions:
        assert stored_shadow(world, action.po_id)["name"] == action.values["name"]
        assert history(world, action.po_id) == [("to_pms", "create")]
    assert ex.state.report.counts["created"] == 3
    assert ex.services.store.pending_creates("customers") == []


def test_a_reused_key_takes_the_one_by_one_path_and_finds_the_record(world: World) -> None:
    """A create interrupted earlier is looked up by its key, not posted twice, inside a batch."""
    ex = world.executor()
    actions = _creates(world, ["Alfa", "Beta"])
    svc = ex.services
    interrupted = actions[1]
    svc.store.add_pending_create("customers", "pms", interrupted.po_id, interrupted.idempotency_key)
    earlier = world.pms.create(
        "customers",
        {"kind": "company", "name": "Beta"},
        idempotency_key=interrupted.idempotency_key,
    )
    fresh, reused = batch.add_pending(svc, actions)
    assert (fresh, reused) == ([actions[0]], [interrupted])
    batch.create_many_in_pms(world.executor(), actions)
    names = sorted(r.data["name"] for r in world.pms.list("customers"))
    assert names == ["Alfa", "Beta"]
    assert svc.store.link_map("customers")[interrupted.po_id] == earlier.id


def test_first_links_are_stored_together_with_their_agreed_shadows(world: World) -> None:
    """Matching records link in one go; what they agree on becomes the shadow."""
    ex = world.executor()
    pairs = [(po_customer(world, Name=n), pms_customer(world, name=n)) for n in ("Alfa", "Beta")]
    groups: list[list[Action]] = [
        [Link(po.id, pms.id, "rule"), SaveShadow(po.id, pms.id, {"name": po.data["Name"]})]
        for po, pms in pairs
    ]
    batch.link_many(ex, groups)
    for po, _pms in pairs:
        assert stored_shadow(world, po.id) == {"name": po.data["Name"]}
        assert history(world, po.id) == [("to_pms", "link")]
    assert ex.state.report.counts["linked"] == 2


def test_a_duplicate_in_a_batch_of_links_parks_only_that_record(world: World) -> None:
    """One record linked meanwhile is parked; the rest of the batch is linked."""
    ex = world.executor()
    po_a, po_b = po_customer(world, Name="Alfa"), po_customer(world, Name="Beta")
    pms_a, pms_b = pms_customer(world, name="Alfa"), pms_customer(world, name="Beta")
    svc = ex.services
    svc.store.create_link("customers", "someone-else", pms_b.id)
    batch.link_many(ex, [[Link(po_a.id, pms_a.id, "rule")], [Link(po_b.id, pms_b.id, "rule")]])
    assert svc.store.link_map("customers")[po_a.id] == pms_a.id
    [failure] = svc.store.list_failures("customers")
    assert failure.record_id == po_b.id
    assert ex.state.report.counts["failed"] == 1


def test_only_links_without_writes_are_plain() -> None:
    """A first link that needs a write is applied one by one, not batched."""
    assert batch.is_plain_link([Link("1", "m1", "r")])
    assert batch.is_plain_link([Link("1", "m1", "r"), SaveShadow("1", "m1", {"name": "A"})])
    assert batch.is_plain_link([Link("1", "m1", "r"), Unchanged("1", "m1")])
    assert not batch.is_plain_link([Link("1", "m1", "r"), UpdatePMS("1", "m1", {"name": "B"}, 1)])


class _InFlight(httpx.BaseTransport):
    """The simulator's transport, counting the most POSTs it had in flight at once.

    ``refuse`` names a record answered with ``status``; ``bug`` one whose POST raises
    a plain exception (as a bug below the engine would). ``started`` lists the names
    posted, in the order the POSTs arrived.
    """

    def __init__(
        self,
        inner: httpx.BaseTransport,
        refuse: str | None = None,
        status: int = 422,
        bug: str | None = None,
    ) -> None:
        self.inner, self.refuse, self.status, self.bug = inner, refuse, status, bug
        self.active = self.peak = 0
        self.lock = threading.Lock()
        self.threads: set[threading.Thread] = set()
        self.started: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST":
            return self.inner.handle_request(request)
        name = json.loads(request.content)["name"]
        with self.lock:
            self.started.append(name)
        if name == self.bug:
            raise RuntimeError(f"a bug while posting {name}")
        if name == self.refuse:
            body = {"errors": [{"field": "name", "message": "refused"}]}
            return httpx.Response(self.status, json=body)
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.threads.add(threading.current_thread())
        try:
            time.sleep(0.05)  # long enough for the others of the batch to start
            return self.inner.handle_request(request)
        finally:
            with self.lock:
                self.active -= 1


def _simulator(world: World) -> httpx.BaseTransport:
    return world.pms_http._transport  # noqa: SLF001 - the reference PMS, in process


def _pms_through(transport: _InFlight, concurrency: int) -> PMSClient:
    settings = PMSSettings(
        base_url=f"{PMS_BASE}/api/v1",
        api_key=SecretStr(credentials.PMS_API_KEY),
        max_concurrency=concurrency,
    )
    return PMSClient(settings, http=httpx.Client(transport=transport))


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_batch_posts_up_to_max_concurrency_creates_at_once(
    world: World, concurrency: int
) -> None:
    """With pms.max_concurrency N, a batch has at most N creates in flight, and all are linked."""
    transport = _InFlight(_simulator(world))
    pms = _pms_through(transport, concurrency)
    ex = world.executor(pms=pms)
    names = [f"Kunde {n}" for n in range(12)]
    actions = _creates(world, names)
    batch.create_many_in_pms(ex, actions)
    assert transport.peak == concurrency
    assert sorted(r.data["name"] for r in world.pms.list("customers")) == sorted(names)
    links = ex.services.store.link_map("customers")
    assert all(action.po_id in links for action in actions)
    assert ex.services.store.pending_creates("customers") == []


def test_the_batches_of_a_flow_share_one_pool_of_writers(world: World) -> None:
    """Two batches through the flow's Writers are posted by the same threads, N at a time."""
    transport = _InFlight(_simulator(world))
    ex = world.executor(pms=_pms_through(transport, 4))
    actions = _creates(world, [f"Kunde {n}" for n in range(16)])
    with batch.Writers(ex.services) as writers:
        batch.create_many_in_pms(ex, actions[:8], writers)
        batch.create_many_in_pms(ex, actions[8:], writers)
    assert transport.peak == 4
    assert len(transport.threads) == 4
    assert len(ex.services.store.link_map("customers")) == 16


def test_a_refused_create_in_a_concurrent_batch_parks_only_that_record(world: World) -> None:
    """One record the PMS refuses is parked with its message; the others of the batch are linked."""
    transport = _InFlight(_simulator(world), refuse="Beta")
    ex = world.executor(pms=_pms_through(transport, 4))
    actions = _creates(world, ["Alfa", "Beta", "Gamma", "Delta"])
    batch.create_many_in_pms(ex, actions)
    links = ex.services.store.link_map("customers")
    assert sorted(links) == sorted(a.po_id for a in actions if a.values["name"] != "Beta")
    [failure] = ex.services.store.list_failures("customers")
    assert failure.record_id == actions[1].po_id
    assert "refused" in failure.message


def test_a_fatal_answer_mid_batch_links_what_was_made_and_leaves_no_duplicate(
    world: World,
) -> None:
    """A PMS that suddenly refuses the key stops the run; what it created is linked, the
    rest stays pending, and the next run creates each remaining record exactly once."""
    transport = _InFlight(_simulator(world), refuse="Kunde 5", status=401)
    ex = world.executor(pms=_pms_through(transport, 4))
    names = [f"Kunde {n}" for n in range(10)]
    actions = _creates(world, names)
    with pytest.raises(Fatal):
        batch.create_many_in_pms(ex, actions)
    # After the refusal only the POSTs the other three writers already held went out.
    assert len(transport.started) <= transport.started.index("Kunde 5") + 4
    store = ex.services.store
    made = {r.data["name"] for r in world.pms.list("customers")}
    assert "Kunde 5" not in made
    linked = store.link_map("customers")
    assert {a.po_id for a in actions if a.values["name"] in made} == set(linked)
    assert len(store.pending_creates("customers")) == len(names) - len(made)
    again = world.executor()
    again.recover_pending_creates()
    batch.create_many_in_pms(again, [a for a in actions if a.po_id not in linked])
    assert sorted(r.data["name"] for r in world.pms.list("customers")) == sorted(names)
    assert store.pending_creates("customers") == []


def test_a_bug_in_a_writer_surfaces_and_leaves_no_duplicate(world: World) -> None:
    """An unexpected exception while posting is raised to the caller (the batch does not
    hang), no further POST starts, and the next run creates each record exactly once."""
    transport = _InFlight(_simulator(world), bug="Kunde 5")
    ex = world.executor(pms=_pms_through(transport, 4))
    names = [f"Kunde {n}" for n in range(10)]
    actions = _creates(world, names)
    with pytest.raises(RuntimeError, match="Kunde 5"):
        batch.create_many_in_pms(ex, actions)
    assert len(transport.started) <= transport.started.index("Kunde 5") + 4
    store = ex.services.store
    assert len(store.pending_creates("customers")) == len(names)  # nothing linked, all by key
    again = world.executor()
    again.recover_pending_creates()
    linked = store.link_map("customers")
    batch.create_many_in_pms(again, [a for a in actions if a.po_id not in linked])
    assert sorted(r.data["name"] for r in world.pms.list("customers")) == sorted(names)
    assert store.pending_creates("customers") == []


def _writers(world: World, width: int) -> batch.Writers:
    writers = batch.Writers(
        world.executor(pms=_pms_through(_InFlight(_simulator(world)), width)).services
    )
    assert writers.width == width
    return writers


def test_writers_answer_in_item_order_whatever_order_the_threads_finish(world: World) -> None:
    """Later items finishing first still come back in the items' order."""

    def slow_first(i: int) -> int:
        time.sleep(0.01 * (6 - i))
        return i * 10

    with _writers(world, 3) as writers:
        assert writers.map(slow_first, range(6), threading.Event()) == [0, 10, 20, 30, 40, 50]


def test_a_writers_exception_stops_the_others_and_is_raised_once_they_are_done(
    world: World,
) -> None:
    """No thread takes a new item after one raised; the caller gets the exception only
    after the item still in hand has finished (no thread is left running behind it)."""
    started: list[int] = []
    finished: list[int] = []

    def fn(i: int) -> int:
        started.append(i)
        if i == 1:
            raise ValueError("bug in item 1")
        time.sleep(0.05)
        finished.append(i)
        return i

    give_up = threading.Event()
    with _writers(world, 2) as writers, pytest.raises(ValueError, match="item 1"):
        writers.map(fn, range(6), give_up)
    assert sorted(started) == [0, 1]
    assert finished == [0]
    assert give_up.is_set()
