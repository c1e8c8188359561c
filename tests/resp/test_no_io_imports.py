"""The sans-io layer must not import anything that does I/O or knows about time."""

from __future__ import annotations

import ast
from pathlib import Path

import triopipe._resp

FORBIDDEN = {
    "anyio",
    "trio",
    "asyncio",
    "socket",
    "ssl",
    "select",
    "selectors",
    "time",
    "threading",
}
PACKAGE = Path(triopipe._resp.__file__).parent


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__":
            names.add("<dynamic import>")
    return names


def test_package_found() -> None:
    assert len(list(PACKAGE.glob("*.py"))) >= 3


def test_no_io_imports() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        roots = {name.partition(".")[0] for name in imported_modules(path)}
        assert not roots & (FORBIDDEN | {"<dynamic import>"}), (path.name, roots & FORBIDDEN)
        assert "importlib" not in roots, path.name
