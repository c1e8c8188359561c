"""Reply schemas to Python types and shapers, for ``tools/gen_commands.py``.

A reply schema (JSON Schema, RESP3-typed) becomes a :class:`Shape`: the
Python type a helper returns, and an expression over the shapers of
``triopipe/_commands/_shapes.py`` that turns the RESP2 or RESP3 reply into
that type (None where both protocols already give it).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import command_rules as rules
from command_specs import Spec

# -- Helpers: reply shapes --------------------------------------------------------------------

STR = "bytes | str"


@dataclasses.dataclass
class Shape:
    """A reply's Python type and the shaper making RESP2 and RESP3 replies that type."""

    pytype: str
    shaper: str | None  # an expression over the names of triopipe._commands._shapes

    @property
    def needs_shaper(self) -> bool:
        return self.shaper is not None


ANY = Shape("Any", None)
NONE = Shape("None", None)


def _union(types: Iterable[str]) -> str:
    seen: list[str] = []
    for text in types:
        for part in _split_union(text):
            if part not in seen:
                seen.append(part)
    if "Any" in seen:
        return "Any"
    if "None" in seen:
        seen.remove("None")
        seen.append("None")
    return " | ".join(seen)


def _split_union(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(text[start:index].strip())
            start = index + 1
    parts.append(text[start:].strip())
    # "bytes | str" stays one unit for readability of the result.
    merged: list[str] = []
    for part in parts:
        if part == "str" and merged and merged[-1] == "bytes":
            merged[-1] = STR
        else:
            merged.append(part)
    return merged


class ShapeCompiler:
    """Compiles a reply schema (JSON Schema, RESP3-typed) into a :class:`Shape`."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec

    def compile(self, schema: Any, *, top: bool = True) -> Shape:
        if not isinstance(schema, dict) or not schema:
            return ANY
        for combinator in ("oneOf", "anyOf"):
            if combinator in schema:
                return self._alternatives(schema[combinator], top=top)
        if "const" in schema:
            value = schema["const"]
            if isinstance(value, int):
                return Shape("int", None)
            if value == "OK" and top:
                return Shape("bool", "is_ok")
            return Shape(STR, None)
        kind = schema.get("type")
        if kind == "string":
            if top and self.spec.key in rules.NUMBER_STRINGS:
                return Shape("float", "to_number")
            return Shape(STR, None)
        if kind == "integer":
            return Shape("int", None)
        if kind == "number":
            return Shape("float", "to_number")
        if kind == "null":
            return NONE
        if kind == "boolean":
            return Shape("bool", "to_bool")
        if kind == "array":
            return self._array(schema, top=top)
        if kind == "object":
            return self._object(schema)
        return ANY

    def alternatives(self, schema: Any) -> list[Any]:
        for combinator in ("oneOf", "anyOf"):
            if isinstance(schema, dict) and combinator in schema:
                return list(schema[combinator])
        return [schema]

    def _alternatives(self, options: list[Any], *, top: bool) -> Shape:
        consts = [o.get("const") for o in options if isinstance(o, dict) and "const" in o]
        if len(consts) == len(options) and set(consts) <= {0, 1} and len(set(consts)) == 2:
            return Shape("bool", "to_bool")
        nulls = [o for o in options if isinstance(o, dict) and o.get("type") == "null"]
        others = [o for o in options if o not in nulls]
        ok_only = all(isinstance(o, dict) and o.get("const") == "OK" for o in others)
        if nulls and others and ok_only and top:
            return Shape("bool", "is_ok")
        shapes = [self.compile(o, top=False) for o in others]
        pytype = _union([s.pytype for s in shapes] + (["None"] if nulls else []))
        shapers = {s.shaper for s in shapes}
        if shapers == {None}:
            return Shape(pytype, None)
        if len(shapes) == 1:
            return Shape(pytype, f"optional({shapes[0].shaper})" if nulls else shapes[0].shaper)
        raise NeedsVariants(
            f"{self.spec.key}: a reply of several shapes needing a shaper "
            f"({', '.join(s.pytype for s in shapes)}): add it to VARIANTS"
        )

    def _array(self, schema: dict[str, Any], *, top: bool) -> Shape:
        items = schema.get("items", schema.get("prefixItems"))
        if isinstance(items, list):
            low, high = schema.get("minItems"), schema.get("maxItems")
            if low == high == len(items) or (low is None and high is None):
                return self._tuple(items)
            # CLUSTER SLOTS: a start, an end, then node after node.
            shapes = [self.compile(i, top=False) for i in items]
            extra = schema.get("additionalItems")
            rest = self.compile(extra, top=False) if isinstance(extra, dict) else ANY
            if all(s.shaper is None for s in [*shapes, rest]):
                return Shape("list[Any]", None)
            head = ", ".join(str(s.shaper) for s in shapes)
            return Shape("list[Any]", f"prefix_items([{head}], {rest.shaper})")
        item = self.compile(items, top=False) if items is not None else ANY
        if self._is_pair(items):
            first, second = (self.compile(i, top=False) for i in items["items"])
            if (
                self.spec.group == "stream"
                and first.pytype == STR
                and second.pytype.startswith("list[")
            ):
                item = self._entry(items)
            else:
                item = Shape(
                    f"tuple[{first.pytype}, {second.pytype}]",
                    f"pair({first.shaper}, {second.shaper})",
                )
                shaper = f"pairs_of({first.shaper}, {second.shaper})"
                return Shape(f"list[{item.pytype}]", shaper)
        if top and self.spec.key in rules.SET_REPLIES:
            return Shape(
                f"set[{item.pytype}]",
                "to_set" if item.shaper is None else f"set_of({item.shaper})",
            )
        if item.shaper is None:
            return Shape(f"list[{item.pytype}]", None)
        return Shape(f"list[{item.pytype}]", f"list_of({item.shaper})")

    @staticmethod
    def _is_pair(items: Any) -> bool:
        return (
            isinstance(items, dict)
            and items.get("type") == "array"
            and isinstance(items.get("items"), list)
            and len(items["items"]) == 2
            and items.get("minItems") == items.get("maxItems") == 2
        )

    def _entry(self, schema: dict[str, Any]) -> Shape:
        fields = schema["items"][1]
        nullable = any(
            isinstance(o, dict) and o.get("type") == "null" for o in self.alternatives(fields)
        )
        mapping = f"dict[{STR}, {STR}]"
        return Shape(f"tuple[{STR}, {mapping}{' | None' if nullable else ''}]", "entry")

    def _tuple(self, items: list[Any]) -> Shape:
        if (
            self.spec.group == "stream"
            and len(items) == 2
            and items[0].get("type") == "string"
            and "array" in json.dumps(items[1])
        ):
            return self._entry({"items": items})
        shapes = [self.compile(i, top=False) for i in items]
        pytype = f"tuple[{', '.join(s.pytype for s in shapes)}]"
        return Shape(pytype, f"tuple_of({', '.join(str(s.shaper) for s in shapes)})")

    def _object(self, schema: dict[str, Any]) -> Shape:
        properties = schema.get("properties")
        if properties:
            shapes = {name: self.compile(value, top=False) for name, value in properties.items()}
            shaped = {name: s.shaper for name, s in shapes.items() if s.shaper is not None}
            patterns = {
                pattern: self.compile(value, top=False)
                for pattern, value in schema.get("patternProperties", {}).items()
            }
            values = _union(s.pytype for s in [*shapes.values(), *patterns.values()])
            pattern_shapers = {p: s.shaper for p, s in patterns.items() if s.shaper is not None}
            if pattern_shapers:
                inner = ", ".join(f"{n!r}: {sh}" for n, sh in sorted(shaped.items()))
                extra = ", ".join(f"{p!r}: {sh}" for p, sh in sorted(pattern_shapers.items()))
                return Shape(f"dict[{STR}, Any]", f"fields_of({{{inner}}}, {{{extra}}})")
            pytype = (
                f"dict[{STR}, Any]"
                if " | " in values or values == "Any"
                else (f"dict[{STR}, {values}]")
            )
            if not shaped:
                return Shape(pytype, "to_dict")
            inner = ", ".join(f"{name!r}: {shaper}" for name, shaper in sorted(shaped.items()))
            return Shape(pytype, f"fields_of({{{inner}}})")
        value_schema = schema.get("additionalProperties")
        if not isinstance(value_schema, dict):
            patterns = schema.get("patternProperties")
            value_schema = next(iter(patterns.values())) if patterns else None
        value = self.compile(value_schema, top=False) if value_schema else ANY
        if value.shaper is None:
            return Shape(f"dict[{STR}, {value.pytype}]", "to_dict")
        return Shape(f"dict[{STR}, {value.pytype}]", f"dict_of({value.shaper})")


class NeedsVariants(Exception):
    """A reply schema the compiler cannot shape without knowing the arguments."""
