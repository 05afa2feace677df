"""Faults on both sides: repeated runs converge, every record exists once, both sides agree.

Three kinds of fault, all over real loopback HTTP with real SQLite stores:

* refused requests: ``/_sandbox/faults`` answers a share of requests 429/5xx
  *before* the simulator handles them;
* lost answers: :class:`LoseAnswers` (test-only ASGI wrapper) lets the
  simulator do the work and then answers 502, the fault that makes a retried
  create dangerous;
* dropped connections: ``drop_rate`` holds the request unanswered until the
  client's timeout.

After the faults are switched off, a quiet run settles what is left, then a
further run must write nothing to either side.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from integration.sync_harness import Sandbox, no_waits
from loopback import serve
from synchelp import LoseAnswers, data_writes, divergences
from tolken.compose import open_engine
from tolken.config import FlowSettings, TolkenConfig
from tolken.engine import SyncEngine
from tolken.errors import TolkenError
from tolken.sandbox.pms import create_app as create_pms
from tolken.sandbox.poweroffice import create_app as create_poweroffice

SYSTEMS = ("poweroffice", "pms")
# Fixed, overridable for reproducing a failure: TOLKEN_TEST_FAULT_SEED=N pytest ...
FAULT_SEED = int(os.environ.get("TOLKEN_TEST_FAULT_SEED", "41"))
SEED = {"departments": 6, "customers": 30, "projects": 30}
MAX_FAULTY_RUNS = 15


@dataclass
class Systems:
    po_url: str
    pms_url: str
    po_loss: LoseAnswers
    pms_loss: LoseAnswers


@pytest.fixture(scope="module")
def systems() -> Iterator[Systems]:
    po_loss = LoseAnswers(create_poweroffice(rate_limit_per_second=None))
    pms_loss = LoseAnswers(create_pms())
    with ExitStack() as stack:
        po_url = stack.enter_context(serve(po_loss))
        pms_url = stack.enter_context(serve(pms_loss))
        yield Systems(po_url, pms_url, po_loss, pms_loss)


@pytest.fixture
def sb(systems: Systems, tmp_path: Path) -> Iterator[Sandbox]:
    sandbox = Sandbox(systems.po_url, systems.pms_url, tmp_path)
    sandbox.reset()
    with no_waits():
        yield sandbox
    _faults_off(sandbox, systems)


def _faults_on(
    sb: Sandbox, systems: Systems, seed: int, *, rate: float, lost: float = 0.0, drop: float = 0.0
) -> None:
    print(f"fault seed {seed} (set TOLKEN_TEST_FAULT_SEED to vary)")
    for offset, system in enumerate(SYSTEMS):
        sb.control(
            system,
            "faults",
            {"rate": rate, "drop_rate": drop, "drop_hang_seconds": 5, "seed": seed + offset},
        )
    systems.po_loss.configure(lost, seed + 10)
    systems.pms_loss.configure(lost, seed + 11)


def _faults_off(sb: Sandbox, systems: Systems) -> None:
    for system in SYSTEMS:
        sb.control(system, "faults", {})
    systems.po_loss.configure(0.0, 0)
    systems.pms_loss.configure(0.0, 0)


def _config(sb: Sandbox, *, timeout: float = 5.0, **sync: Any) -> TolkenConfig:
    config = sb.config(**sync)
    return config.model_copy(
        update={
            "poweroffice": config.poweroffice.model_copy(update={"timeout_seconds": timeout}),
            "pms": config.pms.model_copy(update={"timeout_seconds": timeout}),
        }
    )


def _run_under_faults(engine: SyncEngine, runs: int) -> list[str]:
    """Run ``runs`` cycles; a cycle that fails as a whole is noted and the next one goes on.

    Parked records are made due after every cycle (``tolken retry``), as if
    their backoff had passed.
    """
    errors = []
    for _ in range(runs):
        try:
            engine.run_cycle()
        except TolkenError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        engine.store.retry_failures_now()
    return errors


def _settle_and_check(sb: Sandbox, systems: Systems, engine: SyncEngine, **allowed: Any) -> None:
    """Faults off, a quiet run; then the sides agree, nothing is parked, an idle run writes none."""
    _faults_off(sb, systems)
    engine.store.retry_failures_now()
    engine.run_cycle()
    with sb.po() as po, sb.pms() as pms:
        problems = divergences(po, pms, engine.store, engine.mapping, **allowed)
    assert problems == [], "\n".join(problems)
    failures = [(f.flow, f.side, f.record_id, f.message) for f in engine.store.list_failures()]
    assert failures == []
    before = {s: sb.stats(s) for s in SYSTEMS}
    engine.run_cycle()
    after = {s: sb.stats(s) for s in SYSTEMS}
    for system in SYSTEMS:
        grown = {k: v - before[system].get(k, 0) for k, v in after[system].items()}
        assert data_writes(grown) == {}, f"{system} written by an idle run: {grown}"


def _add_pms_only_customers(sb: Sandbox, count: int = 6) -> list[str]:
    """PMS-only customers: persons no merge rule can match, companies with an organisation number.

    The persons can only be found again by their create key; the companies
    are also matched by the merge rule once their PowerOffice twin exists.
    The companies have no customer number: PowerOffice assigns one, which must
    come back to the PMS.
    """
    ids = []
    for i in range(count):
        if i % 2:
            body = {
                "kind": "company",
                "name": f"Pms Only {i} AS",
                "organization_number": f"{970000000 + i}",
            }
        else:
            body = {
                "kind": "person",
                "number": f"9{i:02}00",  # spaced: PowerOffice numbers others max + 1
                "name": f"Kari Pms{i}",
                "first_name": "Kari",
                "last_name": f"Pms{i}",
            }
        ids.append(sb.pms_create("customers", {**body, "phone": f"+47 400 00 {i:03}"}))
    return ids


@pytest.mark.slow
def test_refused_and_lost_requests_on_both_sides_converge_with_every_record_once(
    sb: Sandbox, systems: Systems
) -> None:
    """With 25 % of requests refused (429/5xx) and 10 % of answers lost, each record exists once."""
    sb.control("poweroffice", "seed", SEED)
    pms_only = _add_pms_only_customers(sb)
    config = _config(sb, flows={"customers": FlowSettings(create_in_poweroffice=True)})
    _faults_on(sb, systems, FAULT_SEED, rate=0.25, lost=0.10)
    with open_engine(config) as engine:
        errors = _run_under_faults(engine, MAX_FAULTY_RUNS)
        assert systems.po_loss.lost + systems.pms_loss.lost > 0, "no answer was lost"
        assert len(errors) < MAX_FAULTY_RUNS, errors
        _settle_and_check(sb, systems, engine)
        links = engine.store.link_map("customers")
        # The PMS-only customers were created in PowerOffice exactly once each.
        po_customers = sb.po_list("Customers")
        assert len(po_customers) == SEED["customers"] + len(pms_only)
        assert set(pms_only) <= set(links.values())
    for flow, resource in (("departments", "customers"), ("projects", "projects")):
        assert (
            len(sb.pms_list(resource, **({"kind": "department"} if flow == "departments" else {})))
            == SEED[flow]
        )


@pytest.mark.slow
def test_edits_on_both_sides_under_faults_arrive_and_converge(
    sb: Sandbox, systems: Systems
) -> None:
    """Edits made in PowerOffice and in the PMS while requests fail all arrive once faults end."""
    sb.control("poweroffice", "seed", SEED)
    with open_engine(_config(sb)) as engine:
        engine.run_cycle()
        links = {f: engine.store.link_map(f) for f in engine.flows()}
        customers = sorted(links["customers"])[:8]
        projects = sorted(links["projects"])[:8]
        for index, po_id in enumerate(customers[:4]):
            sb.po_update("Customers", po_id, {"Name": f"Renamed in PowerOffice {index} AS"})
        for index, po_id in enumerate(customers[4:]):
            sb.pms_update(
                "customers", links["customers"][po_id], {"phone": f"+47 900 00 {index:03}"}
            )
        for index, po_id in enumerate(projects[:4]):
            sb.pms_update("projects", links["projects"][po_id], {"progress": 5 * index + 5})
        # The same field on both sides: newest-wins picks one, both systems end up equal.
        contested = projects[4]
        sb.po_update("Projects", contested, {"Name": "Name from PowerOffice"})
        sb.pms_update("projects", links["projects"][contested], {"name": "Name from the PMS"})

        _faults_on(sb, systems, FAULT_SEED + 100, rate=0.25, lost=0.10)
        errors = _run_under_faults(engine, 8)
        assert len(errors) < 8, errors
        _settle_and_check(sb, systems, engine)

    for index, po_id in enumerate(customers[:4]):
        pms_id = links["customers"][po_id]
        assert sb.pms_get("customers", pms_id)["name"] == f"Renamed in PowerOffice {index} AS"
    for index, po_id in enumerate(customers[4:]):
        assert sb.po_get("Customers", po_id)["PhoneNumber"] == f"+47 900 00 {index:03}"
    for index, po_id in enumerate(projects[:4]):
        assert sb.po_get("Projects", po_id)["Progress"] == 5 * index + 5
    assert sb.po_get("Projects", contested)["Name"] in (
        "Name from PowerOffice",
        "Name from the PMS",
    )
    assert len(sb.pms_list("customers")) == SEED["departments"] + SEED["customers"]


@pytest.mark.slow
def test_dropped_connections_still_create_every_record_exactly_once(
    sb: Sandbox, systems: Systems
) -> None:
    """With 10 % of requests never answered (client timeouts), each record is still created once."""
    sb.control("poweroffice", "seed", {"departments": 4, "customers": 15, "projects": 10})
    pms_only = _add_pms_only_customers(sb, 3)
    config = _config(sb, timeout=0.5, flows={"customers": FlowSettings(create_in_poweroffice=True)})
    _faults_on(sb, systems, FAULT_SEED + 200, rate=0.0, drop=0.10, lost=0.05)
    with open_engine(config) as engine:
        errors = _run_under_faults(engine, 6)
        assert len(errors) < 6, errors
        _settle_and_check(sb, systems, engine)
    assert len(sb.po_list("Customers")) == 15 + len(pms_only)
    assert len(sb.pms_list("projects")) == 10
