"""Bounds on a listing over a remote system: progress, caps, and the stop signal.

A listing asks a remote system for page after page until it says there is no
more. A system that misbehaves (a fresh cursor on every page with the same
items, a page number it ignores) would keep that loop going forever, so every
listing of the built-in connectors goes through a :class:`ListingGuard`, told
about each page as it arrives (:meth:`ListingGuard.page`):

* **Progress.** A page after which the listing goes on must move it forward:
  its last ``(updated_at, id)`` is later than on every page before, or it is
  not a repeat of an earlier page and holds a record id the page before did
  not. A final page is not checked (an empty last page is how listings end).
* **Caps** per listing (:class:`ListingLimits`): pages, records and seconds.
  The defaults are far above any real listing (a million records are 2,000
  PMS pages of 500, or 200 PowerOffice pages of 5,000).
* **Stop.** The stop signal (a :class:`threading.Event`, set by SIGTERM or a
  ``serve`` shutdown) is checked before each page: a listing cut short is
  never used, so it raises :class:`~tolken.errors.Stopped`.

Breaking a rule raises :class:`~tolken.errors.Fatal` naming the system and
the request (method and path, never a query value or header). A long listing
logs its progress every :data:`LOG_EVERY_PAGES` pages.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

import structlog

from tolken.errors import Fatal, Stopped

__all__ = ["LOG_EVERY_PAGES", "ListingGuard", "ListingLimits"]

LOG_EVERY_PAGES = 50
"""A listing logs ``listing in progress`` (pages, records, seconds) every this many pages."""

_log = structlog.stdlib.get_logger("tolken.connectors")


@dataclass(frozen=True)
class ListingLimits:
    """The most one listing may take: ``pages`` requests, ``records`` items, ``seconds``."""

    pages: int = 20_000
    records: int = 5_000_000
    seconds: float = 3600.0


class ListingGuard:
    """One listing's progress, counts and clock; see the module docstring.

    ``system`` names the system in messages (``PowerOffice``, ``the PMS``),
    ``request`` the listing (``GET /api/v1/customers``); ``error_system`` is
    the error's ``system`` (``poweroffice``, ``pms``).
    """

    def __init__(
        self,
        system: str,
        error_system: str,
        request: str,
        *,
        stop: threading.Event | None = None,
        limits: ListingLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.system = system
        self.error_system = error_system
        self.request = request
        self.limits = limits or ListingLimits()
        self.pages = 0
        self.records = 0
        self._stop = stop
        self._clock = clock
        self._started = clock()
        self._best_key: tuple[str, str] | None = None
        self._previous_ids: frozenset[str] = frozenset()
        self._seen_pages: set[str] = set()

    def check_stop(self) -> None:
        """Raise :class:`~tolken.errors.Stopped` once a stop was asked for."""
        if self._stop is not None and self._stop.is_set():
            raise Stopped(
                f"stopping: the listing {self.request} was cut short after {self.pages} page(s)",
                system=self.error_system,
            )

    def page(
        self, ids: Sequence[str], last_key: tuple[str, str] | None = None, *, more: bool
    ) -> None:
        """Count a page of record ``ids`` (``last_key``: its last ``(updated_at, id)``).

        ``more``: the listing asks for another page after this one, so this one
        must have made progress. Raises Fatal when a rule is broken, Stopped
        when a stop was asked for and more is to come.
        """
        self.pages += 1
        self.records += len(ids)
        if more:
            self._check_progress(ids, last_key)
        self._previous_ids = frozenset(ids)
        if self.pages % LOG_EVERY_PAGES == 0:
            _log.info(
                "listing in progress",
                system=self.error_system,
                request=self.request,
                pages=self.pages,
                records=self.records,
                seconds=round(self._clock() - self._started, 1),
            )
        if more:
            self._check_caps()
            self.check_stop()

    def _check_progress(self, ids: Sequence[str], last_key: tuple[str, str] | None) -> None:
        forward = last_key is not None and (self._best_key is None or last_key > self._best_key)
        if last_key is not None and forward:
            self._best_key = last_key
        fingerprint = hashlib.sha256("\x00".join(ids).encode()).hexdigest()
        repeated = fingerprint in self._seen_pages
        self._seen_pages.add(fingerprint)
        if forward:
            return
        if not ids:
            self.fail(f"sent an empty page {self.pages} and asked to go on")
        if repeated or self._previous_ids.issuperset(ids):
            self.fail(f"sent page {self.pages} with the same records as before and asked to go on")

    def _check_caps(self) -> None:
        limits = self.limits
        if self.pages >= limits.pages:
            self.fail(f"needs more than {limits.pages} pages")
        if self.records >= limits.records:
            self.fail(f"holds more than {limits.records} records")
        if self._clock() - self._started >= limits.seconds:
            self.fail(f"took longer than {limits.seconds:g} seconds")

    def fail(self, what: str) -> NoReturn:
        """Raise the listing's Fatal error: ``what`` the system did wrong."""
        raise Fatal(
            f"{self.system} listing {self.request} {what}: stopped rather than "
            f"paging on forever (after {self.pages} pages, {self.records} records)",
            system=self.error_system,
        )
