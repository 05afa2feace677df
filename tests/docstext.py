"""Reading the project's Markdown (README.md, docs/*.md) for the docs tests."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

__all__ = ["DOCS", "README", "ROOT", "code_spans", "fenced", "section", "without_fences"]

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = {
    path.name: path.read_text(encoding="utf-8") for path in sorted((ROOT / "docs").glob("*.md"))
}


def fenced(text: str) -> Iterator[tuple[str, str]]:
    """``(language, body)`` of each fenced code block."""
    for match in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.M | re.S):
        yield match.group(1), match.group(2)


def without_fences(text: str) -> str:
    """The text with its fenced code blocks removed."""
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def code_spans(text: str) -> list[str]:
    """The inline code spans outside fenced blocks."""
    return re.findall(r"`([^`\n]+)`", without_fences(text))


def section(text: str, heading: str) -> str:
    """From ``heading`` to the next level-2 heading (or the end)."""
    start = text.index(heading)
    following = re.search(r"^## ", text[start + len(heading) :], re.M)
    return text[start : start + len(heading) + following.start()] if following else text[start:]
