"""Structured logs: JSON lines through structlog, with every configured secret redacted.

:func:`configure_logging` sends structlog and the standard library's loggers
(httpx, uvicorn, ...) through one chain that ends in one JSON object per
line. Context bound with :func:`log_context` (``run_id``, ``flow``,
``link_id``) is added to every line logged inside it, on that thread or task::

    redactor = configure_logging(config.secrets())
    with log_context(run_id=7, flow="customers"):
        get_logger().info("record written", link_id=12)

Redaction happens twice: on the values of the event dict (nested containers
too) and on the rendered line, so a secret cannot slip through an exception
text, a URL (``?token=...``) or a key name. Secrets are also matched in their
URL-encoded and HTTP Basic (``base64(key:key)``) forms.
"""

from __future__ import annotations

import base64
import itertools
import logging
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import IO, Any
from urllib.parse import quote, quote_plus

import structlog

__all__ = [
    "REDACTED",
    "Redactor",
    "configure_logging",
    "get_logger",
    "log_context",
]

REDACTED = "[redacted]"

# Keys whose values are credentials whatever they hold.
_SENSITIVE_KEYS = frozenset(
    {"authorization", "api_key", "apikey", "password", "secret", "access_token", "client_key"}
)
# Loggers of libraries that run inside tolken; routed through the same chain.
_FIRST_KEYS = ("ts", "level", "event", "logger", "run_id", "flow", "link_id")
_LIBRARY_LOGGERS = ("httpx", "httpcore", "uvicorn", "uvicorn.error", "uvicorn.access", "tolken")


class Redactor:
    """Replaces every known secret in strings and in nested event values (thread-safe).

    Short values (under four characters) are ignored: replacing them would
    mangle ordinary text and they are not credentials worth the name.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._forms: tuple[str, ...] = ()
        self._secrets: set[str] = set()
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        """Redact these values too (e.g. an access token obtained at run time)."""
        with self._lock:
            self._secrets.update(s for s in secrets if s and len(s) >= 4)
            self._forms = _forms_of(self._secrets)

    @property
    def secrets(self) -> frozenset[str]:
        """The raw values being redacted."""
        return frozenset(self._secrets)

    def text(self, value: str) -> str:
        """``value`` with every secret (in any known form) replaced by ``[redacted]``."""
        for form in self._forms:
            if form in value:
                value = value.replace(form, REDACTED)
        return value

    def value(self, value: Any) -> Any:
        """Redact a JSON-like value: strings, and lists/tuples/dicts of them, recursively."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {
                self.text(str(k)): REDACTED if _sensitive(k) else self.value(v)
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

    def __call__(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """A structlog processor: redact every value of the event dict."""
        return {
            k: REDACTED if _sensitive(k) and v is not None else self.value(v)
            for k, v in event_dict.items()
        }


def _sensitive(key: object) -> bool:
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


class _RedactingRenderer:
    """JSON-render the event, then redact the line itself (the last line of defence)."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._json = structlog.processors.JSONRenderer(sort_keys=False)

    def __call__(self, logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
        # A fixed order for the keys people scan for; the rest as logged.
        ordered = {k: event_dict[k] for k in _FIRST_KEYS if k in event_dict}
        ordered.update((k, v) for k, v in event_dict.items() if k not in ordered)
        rendered = self._json(logger, method, ordered)
        return self._redactor.text(str(rendered))


def _stdlib_names(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
    # Library records carry their logger name; keep it so a line says where it came from.
    record = event_dict.get("_record")
    if record is not None:
        event_dict.setdefault("logger", record.name)
    return event_dict


def configure_logging(
    secrets: Iterable[str] = (),
    *,
    stream: IO[str] | None = None,
    level: int | str = logging.INFO,
) -> Redactor:
    """Send structlog and library logs as redacted JSON lines to ``stream`` (stderr).

    Returns the :class:`Redactor` so a caller can add secrets learnt later.
    Calling it again replaces the previous set-up (tests capture logs this way).
    """
    redactor = Redactor(secrets)
    if isinstance(level, str):
        # An unknown name (a typo in TOLKEN_LOG_LEVEL) must not stop the process.
        resolved = logging.getLevelName(level.upper())
        level = resolved if isinstance(resolved, int) else logging.INFO
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, _stdlib_names, structlog.processors.format_exc_info],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redactor,
            _RedactingRenderer(redactor),
        ],
    )
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter)
    handler.set_name("tolken-json")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "tolken-json"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _LIBRARY_LOGGERS:
        # uvicorn installs its own handlers; ours on the root is the only one wanted.
        lib = logging.getLogger(name)
        lib.handlers.clear()
        lib.propagate = True
        lib.setLevel(logging.NOTSET)
    return redactor


def get_logger(name: str = "tolken") -> Any:
    """A structlog logger (bound methods ``info``, ``warning``, ... take key-value pairs)."""
    return structlog.stdlib.get_logger(name)


@contextmanager
def log_context(**values: Any) -> Iterator[None]:
    """Add ``values`` (``run_id``, ``flow``, ``link_id``, ...) to every line logged inside."""
    with structlog.contextvars.bound_contextvars(**values):
        yield
