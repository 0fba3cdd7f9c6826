"""Architecture rules checked on the source tree itself.

The layers and the storage rule are import-linter contracts in pyproject.toml; a
cycle among modules is found here over the same import graph (grimp), including
imports made only for type hints; SQL outside db/ by an AST scan.
"""

from __future__ import annotations

import ast
from pathlib import Path

import grimp
import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "mediahub"

def _sql_imports(path: Path) -> list[str]:
    """The SQLAlchemy imports of one module that a module outside db/ may not have."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [f"import {alias.name}" for alias in node.names
                      if alias.name == "sqlalchemy" or alias.name.startswith("sqlalchemy.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            module = node.module
            if module != "sqlalchemy" and not module.startswith("sqlalchemy."):
                continue
            if module == "sqlalchemy.exc":
                continue  # errors to catch
            allowed = {"Session"} if module == "sqlalchemy.orm" else set()  # transactions and type hints
            found += [f"from {module} import {alias.name}" for alias in node.names if alias.name not in allowed]
    return found


def test_no_sql_outside_db():
    """SQL (statements, column expressions, clauses) is written in mediahub/db only: elsewhere a
    module may name a `Session` and catch `sqlalchemy.exc` errors, nothing more."""
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("db/"):
            continue
        imports = _sql_imports(path)
        if imports:
            offenders[relative] = imports
    assert not offenders, f"SQL outside mediahub/db (move it into a repository): {offenders}"



def test_import_contracts_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0, \
        "an import breaks a contract of [tool.importlinter] in pyproject.toml: see the report above"


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively: the groups of two or more modules that import each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(edges.get(successor, ())))))
                    advanced = True
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def test_the_cycle_finder_finds_cycles() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert strongly_connected(edges) == [["a", "b", "c"]]


def test_no_module_imports_itself_back() -> None:
    graph = grimp.build_graph("mediahub", cache_dir=None)
    edges = {module: set(graph.find_modules_directly_imported_by(module)) for module in graph.modules}
    assert strongly_connected(edges) == [], "modules that import each other, directly or around a loop"
