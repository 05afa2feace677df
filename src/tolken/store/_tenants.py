"""The fleet's tenants: settings, credentials encrypted at rest, and each tenant's sync state.

The tenants table is the one cross-tenant registry of the store. Credentials
(PowerOffice client key, PMS API key, webhook secret) are stored as Fernet
tokens (AES-128-CBC with HMAC-SHA256, from ``cryptography``) under a key
derived from ``fleet.secret_key`` with scrypt and a random salt made once per
installation. The salt and a key check (a Fernet token of a known text) live
in ``store_meta``: opening the registry with another passphrase than the one
the tenants were stored with fails at once with a :class:`ConfigError`
instead of failing later on every tenant. Secrets leave this module only as
:class:`pydantic.SecretStr`, so a printed or logged tenant shows no secret::

    tenants = store.tenant_registry(config.fleet.secret_key)
    tenants.add(TenantSettings(id="acme", poweroffice_client_key=..., pms_api_key=...))
    config_of_acme = config.tenant_config(tenants.get("acme").settings)
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import SecretStr
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    RowMapping,
    Table,
    delete,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from tolken.config import MIN_FLEET_SECRET_LENGTH, TenantSettings
from tolken.errors import ConfigError
from tolken.store._base import Clock, StoreBase, utcnow
from tolken.store._models import Base, LinkRow, StoreMetaRow, TenantRow
from tolken.store._records import UnknownRecord

if TYPE_CHECKING:  # cryptography loads when a fleet's registry is opened, not for every store
    from cryptography.fernet import Fernet

__all__ = [
    "DuplicateTenant",
    "Tenant",
    "TenantRegistry",
    "TenantRepository",
    "TenantState",
    "TenantStatus",
    "UnknownTenant",
]

TenantState = Literal["idle", "queued", "syncing", "error"]
TenantStatus = Literal["idle", "queued", "syncing", "error", "paused"]

# scrypt's parameters for interactive use (cryptography's docs): ~50 ms and 16 MiB
# per derivation, done once per registry, and costly for anyone guessing offline.
KDF = "scrypt-n16384-r8-p1"
_KDF_KEY = "tenants.kdf"
_SALT_KEY = "tenants.salt"
_CHECK_KEY = "tenants.key_check"
_CHECK_TEXT = b"tolken tenants key check"

# Tables that are not one tenant's data.
_CROSS_TENANT = frozenset({TenantRow.__tablename__, StoreMetaRow.__tablename__})


class UnknownTenant(UnknownRecord):
    """No tenant with that id."""


class DuplicateTenant(ValueError):
    """A tenant with that id already exists."""


@dataclass(frozen=True)
class Tenant:
    """One tenant: its settings (secrets as ``SecretStr``) and where its sync stands."""

    settings: TenantSettings
    paused: bool
    state: TenantState
    last_run_at: datetime | None
    next_run_at: datetime | None
    last_error: str | None
    failures_in_a_row: int
    created_at: datetime
    updated_at: datetime

    @property
    def id(self) -> str:
        """The tenant id every table of the store is keyed by."""
        return self.settings.id

    @property
    def status(self) -> TenantStatus:
        """What ``tenants list`` shows: ``paused`` wins over the state of the last job."""
        return "paused" if self.paused else self.state


class _Cipher:
    """Seals and opens one secret with the installation's Fernet key."""

    def __init__(self, fernet: Fernet) -> None:
        self._fernet = fernet

    def __repr__(self) -> str:
        return "_Cipher(<key hidden>)"

    def seal(self, secret: SecretStr) -> str:
        return self._fernet.encrypt(secret.get_secret_value().encode("utf-8")).decode("ascii")

    def open(self, token: str) -> SecretStr:
        from cryptography.fernet import InvalidToken

        try:
            return SecretStr(self._fernet.decrypt(token.encode("ascii")).decode("utf-8"))
        except InvalidToken:
            # The key check passed, so the token itself was changed or copied from elsewhere.
            raise ConfigError(
                "a stored tenant credential does not decrypt under this key "
                "(changed in the database?): add that tenant's credentials again",
                key="fleet.secret_key",
            ) from None


