"""The README and docs/ document every CLI command and config key, and stay true to the code."""

import ast
import re
import textwrap
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer.main
from pydantic import BaseModel
from ruamel.yaml import YAML

from docstext import DOCS, README, ROOT, code_spans, fenced, section
from tolken import _cli_reference, errors
from tolken.cli import app
from tolken.config import (
    FleetConfig,
    FleetPMSSettings,
    FleetSettings,
    FlowSettings,
    PMSSettings,
    PowerOfficeSettings,
    RestAuth,
    RestBody,
    RestChanges,
    RestEndpoint,
    RestErrors,
    RestIdempotency,
    RestIdentity,
    RestPaging,
    RestResource,
    RestResources,
    RestSettings,
    ServeSettings,
    SyncSettings,
    TolkenConfig,
    load_config,
    load_fleet_config,
)
from tolken.conformance import RULES
from tolken.mapping import Flow, Mapping, MergeRule, Property
from tolken.mapping.normalisers import NORMALISERS
from tolken.mapping.transforms import BUILTIN_TRANSFORMS
from tolken.store import open_store
from tolken.web import Metrics, pages

ARCHITECTURE = DOCS["architecture.md"]
CONTRACT = DOCS["pms-contract.md"]

# Fenced blocks of shell commands; a block without a language counts as one too.
SHELL_LANGUAGES = {"", "sh", "shell", "bash", "console"}


def _commands() -> set[str]:
    root: Any = typer.main.get_command(app)
    return set(root.list_commands(root.context_class(root)))


def _code(text: str) -> list[str]:
    """Inline code spans and shell blocks: where a ``tolken COMMAND`` is meant literally."""
    return code_spans(text) + [body for lang, body in fenced(text) if lang in SHELL_LANGUAGES]


def test_cli_reference_is_current() -> None:
    """The README's CLI reference equals what the CLI renders (run `make docs-cli`)."""
    start = README.index(_cli_reference.START)
    end = README.index(_cli_reference.END) + len(_cli_reference.END)
    assert README[start:end] == _cli_reference.render()


def test_every_config_key_is_in_the_readme() -> None:
    """Each tolken.yaml key appears in the README's configuration example."""
    models: list[type[BaseModel]] = [TolkenConfig, PowerOfficeSettings, PMSSettings]
    models += [SyncSettings, FlowSettings]
    models.append(ServeSettings)
    models += [FleetConfig, FleetPMSSettings, FleetSettings]
    models += [RestSettings, RestAuth, RestResources, RestResource, RestEndpoint, RestBody]
    models += [RestIdentity, RestPaging, RestChanges, RestIdempotency, RestErrors]
    for model in models:
        for key in model.model_fields:
            assert f"{key}:" in README, f"{model.__name__}.{key} is not documented"


def test_every_command_is_introduced_outside_the_generated_reference() -> None:
    """Each CLI command is named in the README's own text, not only in the generated reference."""
    start = README.index(_cli_reference.START)
    end = README.index(_cli_reference.END)
    prose = README[:start] + README[end:]
    commands = _commands()
    assert {"sync", "demo", "check-pms"} <= commands
    missing = sorted(c for c in commands if f"tolken {c}" not in prose)
    assert not missing, f"commands the README never introduces: {missing}"


def test_docs_linked_from_the_readme_exist_and_every_doc_is_linked() -> None:
    """Every docs/*.md the README names exists, and every page in docs/ is reachable from it."""
    named = set(re.findall(r"docs/([\w.-]+\.md)", README))
    assert named, "the README links no docs"
    assert not sorted(n for n in named if not (ROOT / "docs" / n).is_file())
    assert set(DOCS) <= named, f"pages not linked from the README: {sorted(set(DOCS) - named)}"


def test_relative_links_between_docs_resolve() -> None:
    """A Markdown link from one docs page to another points at a file that exists."""
    for name, text in DOCS.items():
        for target in re.findall(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)", text):
            assert (ROOT / "docs" / target).exists(), f"{name} links to missing {target}"


def test_every_tolken_command_in_readme_and_docs_is_real() -> None:
    """Each `tolken COMMAND` written in the README or docs/ is a command the CLI has."""
    commands = _commands()
    found: dict[str, str] = {}
    for name, text in {"README.md": README, **DOCS}.items():
        for code in _code(text):
            for command in re.findall(r"(?:^|[\s/(])tolken ([a-z][\w-]*)", code, re.M):
                found.setdefault(command, name)
    assert {"sync", "serve", "check-pms"} <= set(found)
    unknown = {command: where for command, where in found.items() if command not in commands}
    assert not unknown, f"not a tolken command: {unknown}"


