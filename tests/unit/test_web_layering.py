"""The layering of the web package and the homes of kinds of knowledge: no import cycles
inside ``rhizome.web`` (function-level imports included), the API split by resource, no
SQL and no dialect branches outside the stores, job labels and icons from the registry
only, accepted file types in the pipeline layer."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import rhizome
from rhizome.handlers import load_builtin_handlers
from rhizome.jobs.registry import Registry, Stage
from rhizome.web import display

SRC = Path(rhizome.__file__).parent
WEB = SRC / "web"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(package: Path) -> dict[str, Path]:
    return {_module_name(p): p for p in package.rglob("*.py")}


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``path`` imports, anywhere in the file."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_the_web_package_has_no_import_cycles() -> None:
    modules = _modules(WEB)
    known = set(modules)
    graph = {name: _imports(path, name, known) for name, path in modules.items()}
    # the package itself re-exports create_app; its submodules never import it
    graph.pop("rhizome.web", None)
    for deps in graph.values():
        deps.discard("rhizome.web")
    assert graph["rhizome.web.pages"] >= {"rhizome.web.rendering"}  # the scan works
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_services_rendering_and_api_by_resource_have_their_own_modules() -> None:
    for name in (
        "api/jobs.py",
        "api/admin.py",
        "api/documents.py",
        "api/queue.py",
        "services/jobs.py",
        "services/documents.py",
        "rendering.py",
        "display.py",
    ):
        assert (WEB / name).is_file(), name
    assert not (WEB / "api.py").exists() and not (WEB / "queries.py").exists()


def test_no_dialect_branches_or_sql_outside_the_stores() -> None:
    store = SRC / "jobs" / "store"
    for path in SRC.rglob("*.py"):
        if store in path.parents:
            continue
        text = path.read_text("utf-8")
        assert "dialect ==" not in text, path
        assert "dialect !=" not in text, path
    sql = re.compile(r"\b(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM)\b")
    for path in [*WEB.rglob("*.py"), SRC / "jobs" / "events.py"]:
        text = path.read_text("utf-8")
        assert not sql.search(text), path
        assert ".session(" not in text and ".transaction(" not in text, path


def test_labels_and_icons_come_from_the_registry_only() -> None:
    assert not hasattr(display, "KNOWN_TYPES")
    registry = load_builtin_handlers()
    for jt in registry.all():
        shown = display.type_display(registry, jt.name)
        assert (shown.label, shown.icon, shown.registered) == (jt.label, jt.icon, True)
        assert jt.icon in display.ICONS, f"no drawing for the icon {jt.icon!r} of {jt.name}"
    assert [t.name for t in display.all_types(registry, include_hidden=True)] == registry.names()
    other = display.type_display(registry, "legacy_import")  # not registered here
    assert (other.label, other.icon, other.registered) == ("Legacy import", "box", False)

    mine = Registry()

    @mine.job_type("count", label="Counting", icon="hash", stages=[Stage("count", "Count", 0, 100)])
    def count(ctx: object, data: object) -> None:
        return None

    shown = display.type_display(mine, "count")
    assert (shown.label, shown.icon) == ("Counting", "hash")  # a type from a user's module
    assert "<svg" in display.icon("hash")  # no drawing: a plain box, never an error


def test_the_pipeline_holds_the_file_type_table_and_imports_no_upper_layer() -> None:
    path = SRC / "pipeline" / "filetypes.py"
    text = path.read_text("utf-8")
    assert not re.search(r"^\s*(from|import) rhizome\.(library|jobs|web)", text, re.M)
    for other in (SRC / "library" / "ingest.py", SRC / "pipeline" / "extract" / "detect.py"):
        source = other.read_text("utf-8")
        assert '".pdf"' not in source and '"application/pdf"' not in source, other
    for path in WEB.rglob("*.py"):
        assert '".pdf"' not in path.read_text("utf-8"), path
