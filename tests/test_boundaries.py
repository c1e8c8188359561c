"""The package's internal boundaries, checked from its source.

Each object keeps its underscore names to itself: no module of the package
reads or writes another object's ``_name`` (``self._x`` and ``cls._x`` only,
and ``super()._x``). Two kinds of names are allowed on other objects because
they are protocols, not privacy:

- ``_dispatch``: the hook of the typed-helper mixin (``triopipe._commands``):
  every facade implements it and the ``command`` descriptor calls it;
- the documented methods of ``collections.namedtuple`` (``_replace``...).

One module reads another library's internals, on purpose and nowhere else:
``_backend``'s per-command cancellation check on asyncio reads anyio's cancel
scopes directly (a third of anyio's cost), guarded by a fallback and by
``tests/core/test_backend.py``.

A facade that needs something from another offers a method for it instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

import triopipe

PACKAGE = Path(triopipe.__file__).parent
PROTOCOL_NAMES = frozenset({"_dispatch", "_replace", "_asdict", "_fields", "_make"})
LIBRARY_INTERNALS = {
    "triopipe/_backend.py": frozenset(
        {"_current_tasks", "_cancel_called", "_shield", "_parent_scope"}
    )
}


def _reaches(source: str, name: str) -> list[str]:
    """Every ``owner._name`` in ``source`` whose owner is another object."""
    found = []
    for node in ast.walk(ast.parse(source, filename=name)):
        if not isinstance(node, ast.Attribute):
            continue
        attribute = node.attr
        if (
            not attribute.startswith("_")
            or attribute.startswith("__")
            or attribute in PROTOCOL_NAMES
        ):
            continue
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
            continue
        if (
            isinstance(owner, ast.Call)
            and isinstance(owner.func, ast.Name)
            and owner.func.id == "super"
        ):
            continue
        found.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_reaches_into_another_objects_underscore_names() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 20
    reaches = []
    for module in modules:
        name = str(module.relative_to(PACKAGE.parent))
        allowed = LIBRARY_INTERNALS.get(name, frozenset())
        reaches += [
            reach
            for reach in _reaches(module.read_text(encoding="utf-8"), name)
            if reach.rpartition(".")[2] not in allowed
        ]
    assert reaches == []


def test_the_checker_tells_a_reach_from_an_objects_own_names() -> None:
    source = (
        "class A(B):\n"
        "    def f(self, other):\n"
        "        self._mine = super()._theirs\n"
        "        return other._secret, self._other._deep, point._replace(x=1)\n"
    )
    assert _reaches(source, "probe.py") == [
        "probe.py:4: other._secret",
        "probe.py:4: self._other._deep",
    ]