def test_error_tree_in_architecture_matches_errors_module() -> None:
    """docs/architecture.md draws the same error tree as the errors.py docstring."""
    doc = errors.__doc__ or ""
    after = doc.split("::\n", 1)[1].strip("\n")
    block = after.split("\n\n", 1)[0]  # the indented literal block ends at a blank line
    tree = textwrap.dedent(block).strip()
    assert tree.startswith("TolkenError")
    assert "StaleVersion" in tree
    drawn = [body.strip() for _, body in fenced(section(ARCHITECTURE, "## Errors"))]
    assert tree in drawn


def test_architecture_names_real_files_and_functions() -> None:
    """The files, functions and classes docs/architecture.md names exist in the code."""
    sources = [p for d in ("src", "tests", "bench") for p in (ROOT / d).rglob("*") if p.is_file()]
    files = {p.name for p in sources}
    code = "\n".join(p.read_text(encoding="utf-8") for p in sources if p.suffix == ".py")
    defined = set(re.findall(r"^\s*(?:def|class)\s+(\w+)", code, re.M))
    defined |= set(re.findall(r"^\s*(\w+)\s*(?::[^=\n]+)?=", code, re.M))
    defined |= set(re.findall(r'__tablename__ = "(\w+)"', code))
    outside = {"ExternalImportReference", "SecretStr"}  # PowerOffice's and pydantic's names
    wrong = []
    for span in code_spans(ARCHITECTURE):
        if re.fullmatch(r"[\w/]+\.py", span):
            if span.rsplit("/", 1)[-1] not in files:
                wrong.append(span)
            continue
        match = re.fullmatch(r"(?:[a-z_]+\.)*([A-Za-z_]\w*)(\(.*\))?", span)
        if match is None:
            continue
        name, called = match.groups()
        looks_like_code = (
            called is not None
            or ("_" in name.strip("_") and not name.isupper())
            or re.fullmatch(r"[A-Z][a-z]+[A-Z]\w*", name) is not None
        )
        if looks_like_code and name not in defined and name not in outside:
            wrong.append(span)
    assert not wrong, f"docs/architecture.md names what the code does not have: {wrong}"


# -- examples and tables that mirror the code ----------------------------------------


def test_readme_configuration_example_is_a_valid_config(tmp_path: Path) -> None:
    """The README's tolken.yaml example loads as it stands once its ${VAR}s are set."""
    part = section(README, "## Configuration")
    yaml = next(body for lang, body in fenced(part) if lang == "yaml")
    path = tmp_path / "tolken.yaml"
    path.write_text(yaml, encoding="utf-8")
    names = set(re.findall(r"\$\{(\w+)\}", yaml))
    config = load_config(path, environ={name: f"value-of-{name}" for name in names})
    assert config.sync.policy_for("projects") == "poweroffice-wins"
    assert config.serve is not None
    assert config.serve.public_url == "http://127.0.0.1:8470"


def test_readme_fleet_example_is_a_valid_fleet_config(tmp_path: Path) -> None:
    """The README's fleet-mode tolken.yaml example loads as a fleet config."""
    part = section(README, "### Fleet mode")
    yaml = next(body for lang, body in fenced(part) if lang == "yaml")
    path = tmp_path / "tolken.yaml"
    path.write_text(yaml, encoding="utf-8")
    names = set(re.findall(r"\$\{(\w+)\}", yaml))
    environ = {name: f"value-of-{name}-long-enough-for-a-passphrase" for name in names}
    config = load_fleet_config(path, environ=environ)
    assert config.fleet.concurrency == 4
    assert config.poweroffice.requests_per_second == 10


def test_readme_mapping_example_is_a_valid_flow() -> None:
    """The customers flow in the README's mapping example validates against the mapping models."""
    part = section(README, "## Mapping")
    yaml = next(body for lang, body in fenced(part) if lang == "yaml")
    data = YAML(typ="safe").load(yaml)
    flow = Flow.model_validate(data["flows"]["customers"])
    assert [rule.normalise for rule in flow.merge_rules] == ["digits", "casefold"]


def test_check_pms_rules_in_the_contract_match_the_registry() -> None:
    """docs/pms-contract.md lists every check-pms rule, in the order they run."""
    table = section(CONTRACT, "## `tolken check-pms`")
    listed = re.findall(r"^\| `([\w-]+)` \|", table, re.M)
    assert listed == list(RULES)


def test_operations_metrics_table_matches_the_exported_metrics(tmp_path: Path) -> None:
    """docs/operations.md describes exactly the metrics /metrics exports."""
    store = open_store(f"sqlite:///{tmp_path / 'tolken.db'}")
    try:
        text = Metrics(store.for_tenant("default")).render().decode("utf-8")
    finally:
        store.close()
    exported = set(re.findall(r"^# TYPE (\w+)", text, re.M))
    exported = {name for name in exported if not name.endswith("_created")}  # client defaults
    table = section(DOCS["operations.md"], "## Health and metrics")
    documented = set(re.findall(r"^\| `(tolken_\w+)` \|", table, re.M))
    assert "tolken_links" in exported
    assert documented == exported


