"""Random edits on both sides interleaved with sync runs always converge (Hypothesis)."""

from __future__ import annotations

import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    rule,
    run_state_machine_as_test,
)

from integration.sync_harness import Sandbox, no_waits
from tolken.compose import open_engine
from tolken.mapping import default_mapping, project, to_pms_flat

WORDS = st.sampled_from(["Alfa", "Bravo", "Charlie", "Delta", "Ekko", ""])
PO_FIELDS = {"Name": "name", "PhoneNumber": "phone", "WebsiteUrl": "website"}


class Interleaved(RuleBasedStateMachine):
    """Customers edited in PowerOffice and in the PMS between sync runs."""

    urls: ClassVar[tuple[str, str]]
    customers = Bundle("customers")

    def __init__(self) -> None:
        super().__init__()
        self.sb = Sandbox(*self.urls, Path(tempfile.mkdtemp(prefix="tolken-sm-")))
        self.sb.reset()
        self.opened = ExitStack()
        self.engine = self.opened.enter_context(open_engine(self.sb.config()))
        self.count = 0

    def _pms_id(self, po_id: str) -> str | None:
        return self.engine.store.link_map("customers").get(po_id)

    @rule(target=customers, name=WORDS.filter(bool), phone=WORDS)
    def create_in_poweroffice(self, name: str, phone: str) -> str:
        self.count += 1
        return self.sb.po_create(
            "Customers", {"Name": f"{name} {self.count}", "PhoneNumber": phone or None}
        )

    @rule(po_id=customers, field=st.sampled_from(sorted(PO_FIELDS)), value=WORDS)
    def edit_in_poweroffice(self, po_id: str, field: str, value: str) -> None:
        if field == "Name" and not value:
            return  # PowerOffice requires a name
        self.sb.po_update("Customers", po_id, {field: value or None})

    @rule(po_id=customers, field=st.sampled_from(sorted(PO_FIELDS.values())), value=WORDS)
    def edit_in_pms(self, po_id: str, field: str, value: str) -> None:
        pms_id = self._pms_id(po_id)
        if pms_id is None or (field == "name" and not value):
            return
        self.sb.pms_update("customers", pms_id, {field: value or None})

    @rule(po_id=consumes(customers))
    def forget(self, po_id: str) -> None:
        """Stop editing one customer (keeps the bundle small)."""

    @rule()
    def sync(self) -> None:
        report = self.engine.run_cycle()
        assert report.total("failed") == 0, report.to_json()

    def teardown(self) -> None:
        try:
            self._check_converged()
        finally:
            self.opened.close()

    def _check_converged(self) -> None:
        self.engine.run_cycle()
        self.engine.run_cycle()
        flow = default_mapping().flow("customers")
        po_records = self.sb.po_list("Customers")
        pms_records = self.sb.pms_list("customers")
        links = self.engine.store.link_map("customers")
        assert len(pms_records) == len(po_records) == len(links)
        by_id = {r["id"]: r for r in pms_records}
        for po in po_records:
            mine: dict[str, Any] = to_pms_flat(flow, po)
            theirs = project(flow, by_id[links[str(po["Id"])]])
            for field in PO_FIELDS.values():
                assert (mine.get(field) or None) == (theirs.get(field) or None), (field, po)
        self.sb.reset_stats()
        quiet = self.engine.run_cycle()
        assert self.sb.writes_since_baseline("poweroffice") == {}
        assert self.sb.writes_since_baseline("pms") == {}
        assert quiet.total("updated") == quiet.total("created") == 0


@pytest.mark.slow
def test_random_interleaved_edits_converge_and_then_stay_quiet(urls: tuple[str, str]) -> None:
    """After any mix of edits and runs, a quiet run leaves both sides equal with no duplicates,
    and a further run writes nothing."""
    Interleaved.urls = urls
    with no_waits():
        run_state_machine_as_test(
            Interleaved,
            settings=settings(
                max_examples=8,
                stateful_step_count=12,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
