"""The one redactor: replaces every known secret in text before it is logged, printed or stored.

A leaf (it imports nothing of tolken), so the connectors, the store, the CLI
and the JSON logs all use the same rules:

- A secret is matched raw, URL-encoded, JSON-escaped and as the HTTP Basic
  ``base64(key:key)`` of any two secrets; the longest form is replaced first.
- Secrets shorter than :data:`MIN_SECRET_LENGTH` are not redacted: a short
  value ("test", "ab1") is also ordinary text, and replacing it would make
  every message unreadable. The config refuses credentials that short instead,
  so every configured secret is redacted.
- :func:`shared` is the process's redactor: :func:`tolken.logging.configure_logging`
  adds the configured secrets to it, and the store and the CLI redact with it
  what they write, as a second line behind the connectors, which redact what
  a remote system says as it arrives (:mod:`tolken.connectors._http`).
- :func:`redacting` adds secrets for one context only (a fleet worker's job:
  one tenant's keys, in the job's thread). The shared redactor applies them
  there too, so a worker serving thousands of tenants keeps a small shared
  set: the HTTP Basic forms make the cost of a set grow with its square.
"""

from __future__ import annotations

import base64
import itertools
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import quote, quote_plus

__all__ = ["MIN_SECRET_LENGTH", "REDACTED", "Redactor", "redacting", "shared"]

REDACTED = "[redacted]"

MIN_SECRET_LENGTH = 8
"""The shortest secret redacted, and so the shortest credential the config accepts."""

# Keys whose values are credentials whatever they hold.
_SENSITIVE_KEYS = frozenset(
    {"authorization", "api_key", "apikey", "password", "secret", "access_token", "client_key"}
)


class Redactor:
    """Replaces every known secret in strings and in nested values (thread-safe).

    Values shorter than :data:`MIN_SECRET_LENGTH` are ignored (see the module docstring).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._forms: tuple[str, ...] = ()
        self._secrets: set[str] = set()
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        """Redact these values too (e.g. an access token obtained at run time)."""
        wanted = {s for s in secrets if len(s) >= MIN_SECRET_LENGTH}
        with self._lock:
            if wanted <= self._secrets:
                return  # the common case: a secret learnt again
            self._secrets.update(wanted)
            self._forms = _forms_of(self._secrets)

    @property
    def secrets(self) -> frozenset[str]:
        """The raw values being redacted."""
        return frozenset(self._secrets)

    def text(self, value: str) -> str:
        """``value`` with every secret (in any known form) replaced by ``[redacted]``.

        The shared redactor also replaces the secrets of :func:`redacting` blocks around it.
        """
        value = _replace(self._forms, value)
        if self is _shared:
            for scoped in _scoped.get():
                value = scoped.text(value)
        return value

    def value(self, value: Any) -> Any:
        """Redact a JSON-like value: strings, and lists/tuples/dicts of them, recursively."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {
                self.text(str(k)): REDACTED if sensitive(k) else self.value(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple | set | frozenset):
            return [self.value(v) for v in value]
        if isinstance(value, bytes):
            return self.text(value.decode("utf-8", "replace"))
        if value is None or isinstance(value, bool | int | float):
            return value
        # Exceptions, URLs, paths...: their text is what gets rendered.
        return self.text(str(value))


def sensitive(key: object) -> bool:
    """True for a key whose value is a credential whatever it holds (``api_key``, ...)."""
    return isinstance(key, str) and key.lower().replace("-", "_") in _SENSITIVE_KEYS


def _forms_of(secrets: Iterable[str]) -> tuple[str, ...]:
    secrets = sorted(set(secrets))
    forms: set[str] = set()
    for secret in secrets:
        forms.update({secret, quote(secret, safe=""), quote_plus(secret)})
        forms.add(secret.replace("\\", "\\\\").replace('"', '\\"'))  # JSON-escaped
    # HTTP Basic credentials are base64("user:password") of two configured keys.
    for user, password in itertools.permutations(secrets, 2):
        forms.add(base64.b64encode(f"{user}:{password}".encode()).decode("ascii"))
    # Longest first, so a secret that contains another is replaced whole.
    return tuple(sorted(forms, key=len, reverse=True))


def _replace(forms: tuple[str, ...], value: str) -> str:
    for form in forms:
        if form in value:
            value = value.replace(form, REDACTED)
    return value


_shared = Redactor()
_scoped: ContextVar[tuple[Redactor, ...]] = ContextVar("tolken_scoped_redactors", default=())


@contextmanager
def redacting(secrets: Iterable[str]) -> Iterator[None]:
    """Inside the block (this thread or task), :func:`shared` also redacts ``secrets``.

    Their HTTP Basic forms are paired with the shared secrets too (an
    application key with a tenant's client key).
    """
    scoped = Redactor([*_shared.secrets, *secrets])
    token = _scoped.set((*_scoped.get(), scoped))
    try:
        yield
    finally:
        _scoped.reset(token)


def shared() -> Redactor:
    """The process's redactor: every secret configured or learnt in this process.

    Secrets are only ever added: a value that was secret once stays redacted.
    """
    return _shared