def test_architecture_has_a_section_per_package() -> None:
    """docs/architecture.md has a section for each package and top-level module of tolken."""
    src = ROOT / "src" / "tolken"
    packages = {p.name for p in src.iterdir() if (p / "__init__.py").is_file()}
    packages = {name for name in packages if not name.startswith("_")}
    packages |= {"config", "errors", "compose"}
    sections = set(re.findall(r"^### `tolken\.(\w+)`", ARCHITECTURE, re.M))
    assert {"engine", "store", "connectors"} <= packages
    assert packages == sections


# What each part of tolken may import (besides itself and the root package), as the
# dependency drawing in docs/architecture.md says. The shells (cli, demo) may import anything;
# the composition root (compose) sits above the engine and only the shells and web import it.
ALLOWED_IMPORTS = {
    "vocabulary": set(),
    "errors": set(),
    "_closing": set(),
    "_redact": set(),
    "_rest_config": set(),
    "_yaml": {"vocabulary", "errors"},
    "config": {"vocabulary", "errors", "_yaml", "_redact", "_rest_config"},
    "mapping": {"vocabulary", "errors", "config", "_yaml"},
    "connectors": {"vocabulary", "errors", "config", "_closing", "_redact"},
    "store": {"vocabulary", "errors", "config", "_closing", "_redact"},
    "engine": {
        "vocabulary",
        "errors",
        "config",
        "logging",
        "mapping",
        "connectors",
        "store",
        "_closing",
    },
    "compose": {
        "vocabulary",
        "errors",
        "config",
        "mapping",
        "connectors",
        "store",
        "engine",
        "_closing",
    },
    "fleet": {
        "vocabulary",
        "errors",
        "config",
        "logging",
        "connectors",
        "store",
        "engine",
        "compose",
        "_signals",
        "_redact",
    },
    "conformance": {"vocabulary", "errors", "config", "mapping", "connectors", "_closing"},
    "sandbox": set(),
    "web": {
        "vocabulary",
        "errors",
        "config",
        "logging",
        "mapping",
        "connectors",
        "store",
        "engine",
        "compose",
        "fleet",
        "_signals",
    },
    "_commands": {
        "vocabulary",
        "errors",
        "config",
        "logging",
        "mapping",
        "connectors",
        "store",
        "engine",
        "compose",
        "fleet",
        "web",
        "conformance",
        "_signals",
        "_redact",
    },
    "_signals": set(),
}


def _imports(path: Path) -> Iterator[tuple[str, bool]]:
    """``(tolken part, at module level)`` for every ``tolken.*`` import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "tolken" and len(parts) > 1:
                yield parts[1], id(node) in top


def test_imports_follow_the_documented_direction() -> None:
    """Lower layers never import higher ones; only the demo and the CLI import the sandbox."""
    src = ROOT / "src" / "tolken"
    wrong = []
    for path in sorted(src.rglob("*.py")):
        part = path.relative_to(src).parts[0].removesuffix(".py")
        for target, module_level in _imports(path):
            if target == part:
                continue
            if part in ALLOWED_IMPORTS and target not in ALLOWED_IMPORTS[part]:
                wrong.append(f"{path.relative_to(src)} imports tolken.{target}")
            if part == "cli" and module_level and target in {"sandbox", "demo"}:
                wrong.append(f"cli.py imports tolken.{target} at module level")
    assert not wrong, wrong


def _is_tolken_module(name: str) -> bool:
    path = ROOT / "src" / Path(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imported_modules(path: Path) -> Iterator[str]:
    """The dotted name of every module ``path`` imports (``from m import sub`` gives ``m.sub``)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            subs = (f"{node.module}.{alias.name}" for alias in node.names)
            yield from (sub for sub in subs if _is_tolken_module(sub))


def test_the_engine_never_speaks_http() -> None:
    """No module of the engine imports httpx: the composition root hands it its connectors."""
    engine = ROOT / "src" / "tolken" / "engine"
    wrong = [
        str(path.relative_to(engine))
        for path in sorted(engine.rglob("*.py"))
        for name in _imported_modules(path)
        if name.split(".")[0] == "httpx"
    ]
    assert not wrong, f"engine modules importing httpx: {wrong}"


def test_no_package_imports_another_packages_private_modules() -> None:
    """A ``_private`` module is imported only from inside its own package; others use its API."""
    src = ROOT / "src"
    wrong = []
    for path in sorted((src / "tolken").rglob("*.py")):
        importer = ".".join(path.relative_to(src).with_suffix("").parts)
        for name in _imported_modules(path):
            parts = name.split(".")
            private = [i for i, part in enumerate(parts) if part.startswith("_")]
            private = [i for i in private if not parts[i].startswith("__")]
            if parts[0] != "tolken" or not private:
                continue
            owner = ".".join(parts[: private[0]])  # the package the private module belongs to
            if not importer.startswith(owner + "."):
                wrong.append(f"{importer} imports {name}")
    assert not wrong, wrong


