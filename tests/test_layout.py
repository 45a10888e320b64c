"""How the packages depend on each other."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (lazy imports in functions included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_the_receiver_never_imports_the_worker() -> None:
    found = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / "receiver").rglob("*.py")
        for name in imported(path)
        if name == "worker" or name.startswith("worker.")
    }
    assert found == set()


def test_storage_never_imports_the_receiver_or_the_worker() -> None:
    found = set()
    for path in (ROOT / "afterimage" / "storage").rglob("*.py"):
        for name in imported(path):
            if name.split(".")[0] in ("worker", "receiver"):
                found.add(f"{path.relative_to(ROOT)}: {name}")
    assert found == set()
