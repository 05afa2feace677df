"""YAML loading that remembers where every key came from, for errors that name a line.

Config and mapping files are small, hand-written data, so the loader refuses
what only an attacker or an accident produces, before it costs anything: a file
over :data:`MAX_FILE_BYTES` is refused unread, and YAML aliases (``*name``)
are refused where the parser meets them, so a "billion laughs" file cannot
expand into gigabytes and ``${VAR}`` expansion walks each value exactly once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.composer import Composer, ComposerError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.nodes import MappingNode, ScalarNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.scanner import RoundTripScanner, ScannerError

from tolken.errors import ConfigError

__all__ = [
    "MAX_FILE_BYTES",
    "expand_env",
    "line_of",
    "load_packaged_yaml",
    "load_yaml",
    "validate_model",
]

MAX_FILE_BYTES = 256 * 1024
"""The largest config or mapping file tolken reads: 256 KiB.

The built-in mapping is 4 KiB. The round-trip parser needs about a second per
100 KB of dense YAML, so the cap also bounds how long a load can take.
"""

MAX_DEPTH = 64
"""The deepest nesting of mappings and lists tolken reads (its own files need 6)."""

M = TypeVar("M", bound=BaseModel)

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def load_yaml(path: Path) -> Any:
    """Parse ``path`` keeping line information; YAML syntax errors name file and line.

    Refuses a file over :data:`MAX_FILE_BYTES`, YAML aliases, and nesting
    deeper than :data:`MAX_DEPTH`, each as a :class:`ConfigError`.
    """
    text = _read_capped(path)
    yaml = YAML(typ="rt")
    yaml.Composer = _NoAliasComposer
    yaml.Scanner = _ShallowScanner
    try:
        return yaml.load(text)
    except MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        where = f"{path}:{line}" if line else str(path)
        raise ConfigError(f"invalid YAML: {exc.problem}", location=where) from None
    except ReaderError as exc:
        # A control character YAML does not allow (found by tests/fuzz): no mark, a position.
        line = text.count("\n", 0, exc.position) + 1
        problem = f"character #x{exc.character:04x} is not allowed in YAML"
        raise ConfigError(f"invalid YAML: {problem}", location=f"{path}:{line}") from None
    except YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", location=str(path)) from None


def load_packaged_yaml(path: Path) -> Any:
    """Parse a file shipped inside tolken (its built-in mapping) with the C parser: plain
    dicts and lists, no line numbers, a tenth of :func:`load_yaml`'s time at every start.

    Only for tolken's own files: a user's file goes through :func:`load_yaml`, whose
    limits and line numbers its errors need.
    """
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


def _read_capped(path: Path) -> str:
    """The file's text, read only when it is at most :data:`MAX_FILE_BYTES` long."""
    try:
        with path.open("rb") as stream:
            # One byte more than the cap tells "too large" without reading the rest
            # (a size from stat() would miss pipes and files that grow).
            data = stream.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"file not found: {path}", location=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", location=str(path)) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(
            f"the file is larger than {MAX_FILE_BYTES // 1024} KiB, the most tolken reads "
            "from a config or mapping file",
            location=str(path),
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"the file is not UTF-8 text (byte {exc.start})", location=str(path)
        ) from None


class _ShallowScanner(RoundTripScanner):
    """Refuses ``[`` and ``{`` nested deeper than :data:`MAX_DEPTH` as it reads them.

    The scanner looks up to 1024 characters ahead at a cost that grows with
    the nesting, so a line of 1000 ``[`` takes seconds before the composer
    sees a single node; counting here stops it at once.
    """

    def fetch_flow_collection_start(self, TokenClass: Any, to_push: str) -> None:
        if len(self.flow_context) >= MAX_DEPTH:
            problem = f"nested more than {MAX_DEPTH} levels deep"
            raise ScannerError(None, None, problem, self.reader.get_mark())
        super().fetch_flow_collection_start(TokenClass, to_push)


class _NoAliasComposer(Composer):
    """Refuses aliases (``*name``, and so ``<<: *name`` merges), deep nesting and non-scalar
    keys as met.

    An alias repeats a node without copying it in the file, which is how a
    1 KB file becomes a billion values; tolken's files never need one. Deep
    nesting costs the parser time quadratic in the depth (900 levels: 5 s),
    so it stops at :data:`MAX_DEPTH` before reading further.
    """

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader)
        self._depth = 0
        # An anchor named twice is harmless where no alias may use it (found by tests/fuzz:
        # ruamel's warning was a stray message on stderr, and an error under the tests).
        self.warn_double_anchors = False

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        if isinstance(event, AliasEvent):
            problem = f"aliases (*{event.anchor}) are not allowed: write the value out"
            raise ComposerError(None, None, problem, event.start_mark)
        if self._depth >= MAX_DEPTH:
            problem = f"nested more than {MAX_DEPTH} levels deep"
            raise ComposerError(None, None, problem, event.start_mark)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if isinstance(parent, MappingNode) and index is None and not isinstance(node, ScalarNode):
            # A list or mapping as a key (``? {a: {b: 1}}``) crashes the constructor (tests/fuzz).
            problem = "a key must be a plain value, not a list or mapping"
            raise ComposerError(None, None, problem, event.start_mark)
        return node


def expand_env(node: Any, path: Path, environ: dict[str, str] | None = None) -> Any:
    """Replace ``${VAR}`` in every string with the environment's value; a missing one is an error.

    Only whole-variable substitution, no expressions: config strings stay data.
    """
    env = os.environ if environ is None else environ
    try:
        return _expand(node, path, env)
    except _MissingVar as missing:
        # Only a document that is not a mapping gets here (found by tests/fuzz).
        raise ConfigError(
            f"environment variable {missing.name} is not set", location=str(path)
        ) from None


def _expand(node: Any, path: Path, env: Mapping[str, str]) -> Any:
    if isinstance(node, CommentedMap):
        for key in list(node.keys()):
            try:
                node[key] = _expand(node[key], path, env)
            except _MissingVar as missing:
                line = node.lc.key(key)[0] + 1
                raise ConfigError(
                    f"environment variable {missing.name} is not set",
                    location=f"{path}:{line}",
                    key=str(key),
                ) from None
        return node
    if isinstance(node, CommentedSeq):
        for i, item in enumerate(node):
            node[i] = _expand(item, path, env)
        return node
    if isinstance(node, str):

        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                raise _MissingVar(name)
            return env[name]

        return _ENV_REF.sub(sub, node)
    return node


class _MissingVar(Exception):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def line_of(root: Any, loc: Sequence[int | str]) -> int | None:
    """Line (1-based) of the deepest key in ``loc`` that exists in the parsed document."""
    node = root
    line: int | None = None
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    return line


def validate_model(model: type[M], data: Any, path: Path) -> M:
    """Validate ``data`` into ``model``; the first error names file, line and key."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = list(err["loc"])
        line = line_of(data, loc)
        where = f"{path}:{line}" if line else str(path)
        key = ".".join(str(p) for p in loc) or None
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise ConfigError(f"{err['msg']}{more}", location=where, key=key) from None
