"""The shape of the package, checked with the standard library only: every module imports, no
import cycles, ``lrpcli.core`` imports nothing of ours outside it, the stage arrows run one way,
no module-private name is imported across modules, and long files say why they are long."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "lrpcli"
#: each stage may import the stages listed (and itself); the root package's public names and
#: the helpers that import nothing of ours are open to all
ALLOWED = {
    "core": {"core"},
    "io": {"io"},
    "models": {"models", "io", "core"},
    "config": {"config", "models", "io", "core"},
    "run": {"run", "config", "models", "io", "core"},
    "evaluation": {"evaluation", "run", "config", "models", "io", "core"},
    "tuning": {"tuning", "evaluation", "run", "config", "models", "io", "core"},
    "audit": {"audit", "run", "config", "models", "io", "core"},
    "cli": {"cli", "tuning", "evaluation", "audit", "run", "config", "models", "io", "core"},
}
SHARED = {"lrpcli", "lrpcli.hints", "lrpcli.lazy"}
MAX_LINES = 450


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> list[tuple[str, list[str], bool]]:
    """``(imported module, names taken from it, only for type checking)`` for every import of ours."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only.update(id(n) for n in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [a.name for a in node.names]
            if base.startswith("lrpcli"):
                # ``from lrpcli.cli import explain`` imports a submodule, not a name
                subs = [n for n in names if f"{base}.{n}" in MODULES]
                if subs:
                    found += [(f"{base}.{n}", [], id(node) in typing_only) for n in subs]
                    names = [n for n in names if n not in subs]
                if names:
                    found.append((base, names, id(node) in typing_only))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("lrpcli"):
                    found.append((alias.name, [], id(node) in typing_only))
    return found


def stage(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports(name: str) -> None:
    importlib.import_module(name)


def test_no_import_cycles() -> None:
    graph = {
        name: {target for target, _, typing in imports_of(name) if not typing and target in MODULES and target != name}
        for name in MODULES
    }
    # a package's __init__ importing its own submodules is how packages work, not a cycle
    for name, targets in graph.items():
        if MODULES[name].name == "__init__.py":
            graph[name] = {t for t in targets if not t.startswith(name + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles: " + "; ".join(" → ".join(c) for c in cycles)


def test_core_imports_nothing_of_ours_outside_core() -> None:
    bad = [
        f"{name} imports {target}"
        for name in MODULES
        if name.startswith("lrpcli.core")
        for target, _, _ in imports_of(name)
        if not target.startswith("lrpcli.core")
    ]
    assert not bad, bad


def test_stages_import_only_downstream() -> None:
    bad = []
    for name in MODULES:
        mine = stage(name)
        if mine is None:
            continue
        for target, _, _ in imports_of(name):
            theirs = stage(target)
            if target in SHARED or theirs in ALLOWED[mine]:
                continue
            bad.append(f"{name} ({mine}) imports {target} ({theirs or 'root'})")
    assert not bad, bad


def test_no_private_names_imported_across_modules() -> None:
    bad = [
        f"{name} imports {target}.{n}"
        for name in MODULES
        for target, names, _ in imports_of(name)
        for n in names
        if n.startswith("_") and not n.startswith("__")
    ]
    assert not bad, bad


def test_long_files_say_why() -> None:
    """A module over ~450 lines explains its length in its opening docstring ("Long because ...")."""
    bad = []
    for name, path in MODULES.items():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        if lines > MAX_LINES and "Long because" not in doc:
            bad.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert not bad, bad


def test_the_checks_see_what_they_check() -> None:
    """The walkers above find real imports (a check that finds nothing cannot fail)."""
    engine = {target for target, _, _ in imports_of("lrpcli.core.engine")}
    assert {"lrpcli.core.canonize", "lrpcli.core.rules", "lrpcli.core.program"} <= engine
    pipeline = {target for target, _, _ in imports_of("lrpcli.run.pipeline")}
    assert "lrpcli.io.decode" in pipeline and "lrpcli.run.entries" in pipeline
    assert len(MODULES) > 40
