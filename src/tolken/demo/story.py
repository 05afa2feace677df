"""``tolken demo``: the sandbox, sample data, a first sync, one edit each way, then serving.

The steps, each printed as it happens:

1. start the PowerOffice Go simulator and the reference PMS on free loopback
   ports (:func:`tolken.sandbox.runner.sandbox_in_thread`), with their state in
   ``DIR/sandbox``;
2. write ``DIR/tolken.yaml`` for them (a real config: every other command works
   with ``--config DIR/tolken.yaml``) with a SQLite store ``DIR/tolken.db``;
3. load the sample data (:mod:`tolken.demo.sample`) through both APIs;
4. run the first sync with a progress bar per flow and print what it did;
5. edit a customer's phone in PowerOffice and a project's name in the PMS, run
   a cycle after each and read the value back from the other system;
6. print the dashboard URL and serve until Ctrl-C (or stop, with ``--no-serve``).
"""

from __future__ import annotations

import contextlib
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from tolken._signals import stop_on_signals
from tolken.compose import open_engine
from tolken.config import TolkenConfig, load_config
from tolken.demo import render, sample
from tolken.demo.options import DEFAULT_DASHBOARD_PORT, DemoOptions
from tolken.demo.progress_store import LinkWatchingStore
from tolken.demo.seed import Seeded, seed_sandbox
from tolken.demo.workspace import (
    WATCH_INTERVAL_SECONDS,
    command_name,
    dashboard_port,
    forget_old_store,
    logs_to,
    owned_by_demo,
    reset_sandbox,
    write_config,
)
from tolken.engine import CycleReport, SyncEngine
from tolken.errors import ConfigError, TolkenError
from tolken.logging import Redactor
from tolken.sandbox import credentials
from tolken.sandbox.runner import HOST, SandboxURLs, sandbox_in_thread
from tolken.store import open_store

__all__ = ["tell_story"]

_SHOWN_WRITES = 5
PHONE_EDIT = ("Nordlys Elektro AS", "+47 909 12 345")
NAME_EDIT = ("1004", " – byggetrinn 2")


def tell_story(options: DemoOptions, *, console: Console, started: float) -> int:
    """Run the demo after its banner; the exit code (0 also after Ctrl-C, 1 when it failed)."""
    try:
        data_dir = options.data_dir or Path(tempfile.mkdtemp(prefix="tolken-demo-"))
        return _Demo(options, data_dir.resolve(), console, started).run()
    except KeyboardInterrupt:
        console.print("\nstopped")
        return 0


