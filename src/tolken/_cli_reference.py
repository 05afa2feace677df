"""Generate the CLI reference section of README.md from the typer app itself.

``python -m tolken._cli_reference README.md`` rewrites the text between the
markers; ``render()`` is what the docs test compares against.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer.main

from tolken.cli import app

START = "<!-- cli-reference:start -->"
END = "<!-- cli-reference:end -->"


# typer vendors its own click, so the command tree is walked by duck typing.
def _commands(group: Any, prefix: str) -> list[tuple[str, Any]]:
    ctx = group.context_class(group)
    out: list[tuple[str, Any]] = []
    for name in sorted(group.list_commands(ctx)):
        cmd = group.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            continue
        full = f"{prefix} {name}"
        out.append((full, cmd))
        if hasattr(cmd, "list_commands"):
            out.extend(_commands(cmd, full))
    return out


def _option_line(param: Any) -> str:
    if param.param_type_name == "argument":
        # typer's TyperArgument has no human_readable_name; it keeps the help text itself.
        label = (param.metavar or param.name or "").upper()
        help_text = (getattr(param, "help", None) or "").strip()
        return f"- `{label}` (argument): {help_text}".rstrip(": ")
    names = ", ".join(f"`{n}`" for n in [*param.opts, *param.secondary_opts])
    help_text = (param.help or "").strip()
    default = ""
    if param.show_default and param.default not in (None, False, ""):
        default = f" (default: `{param.default}`)"
    return f"- {names}: {help_text}{default}".rstrip(": ")


def render() -> str:
    """The Markdown CLI reference for the current app."""
    root = typer.main.get_command(app)
    lines = [START, ""]
    for full, cmd in _commands(root, "tolken"):
        lines.append(f"### `{full}`")
        lines.append("")
        lines.append((cmd.help or "").strip().split("\n\n")[0].replace("\n", " "))
        params = [p for p in cmd.params if not getattr(p, "hidden", False)]
        params = [p for p in params if p.name != "help"]
        if params:
            lines.append("")
            lines.extend(_option_line(p) for p in params)
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def update(readme: Path) -> bool:
    """Rewrite the reference in ``readme``; True when the file changed."""
    text = readme.read_text(encoding="utf-8")
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    new = head + render() + tail
    if new != text:
        readme.write_text(new, encoding="utf-8")
        return True
    return False


if __name__ == "__main__":
    changed = update(Path(sys.argv[1] if len(sys.argv) > 1 else "README.md"))
    print("README.md updated" if changed else "README.md already current")
