"""The :class:`Store`: one object the engine, CLI and dashboard share."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError

from tolken._closing import Closeable
from tolken.errors import Unreachable
from tolken.store._base import Clock, utcnow
from tolken.store._db import make_engine
from tolken.store._issues import IssueRepository
from tolken.store._ops import OpsRepository
from tolken.store._tenants import TenantRepository
from tolken.store._webhooks import WebhookRepository
from tolken.store.migrate import upgrade

__all__ = ["Store", "open_store"]


class Store(IssueRepository, OpsRepository, WebhookRepository, TenantRepository, Closeable):
    """Links, shadows, cursors, pending creates, failures, conflicts, runs, history, webhooks.

    Every call takes the tenant it is about, so one store serves many PowerOffice
    clients. Calls are thread-safe; each runs in its own transaction unless made
    inside ``with store.transaction():``.
    """


def open_store(url: str | URL | Engine, *, clock: Clock = utcnow, migrate: bool = True) -> Store:
    """Open (and by default migrate) the store at ``url``.

    ``sqlite:///tolken.db`` (the default; WAL, foreign keys, busy timeout) or
    ``postgresql+psycopg://user:pass@host/db``. Raises :class:`tolken.errors.ConfigError`
    for a malformed or unsupported URL and :class:`tolken.errors.Unreachable`
    when the database cannot be reached.
    """
    owned = not isinstance(url, Engine)
    engine = url if isinstance(url, Engine) else make_engine(url)
    if migrate:
        try:
            try:
                upgrade(engine)
            except OperationalError as exc:
                message = f"cannot open the store: {exc.orig or exc}"
                raise Unreachable(message, system="store") from None
        except BaseException:
            if owned:  # a caller's engine is the caller's to dispose
                engine.dispose()
            raise
    return Store(engine, clock)