class _Demo:
    """One run of the demo: the steps of the module docstring, printing as they happen."""

    def __init__(self, options: DemoOptions, data_dir: Path, console: Console, started: float):
        self.options = options
        self.data_dir = data_dir
        self.out = console
        self.started = started
        self.config_path = data_dir / "tolken.yaml"
        self.tolken = command_name()
        self.seeded = Seeded()
        # Errors go to standard error, like every other tolken command's.
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def run(self) -> int:
        try:
            return self._run()
        except (OSError, httpx.HTTPError) as exc:
            # The sandbox could not start or answer, or the folder is not writable.
            self.err.print(f"[red]error:[/] {exc}")
            return 1

    def _run(self) -> int:
        out = self.out
        out.print(f"[dim]working folder {self.data_dir}[/]")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not owned_by_demo(self.config_path):
            self.err.print(
                f"[red]error:[/] {self.config_path} exists and was not written by tolken demo; "
                "choose another --data-dir (the demo replaces the config and store it finds there)"
            )
            return 2
        forget_old_store(self.data_dir)
        try:
            port = dashboard_port(
                self.options.port, fallback=self.options.port == DEFAULT_DASHBOARD_PORT
            )
        except OSError as exc:
            self.err.print(f"[red]error:[/] {exc} (choose another with --port N, or 0 for any)")
            return 1
        with contextlib.ExitStack() as stack:
            urls = stack.enter_context(sandbox_in_thread(self.data_dir / "sandbox"))
            reset_sandbox(urls)
            out.print(f"[green]✓[/] PowerOffice Go simulator at {urls.poweroffice}/v2")
            out.print(f"[green]✓[/] reference PMS at {urls.pms}")
            token = secrets.token_urlsafe(18)
            write_config(
                self.config_path,
                urls,
                store=self.data_dir / "tolken.db",
                dashboard_port=port,
                token=token,
                webhook_secret=secrets.token_urlsafe(24),
            )
            config = load_config(self.config_path)
            out.print(f"[green]✓[/] config written: {self.config_path}")
            redactor = stack.enter_context(logs_to(self.data_dir / "tolken.log", config))
            try:
                self.seeded = seed_sandbox(urls.poweroffice, config.poweroffice, config.pms)
                self._print_loaded(self.seeded)
                with self._engine(config) as (engine, watcher):
                    self._story(engine, watcher, self.seeded)
            except TolkenError as exc:
                self.err.print(f"[red]error:[/] {exc}")
                return 1
            self._print_next_steps(urls, f"http://{HOST}:{port}/?token={token}")
            if not self.options.serve:
                return 0
            return self._serve(config, redactor, token)

    @contextlib.contextmanager
    def _engine(self, config: TolkenConfig) -> Iterator[tuple[SyncEngine, LinkWatchingStore]]:
        store = open_store(config.store)
        try:
            watcher = LinkWatchingStore(store)
            with open_engine(config, store=watcher.as_store()) as engine:
                yield engine, watcher
        finally:
            store.close()

    # -- the story ------------------------------------------------------------------

    def _print_loaded(self, seeded: Seeded) -> None:
        po, pms = seeded.counts()["poweroffice"], seeded.counts()["pms"]
        companies, persons = len(sample.COMPANIES), len(sample.PERSONS)
        self.out.print(
            f"[green]✓[/] sample data loaded: PowerOffice has {po['departments']} departments, "
            f"{po['customers']} customers ({companies} companies, {persons} persons) and "
            f"{po['projects']} projects; the PMS already has {pms['departments']} departments, "
            f"{pms['customers']} customers and {pms['projects']} projects"
        )

    def _story(self, engine: SyncEngine, watcher: LinkWatchingStore, seeded: Seeded) -> None:
        out = self.out
        names = _Names(seeded)
        out.print()
        out.print("[bold]First sync[/] (departments, then customers, then projects)")
        totals = seeded.counts()["poweroffice"]
        sync_started = time.monotonic()
        with render.flow_progress(out, totals) as bars:
            watcher.on_link = bars.record_done
            try:
                report = engine.run_cycle(progress=bars.start)
            finally:
                watcher.on_link = None
        took = time.monotonic() - sync_started
        out.print()
        out.print(render.summary_table(report, title=f"First sync: {took:.1f} s"))
        self._print_notes(engine, report, names)
        out.print(f"[dim](sandbox, sample data and first sync in {self.elapsed():.1f} s)[/]")
        out.print()
        out.print("[bold]One edit on each side[/]")
        for edit in (self._edit_poweroffice, self._edit_pms):
            for line in render.edit_lines(edit(engine, seeded), _quote):
                out.print(line)

    def _note(self, text: str) -> None:
        """One bullet of the story; wrapped with a hanging indent on a terminal, else one line."""
        if not self.out.is_terminal:
            self.out.print(f"• {text}")
            return
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column()
        grid.add_row("•", text)
        self.out.print(grid)

    def _print_notes(self, engine: SyncEngine, report: CycleReport, names: _Names) -> None:
        for flow_id, flow in report.flows.items():
            linked = flow.counts.get("linked", 0)
            if linked:
                rules = render.merge_rule_text(engine.mapping, flow_id)
                self._note(
                    f"[green]linked[/] {linked} {flow_id} that already existed in the PMS "
                    f"(matched by {rules}): no duplicates"
                )
        for flow_id, flow in report.flows.items():
            updated = flow.counts.get("updated", 0)
            if updated:
                self._note(
                    f"[green]updated[/] {_count(updated, flow_id)}: linked pairs completed from "
                    "each other (an empty value never overwrites a filled one)"
                )
        run_conflicts = [c for c in engine.store.list_conflicts() if c.run_id == report.run_id]
        for conflict in run_conflicts:
            link = engine.store.get_link(conflict.link_id)
            who = (
                names.label(conflict.flow, link.poweroffice_id)
                if link
                else f"link {conflict.link_id}"
            )
            kept = conflict.pms_value if conflict.winner == "pms" else conflict.poweroffice_value
            self._note(
                f"[yellow]conflict[/] {who}, {conflict.field}: PowerOffice "
                f"{_quote(conflict.poweroffice_value)}, PMS {_quote(conflict.pms_value)}; "
                f"{conflict.policy} kept {_quote(kept)}; the losing value is recorded "
                f"({self.tolken} conflicts --config {self.config_path})"
            )
        for match in report.ambiguous:
            # Suggest the candidate with the very same name (the head office, not the branch).
            own = names.po(match.flow, match.record_id)
            ordered = sorted(match.candidates, key=lambda c: names.pms(c) != own)
            candidates = ", ".join(f"{c} {names.pms(c)}" for c in ordered)
            self._note(
                f"[magenta]ambiguous[/] PowerOffice {names.label(match.flow, match.record_id)} "
                f"(id {match.record_id}) matches {len(match.candidates)} PMS "
                f"records by {match.rule} ({candidates}), so it is not linked automatically. "
                "Settle it with:"
            )
            self.out.print(
                f"    {self.tolken} link --flow {match.flow} {match.record_id} {ordered[0]} "
                f"--config {self.config_path}",
                markup=False,
                soft_wrap=True,
            )
        for flow_id, flow in report.flows.items():
            waiting = flow.counts.get("waiting", 0)
            if waiting:
                it = "it" if waiting == 1 else "they"
                self._note(
                    f"[cyan]waiting[/] {_count(waiting, flow_id)}: {it} refer"
                    f"{'s' if waiting == 1 else ''} to a record that is not linked yet"
                    f"{' (here: the ambiguous customer)' if report.ambiguous else ''}; {it} "
                    f"follow{'s' if waiting == 1 else ''} as soon as that is settled"
                )
        ambiguous = {(m.flow, m.record_id) for m in report.ambiguous}
        for failure in engine.store.list_failures():
            if (failure.flow, failure.record_id) in ambiguous:
                continue  # told above, with what to do
            self._note(
                f"[red]failed[/] {failure.flow} {failure.record_id}: {failure.message} "
                f"({self.tolken} failures, {self.tolken} retry)"
            )

    def _edit_poweroffice(self, engine: SyncEngine, seeded: Seeded) -> render.EditResult:
        name, new = PHONE_EDIT
        po_id = seeded.po_customers[name]
        pms_id = _linked_pms_id(engine, "customers", po_id)
        old = engine.poweroffice.get("Customers", po_id).data.get("PhoneNumber")
        engine.poweroffice.update("Customers", po_id, {"PhoneNumber": new})
        before = engine.pms.get("customers", pms_id).data.get("phone")
        seconds = _timed_cycle(engine)
        after = engine.pms.get("customers", pms_id).data.get("phone")
        return render.EditResult(
            "PowerOffice → PMS", f'customer "{name}", phone', "PowerOffice", "PMS",
            old, new, before, after, seconds,
        )  # fmt: skip

    def _edit_pms(self, engine: SyncEngine, seeded: Seeded) -> render.EditResult:
        code, suffix = NAME_EDIT
        po_id = seeded.po_projects[code]
        pms_id = _linked_pms_id(engine, "projects", po_id)
        record = engine.pms.get("projects", pms_id)
        old = record.data.get("name")
        new = f"{old}{suffix}"
        engine.pms.update("projects", pms_id, {"name": new}, version=record.version)
        before = engine.poweroffice.get("Projects", po_id).data.get("Name")
        seconds = _timed_cycle(engine)
        after = engine.poweroffice.get("Projects", po_id).data.get("Name")
        return render.EditResult(
            "PMS → PowerOffice", f"project {code}, name", "the PMS", "PowerOffice",
            old, new, before, after, seconds,
        )  # fmt: skip

    def _print_next_steps(self, urls: SandboxURLs, url: str) -> None:
        out = self.out
        config_path = self.config_path
        out.print()
        out.print(f"[bold]Config:[/]    {config_path}")
        out.print(f"[bold]Logs:[/]      {self.data_dir / 'tolken.log'} (JSON lines)")
        if self.options.serve:
            out.print(
                "While this runs, try in another terminal: "
                f"{self.tolken} status --config {config_path}  (or links, conflicts, plan, "
                "sync --once)"
            )
            return
        po_port = urls.poweroffice.rsplit(":", 1)[1]
        pms_port = urls.pms.split(":")[2].split("/")[0]
        sandbox = self.data_dir / "sandbox"
        out.print(
            "The sandbox stopped with the demo (--no-serve); its data is kept. To look around:"
        )
        for command in (
            f"{self.tolken} sandbox --poweroffice-port {po_port} --pms-port {pms_port} "
            f"--data-dir {sandbox} &",
            f"{self.tolken} status --config {config_path}",
            f"{self.tolken} serve --config {config_path}    # then open {url}",
        ):
            out.print(f"  {command}", markup=False, soft_wrap=True)

    # -- serving --------------------------------------------------------------------

    def _serve(self, config: TolkenConfig, redactor: Redactor, token: str) -> int:
        from tolken.web.serve import serving, watch_loop

        out = self.out
        try:
            with serving(config, redactor=redactor) as running:
                engine, queue = running.engine, running.queue

                def stop() -> None:
                    engine.request_stop()  # the record in flight is finished and committed
                    queue.wake()

                out.print(f"[bold]Dashboard:[/] {running.url}/?token={token}")
                self._print_try_it(engine)
                out.print(
                    f"Syncing every {WATCH_INTERVAL_SECONDS} s and on every PMS webhook. "
                    "[bold]Ctrl-C[/] stops the demo."
                )
                with stop_on_signals(stop):
                    watch_loop(engine, queue, on_cycle=lambda r: self._on_cycle(engine, r))
        except TolkenError as exc:
            self.err.print(f"[red]error:[/] {exc}")
            return 1
        out.print("stopped")
        return 0

    def _print_try_it(self, engine: SyncEngine) -> None:
        """A command that edits the PMS, so the user sees a change cross over live."""
        code = NAME_EDIT[0]
        link = engine.store.get_link_by_po("projects", self.seeded.po_projects[code])
        if link is None:
            return
        url = f"{engine.config.pms.base_url}/projects/{link.pms_id}"
        self.out.print(
            "Try it: rename the project in the PMS and watch the next line appear "
            "(the PMS sends a webhook, tolken writes PowerOffice):"
        )
        self.out.print(
            f"  curl -X PATCH -H 'Authorization: Bearer {credentials.PMS_API_KEY}' "
            "-H 'Content-Type: application/merge-patch+json' "
            f"""-d '{{"name": "Nybygg lager Tromsø – ferdig"}}' {url}""",
            markup=False,
        )

    def _on_cycle(self, engine: SyncEngine, report: CycleReport) -> None:
        """A line per cycle that changed something, and a line per write it made."""
        counts = ", ".join(
            f"{key} {report.total(key)}" for key in render.SUMMARY_COLUMNS if report.total(key)
        )
        if not counts:
            return
        self.out.print(f"[dim]{time.strftime('%H:%M:%S')}[/] sync cycle: {counts}")
        if report.run_id is None:
            return
        names = _Names(self.seeded)
        writes = [
            entry
            for entry in engine.store.recent_history(limit=50)
            if entry.run_id == report.run_id
        ]
        for entry in reversed(writes[:_SHOWN_WRITES]):
            link = engine.store.get_link(entry.link_id)
            if link is None:
                continue
            arrow = "PowerOffice → PMS" if entry.direction == "to_pms" else "PMS → PowerOffice"
            fields = entry.fields
            if entry.action == "create":
                what = "created"
            else:
                what = ", ".join(f"{k} {_quote(v)}" for k, v in sorted(fields.items()))
            self.out.print(f"  {arrow}  {names.label(link.flow, link.poweroffice_id)}: {what}")
        if len(writes) > _SHOWN_WRITES:
            self.out.print(f"  … and {len(writes) - _SHOWN_WRITES} more (see the dashboard)")


