"""The optional compiled build (mypyc) holds what it claims.

The default run tests the pure-Python package: these tests skip there. The
``tests_compiled`` nox session builds the wheel with mypyc and sets
``TRIOPIPE_EXPECT_COMPILED=1``: then every module the build hook lists in
``pyproject.toml`` must be an extension module, and the rest of that session
runs the hot path's tests on it.
"""

from __future__ import annotations

import importlib
import os
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

# pyproject.toml is read with the standard library's TOML reader (3.11+).
tomllib = pytest.importorskip("tomllib")

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"

pytestmark = pytest.mark.skipif(
    os.environ.get("TRIOPIPE_EXPECT_COMPILED") != "1",
    reason="tests the compiled build: run by `nox -s tests_compiled`",
)


def compiled_modules() -> list[str]:
    """The modules the mypyc build hook compiles, as dotted names."""
    hook = tomllib.loads(PYPROJECT.read_text())["tool"]["hatch"]["build"]["targets"]["wheel"][
        "hooks"
    ]["mypyc"]
    return [path.strip("/").removesuffix(".py").replace("/", ".") for path in hook["include"]]


def test_the_hook_lists_modules() -> None:
    assert compiled_modules()


@pytest.mark.parametrize("name", compiled_modules() if PYPROJECT.exists() else [])
def test_each_listed_module_is_compiled(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__file__ is not None
    assert module.__file__.endswith(tuple(EXTENSION_SUFFIXES)), module.__file__
