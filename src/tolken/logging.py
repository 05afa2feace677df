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
URL-encoded and HTTP Basic (``base64(key:key)``) forms. The redactor is the
process's one (:func:`tolken._redact.shared`), which the store and the CLI
use too, so a secret configured here is also kept out of what they write.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import IO, Any

import structlog

from tolken._redact import REDACTED, Redactor, sensitive
from tolken._redact import shared as shared_redactor

__all__ = [
    "REDACTED",
    "Redactor",
    "configure_logging",
    "get_logger",
    "log_context",
]

# Loggers of libraries that run inside tolken; routed through the same chain.
_FIRST_KEYS = ("ts", "level", "event", "logger", "run_id", "flow", "link_id")
_LIBRARY_LOGGERS = ("httpx", "httpcore", "uvicorn", "uvicorn.error", "uvicorn.access", "tolken")


class _RedactingProcessor:
    """A structlog processor: redact every value of the event dict."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor

    def __call__(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        return {
            k: REDACTED if sensitive(k) and v is not None else self._redactor.value(v)
            for k, v in event_dict.items()
        }


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

    Adds ``secrets`` to the process's redactor and returns it, so a caller can
    add secrets learnt later. Calling it again replaces the previous set-up
    (tests capture logs this way); secrets added before stay redacted.
    """
    redactor = shared_redactor()
    redactor.add(*secrets)
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
            # First, so a line below the level costs one check, not a timestamp and a dict.
            structlog.stdlib.filter_by_level,
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
            _RedactingProcessor(redactor),
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