class _Names:
    """Sample names of records by id, for readable notes."""

    def __init__(self, seeded: Seeded) -> None:
        self._po = {
            "departments": {v: k for k, v in seeded.po_departments.items()},
            "customers": {v: k for k, v in seeded.po_customers.items()},
            "projects": {v: k for k, v in seeded.po_projects.items()},
        }
        self._pms = {i: name for name, ids in seeded.pms_customers.items() for i in ids}

    def po(self, flow: str, po_id: str) -> str:
        name = self._po.get(flow, {}).get(po_id)
        return f'"{name}"' if name else ""

    def label(self, flow: str, po_id: str) -> str:
        """``project 1004``, ``customer "Nordlys Elektro AS"``: what a person calls the record."""
        kind = {"departments": "department", "customers": "customer"}.get(flow, "project")
        name = self._po.get(flow, {}).get(po_id)
        if name is None:
            return f"{kind} {po_id}"
        return f"{kind} {name}" if flow == "projects" else f'{kind} "{name}"'

    def pms(self, pms_id: str) -> str:
        name = self._pms.get(pms_id)
        return f'"{name}"' if name else ""


def _count(n: int, flow: str) -> str:
    singular = {"departments": "department", "customers": "customer", "projects": "project"}
    return f"{n} {flow if n != 1 else singular.get(flow, flow)}"


def _quote(value: Any) -> str:
    return "(empty)" if value in (None, "") else f'"{value}"'


def _linked_pms_id(engine: SyncEngine, flow: str, po_id: str) -> str:
    link = engine.store.get_link_by_po(flow, po_id)  # type: ignore[arg-type]
    if link is None:
        raise ConfigError(f"the demo's {flow} record {po_id} was not linked by the first sync")
    return link.pms_id


def _timed_cycle(engine: SyncEngine) -> float:
    began = time.monotonic()
    engine.run_cycle()
    return time.monotonic() - began
