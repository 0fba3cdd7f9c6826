"""Storage is bytes by key: it imports nothing of the layers that give keys a meaning."""

from __future__ import annotations

import ast
from pathlib import Path

import mediahub.storage

# What storage may build on; everything else in mediahub (entities, db, media, api, ...) is above it.
ALLOWED = ("mediahub.storage", "mediahub.errors", "mediahub.config")


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_storage_imports_nothing_above_it() -> None:
    package = Path(mediahub.storage.__file__).parent
    sources = sorted(package.glob("*.py"))

    above = {
        f"{path.name}: {name}"
        for path in sources
        for name in _imported_modules(path)
        if name.split(".")[0] == "mediahub" and not any(name == a or name.startswith(a + ".") for a in ALLOWED)
    }

    assert sources and above == set()
