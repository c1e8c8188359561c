"""The sans-io layer must not import anything that does I/O or knows about time.

That is the RESP package and a link's pipeline state (``triopipe/_pipeline.py``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import triopipe._pipeline
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
# The source file, also in the compiled build (where __file__ is the extension).
SANS_IO_MODULES = [Path(triopipe._pipeline.__file__).with_name("_pipeline.py")]


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


def forbidden_imports(path: Path) -> set[str]:
    """The top-level modules ``path`` imports that the sans-io layer may not."""
    roots = {name.partition(".")[0] for name in imported_modules(path)}
    return roots & (FORBIDDEN | {"<dynamic import>", "importlib"})


def sans_io_files() -> list[Path]:
    return sorted(PACKAGE.glob("*.py")) + SANS_IO_MODULES


def test_package_found() -> None:
    assert len(list(PACKAGE.glob("*.py"))) >= 3
    assert all(path.is_file() for path in SANS_IO_MODULES)


@pytest.mark.parametrize("path", sans_io_files(), ids=lambda path: path.name)
def test_no_io_imports(path: Path) -> None:
    assert not forbidden_imports(path), path.name


@pytest.mark.parametrize(
    "source",
    [
        "import socket",
        "import anyio.abc",
        "from time import monotonic",
        "import threading as t",
        "__import__('ssl')",
        "import importlib",
    ],
)
def test_the_check_sees_forbidden_imports(tmp_path: Path, source: str) -> None:
    """The check is not vacuous: each form of import it looks for is found."""
    path = tmp_path / "module.py"
    path.write_text(f"from __future__ import annotations\n{source}\n", encoding="utf-8")
    assert forbidden_imports(path)