def _derive(secret_key: SecretStr, salt: bytes) -> Fernet:
    from cryptography.fernet import Fernet
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    kdf = Scrypt(salt=salt, length=32, n=2**14, r=8, p=1)
    key = kdf.derive(secret_key.get_secret_value().encode("utf-8"))
    return Fernet(base64.urlsafe_b64encode(key))


def _tenant_tables() -> list[tuple[Table, str]]:
    """Every table holding one tenant's data, children first, with how it names the tenant.

    ``tenant`` column: that; a link's child without one: ``link_id``. A table
    that is neither (and not cross-tenant) is an error here, so a new table
    cannot silently survive ``remove --purge``.
    """
    found = []
    for table in reversed(Base.metadata.sorted_tables):
        if table.name in _CROSS_TENANT:
            continue
        if "tenant" in table.c:
            found.append((table, "tenant"))
        elif "link_id" in table.c:
            found.append((table, "link_id"))
        else:
            raise RuntimeError(f"table {table.name} has no tenant: say how to purge it")
    return found


class TenantRegistry(StoreBase):
    """Add, read, change and remove the fleet's tenants; record each one's sync state."""

    def __init__(self, engine: Engine, secret_key: SecretStr | str, clock: Clock = utcnow):
        super().__init__(engine, clock)
        if isinstance(secret_key, str):
            secret_key = SecretStr(secret_key)
        self._cipher = _Cipher(self._unlock(secret_key))

    def __repr__(self) -> str:
        return f"TenantRegistry({self.engine.url!r})"

    # -- the key ---------------------------------------------------------------------

    def _unlock(self, secret_key: SecretStr) -> Fernet:
        from cryptography.fernet import InvalidToken

        meta = self._meta()
        if not meta:
            meta = self._first_key(secret_key)
        if meta.get(_KDF_KEY) != KDF:
            raise ConfigError(
                f"the store's tenants use key derivation {meta.get(_KDF_KEY)!r}, "
                f"which this tolken does not know (it knows {KDF!r})",
                key="fleet.secret_key",
            )
        fernet = _derive(secret_key, base64.b64decode(meta[_SALT_KEY]))
        try:
            fernet.decrypt(meta[_CHECK_KEY].encode("ascii"))
        except InvalidToken:
            raise ConfigError(
                "does not match the passphrase the store's tenants were stored with "
                "(set the secret_key they were added under)",
                key="fleet.secret_key",
            ) from None
        return fernet

    def _meta(self) -> dict[str, str]:
        with self._read() as conn:
            rows = conn.execute(
                select(StoreMetaRow.key, StoreMetaRow.value).where(
                    StoreMetaRow.key.in_((_KDF_KEY, _SALT_KEY, _CHECK_KEY))
                )
            )
            return {str(key): str(value) for key, value in rows}

    def _first_key(self, secret_key: SecretStr) -> dict[str, str]:
        """Make this installation's salt and key check; another process may win the race."""
        salt = os.urandom(16)
        check = _derive(secret_key, salt).encrypt(_CHECK_TEXT).decode("ascii")
        meta = {_KDF_KEY: KDF, _SALT_KEY: base64.b64encode(salt).decode("ascii"), _CHECK_KEY: check}
        try:
            with self._write() as conn:
                conn.execute(
                    insert(StoreMetaRow), [{"key": k, "value": v} for k, v in meta.items()]
                )
        except IntegrityError:
            return self._meta()
        return meta

    def rekey(self, new_secret_key: SecretStr) -> int:
        """Seal every stored credential under ``new_secret_key``; the number of tenants.

        One transaction: every credential is opened with the current key and
        sealed again under a key derived from the new passphrase with a new
        salt, and the salt and key check in ``store_meta`` are replaced, so
        either everything is under the new passphrase or nothing changed.
        Processes still holding the old passphrase fail to open the registry
        afterwards (stop them first, start them again with the new one).
        """
        if len(new_secret_key.get_secret_value()) < MIN_FLEET_SECRET_LENGTH:
            raise ConfigError(
                f"the new passphrase must be at least {MIN_FLEET_SECRET_LENGTH} characters",
                key="fleet.secret_key",
            )
        salt = os.urandom(16)
        fernet = _derive(new_secret_key, salt)
        cipher = _Cipher(fernet)
        columns = ("poweroffice_client_key_token", "pms_api_key_token", "webhook_secret_token")
        with self._write() as conn:
            rows = conn.execute(
                select(TenantRow.id, *(TenantRow.__table__.c[c] for c in columns)).with_for_update()
            ).mappings()
            count = 0
            for row in list(rows):
                sealed = {
                    c: cipher.seal(self._cipher.open(row[c])) if row[c] else None for c in columns
                }
                conn.execute(update(TenantRow).where(TenantRow.id == row["id"]).values(**sealed))
                count += 1
            meta = {
                _KDF_KEY: KDF,
                _SALT_KEY: base64.b64encode(salt).decode("ascii"),
                _CHECK_KEY: fernet.encrypt(_CHECK_TEXT).decode("ascii"),
            }
            for key, value in meta.items():
                conn.execute(
                    update(StoreMetaRow).where(StoreMetaRow.key == key).values(value=value)
                )
        self._cipher = cipher
        return count

    # -- reading ---------------------------------------------------------------------

    def _tenant(self, row: RowMapping) -> Tenant:
        webhook_secret = row["webhook_secret_token"]
        settings = TenantSettings(
            id=row["id"],
            poweroffice_client_key=self._cipher.open(row["poweroffice_client_key_token"]),
            pms_api_key=self._cipher.open(row["pms_api_key_token"]),
            pms_base_url=row["pms_base_url"],
            webhook_secret=self._cipher.open(webhook_secret) if webhook_secret else None,
            interval_seconds=row["interval_seconds"],
            conflict_policy=row["conflict_policy"],
        )
        return Tenant(
            settings=settings,
            paused=row["paused"],
            state=row["state"],
            last_run_at=row["last_run_at"],
            next_run_at=row["next_run_at"],
            last_error=row["last_error"],
            failures_in_a_row=row["failures_in_a_row"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    def _select(self, conn: Connection, *where: ColumnElement[bool]) -> list[Tenant]:
        query = select(TenantRow.__table__).where(*where).order_by(TenantRow.id)
        return [self._tenant(row) for row in conn.execute(query).mappings()]

    def get(self, tenant_id: str) -> Tenant:
        """The tenant ``tenant_id``; :class:`UnknownTenant` when there is none."""
        with self._read() as conn:
            found = self._select(conn, TenantRow.id == tenant_id)
        if not found:
            raise UnknownTenant(f"no tenant {tenant_id!r}")
        return found[0]

    def all(self) -> list[Tenant]:
        """Every tenant, by id."""
        with self._read() as conn:
            return self._select(conn)

    def due(self, now: datetime | None = None) -> list[Tenant]:
        """Tenants whose next run has come: not paused, not queued or syncing already."""
        now = now or self.now()
        with self._read() as conn:
            return self._select(
                conn,
                TenantRow.paused.is_(False),
                TenantRow.state.in_(("idle", "error")),
                or_(TenantRow.next_run_at.is_(None), TenantRow.next_run_at <= now),
            )

    # -- settings --------------------------------------------------------------------

    def _sealed(self, settings: TenantSettings) -> dict[str, object]:
        secret = settings.webhook_secret
        return {
            "poweroffice_client_key_token": self._cipher.seal(settings.poweroffice_client_key),
            "pms_api_key_token": self._cipher.seal(settings.pms_api_key),
            "webhook_secret_token": self._cipher.seal(secret) if secret is not None else None,
            "pms_base_url": settings.pms_base_url,
            "interval_seconds": settings.interval_seconds,
            "conflict_policy": settings.conflict_policy,
        }

    def add(self, settings: TenantSettings, *, paused: bool = False) -> Tenant:
        """Add a tenant, due at once or ``paused``; :class:`DuplicateTenant` if the id is taken."""
        now = self.now()
        row = {"id": settings.id, **self._sealed(settings), "next_run_at": now, "paused": paused}
        try:
            with self._write() as conn:
                conn.execute(insert(TenantRow).values(**row, created_at=now, updated_at=now))
        except IntegrityError:
            raise DuplicateTenant(f"tenant {settings.id!r} already exists") from None
        return self.get(settings.id)

    def _change(self, tenant_id: str, **values: object) -> Tenant:
        with self._write() as conn:
            changed = conn.execute(
                update(TenantRow)
                .where(TenantRow.id == tenant_id)
                .values(**values, updated_at=self.now())
            ).rowcount
        if not changed:
            raise UnknownTenant(f"no tenant {tenant_id!r}")
        return self.get(tenant_id)

    def update(self, settings: TenantSettings) -> Tenant:
        """Replace the settings (and credentials) of the tenant ``settings.id``."""
        return self._change(settings.id, **self._sealed(settings))

    def pause(self, tenant_id: str) -> Tenant:
        """Stop queueing the tenant's sync; a job already running finishes."""
        return self._change(tenant_id, paused=True)

    def resume(self, tenant_id: str) -> Tenant:
        """Queue the tenant's sync again, due at once so it catches up."""
        return self._change(tenant_id, paused=False, next_run_at=self.now())

    def remove(self, tenant_id: str, *, purge: bool = False) -> None:
        """Remove the tenant; with ``purge``, also every row of its data in every table.

        Without ``purge`` its links, failures and runs stay, so adding the same
        id again carries on where it stopped.
        """
        with self._write() as conn:
            if purge:
                links = select(LinkRow.id).where(LinkRow.tenant == tenant_id)
                for table, column in _tenant_tables():
                    if column == "tenant":
                        conn.execute(delete(table).where(table.c.tenant == tenant_id))
                    else:
                        conn.execute(delete(table).where(table.c.link_id.in_(links)))
            if not conn.execute(delete(TenantRow).where(TenantRow.id == tenant_id)).rowcount:
                raise UnknownTenant(f"no tenant {tenant_id!r}")  # rolls the purge back too

    # -- sync state ------------------------------------------------------------------

    def mark_queued(self, tenant_id: str) -> Tenant:
        """A job for the tenant waits in the queue."""
        return self._change(tenant_id, state="queued")

    def mark_idle(self, tenant_id: str) -> Tenant:
        """No job of the tenant waits or runs (a paused tenant's job dropped, a lost job)."""
        return self._change(tenant_id, state="idle")

    def mark_syncing(self, tenant_id: str) -> Tenant:
        """A worker runs the tenant's job now."""
        return self._change(tenant_id, state="syncing")

    def record_success(self, tenant_id: str, *, next_run_at: datetime) -> Tenant:
        """The tenant's job finished: idle, no error, failures reset, next run set."""
        return self._change(
            tenant_id,
            state="idle",
            last_run_at=self.now(),
            last_error=None,
            failures_in_a_row=0,
            next_run_at=next_run_at,
        )

    def record_failure(self, tenant_id: str, error: str, *, next_run_at: datetime) -> Tenant:
        """The tenant's job failed: ``error`` shown, one more failure in a row, retried later.

        ``error`` must not contain a secret (tolken's error messages never do).
        """
        return self._change(
            tenant_id,
            state="error",
            last_run_at=self.now(),
            last_error=error,
            failures_in_a_row=TenantRow.failures_in_a_row + 1,
            next_run_at=next_run_at,
        )


class TenantRepository(StoreBase):
    """Gives the store its tenant registry, unlocked with ``fleet.secret_key``."""

    def tenant_registry(self, secret_key: SecretStr | str) -> TenantRegistry:
        """The fleet's tenants; :class:`ConfigError` when ``secret_key`` is not theirs."""
        return TenantRegistry(self.engine, secret_key, self._clock)