def _sealed_packages() -> set[str]:
    """The sealed packages docs/architecture.md lists in its private-module rule."""
    rule = ARCHITECTURE.split("**Private modules.**", 1)[1].split("\n\n", 1)[0]
    listed = rule.split("the sealed packages are", 1)[1].split("(", 1)[0]
    return set(re.findall(r"`(tolken(?:\.\w+)*)`", listed))


def test_sealed_packages_keep_every_module_private() -> None:
    """Each package docs/architecture.md calls sealed has only ``_``-prefixed modules, and every
    package whose modules are all ``_``-prefixed is listed as sealed."""
    src = ROOT / "src"
    sealed = _sealed_packages()
    assert {"tolken.store", "tolken.connectors.pms"} <= sealed
    modules: dict[str, list[str]] = {}
    for path in sorted((src / "tolken").rglob("*.py")):
        if "migrations" in path.parts or path.name == "__init__.py":
            continue  # Alembic loads its scripts by path
        package = ".".join(path.relative_to(src).parent.parts)
        modules.setdefault(package, []).append(path.stem)
    public = {p: [m for m in names if not m.startswith("_")] for p, names in modules.items()}
    wrong = {p: names for p, names in public.items() if p in sealed and names}
    assert not wrong, f"public modules in sealed packages: {wrong}"
    unlisted = sorted(p for p, names in public.items() if not names and p not in sealed)
    assert not unlisted, f"all-private packages the docs do not call sealed: {unlisted}"
    assert sealed <= set(modules), f"sealed packages that do not exist: {sealed - set(modules)}"


def _module_graph(src: Path) -> dict[str, set[str]]:
    """``module -> tolken modules it imports``, every import counted (``TYPE_CHECKING`` too)."""
    modules = {}
    for path in src.rglob("*.py"):
        parts = list(path.relative_to(src.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                # ``from package import module`` imports the module; otherwise the package.
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (the modules in order, first repeated last), or None."""
    finished: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        path.append(node)
        for target in sorted(graph[node]):
            if target in path:
                return [*path[path.index(target) :], target]
            if target not in finished and (found := visit(target)):
                return found
        finished.add(path.pop())
        return None

    for start in sorted(graph):
        if start not in finished and (found := visit(start)):
            return found
    return None


def test_no_import_cycles() -> None:
    """No tolken module imports itself through others, even behind ``TYPE_CHECKING``."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    cycle = _cycle(_module_graph(ROOT / "src" / "tolken"))
    assert cycle is None, " -> ".join(cycle or [])


def test_architecture_names_every_engine_and_store_module() -> None:
    """Each module of the engine and the store is described in docs/architecture.md."""
    for package in ("engine", "store"):
        modules = (ROOT / "src" / "tolken" / package).glob("*.py")
        missing = [m.name for m in modules if m.name != "__init__.py"]
        missing = [name for name in missing if f"`{name}`" not in ARCHITECTURE]
        assert not missing, f"{package} modules not in docs/architecture.md: {missing}"


def test_operations_names_every_dashboard_route() -> None:
    """Each page, JSON twin and action of the dashboard is named in docs/operations.md."""
    operations = re.sub(r"\{\w+\}", "{id}", DOCS["operations.md"])
    routes = [route.path for route in pages.router.routes]  # type: ignore[attr-defined]
    routes += ["/api" + route.path for route in pages.api_router.routes]  # type: ignore[attr-defined]
    paths = {re.sub(r"\{\w+\}", "{id}", path) for path in routes}
    assert {"/", "/api/status", "/failures/{id}/retry"} <= paths
    named = {match.group(1) for match in re.finditer(r"`(?:POST )?(/[^`?\s]*)[`?]", operations)}
    missing = sorted(paths - named)
    assert not missing, f"routes docs/operations.md does not name: {missing}"


def test_readme_mapping_section_names_every_key_transform_normaliser_and_type() -> None:
    """The README's mapping section names each mapping key, transform, normaliser and PMS type."""
    part = section(README, "## Mapping")
    spans = set(code_spans(part))
    keys = {key for model in (Mapping, Flow, Property, MergeRule) for key in model.model_fields}
    missing = sorted(key for key in keys if f"{key}:" not in part)
    names = {
        *BUILTIN_TRANSFORMS,
        *NORMALISERS,
        *typing.get_args(Property.model_fields["type"].annotation),
    }
    missing += sorted(name for name in names if name not in spans)
    assert "reference" in names
    assert not missing, f"not in the README's mapping section: {missing}"
