"""The connector contract suite: ONE set of tests every connector passes.

``test_contract.py`` checks auth, paging, changed-since, the create/update
round trip, idempotent create and the classification of 429, 5xx and 4xx
answers, for every *subject*: a connector plus the sandbox system behind it.

Subjects come from the modules ``tests/contract/subjects_*.py``; each defines
``SUBJECTS: list[ContractSubject]`` (see ``tests/contract/subject.py``).
To add the PMS connector, add ``tests/contract/subjects_pms.py``::

    from contract.subject import ContractSubject, SubjectHandle

    @contextmanager
    def _start() -> Iterator[SubjectHandle]:
        app = create_app(...)                       # the reference PMS
        with serve(app) as url:                     # from loopback import serve
            yield SubjectHandle(
                control=...,                        # implements contract.subject.Control
                connect=lambda page_size=None, valid_credentials=True: PMSClient(...),
                max_attempts=5,                     # the connector's RetryPolicy.attempts
                bad_secret="wrong-key",
            )

    SUBJECTS = [ContractSubject("pms-loopback", _start, resources=[ResourceCase(...), ...])]

Nothing else changes: the tests are parametrised over every subject (and over
each subject's resources), each subject's system starts once per session and
is reset before every test. Retry waits are removed (``tolken.connectors._http
.testing()``) so retry counts are asserted without sleeping.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from contract.subject import ContractSubject, SubjectHandle
from tolken.connectors import _http
from tolken.connectors.base import Connector


def _load_subjects() -> list[ContractSubject]:
    subjects: list[ContractSubject] = []
    for path in sorted(Path(__file__).parent.glob("subjects_*.py")):
        module = importlib.import_module(f"contract.{path.stem}")
        subjects.extend(module.SUBJECTS)
    return subjects


SUBJECTS = _load_subjects()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise `subject_handle` (and `case`, when asked for) over every subject."""
    if "subject_handle" not in metafunc.fixturenames:
        return
    if "case" in metafunc.fixturenames:
        pairs = [(s, c) for s in SUBJECTS for c in s.resources]
        metafunc.parametrize(
            ("subject_handle", "case"),
            pairs,
            indirect=["subject_handle"],
            ids=[f"{s.name}-{c.resource}" for s, c in pairs],
            scope="session",
        )
    else:
        metafunc.parametrize(
            "subject_handle",
            SUBJECTS,
            indirect=True,
            ids=[s.name for s in SUBJECTS],
            scope="session",
        )


@pytest.fixture(scope="session")
def subject_handle(request: pytest.FixtureRequest) -> Iterator[SubjectHandle]:
    """The running system of one subject (started once per session)."""
    subject: ContractSubject = request.param
    with subject.start() as handle:
        yield handle


@pytest.fixture
def handle(subject_handle: SubjectHandle) -> Iterator[SubjectHandle]:
    """The subject's system, reset, with retry waits removed; connectors closed afterwards."""
    made: list[Connector] = []

    def connect(**options: Any) -> Connector:
        connector: Connector = subject_handle.connect(**options)
        made.append(connector)
        return connector

    subject_handle.control.reset()
    try:
        with _http.testing():
            yield replace(subject_handle, connect=connect)
    finally:
        subject_handle.control.clear_faults()
        for connector in made:
            connector.close()
