"""Architecture rules checked on the source tree itself."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mediahub"

# Modules (relative to src/mediahub) still holding SQL outside db/ while another change to them is
# under way; each entry must still break the rule, and the list is to be emptied, not grown.
KNOWN = {
    "media/files.py",  # its selects move with the rewrite of that file
}


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
    unexpected = {module: imports for module, imports in offenders.items() if module not in KNOWN}
    assert not unexpected, f"SQL outside mediahub/db (move it into a repository): {unexpected}"
    assert not KNOWN - set(offenders), f"no SQL left here any more: remove from KNOWN {sorted(KNOWN - set(offenders))}"
