"""Command arguments to Python parameters and the code that sends them.

Part of ``tools/gen_commands.py``: :class:`SignatureBuilder` walks a
command's argument tree (FORMAT.md) and makes positional parameters of
required values, keyword arguments of tokens and flags, mappings of
repeated pairs, and the groups of options the server takes one of.
"""

from __future__ import annotations

import dataclasses
import keyword
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import command_rules as rules
from command_shapes import STR
from command_specs import Spec, _q

# -- Helpers: signatures -------------------------------------------------------------------------


@dataclasses.dataclass
class Param:
    name: str
    annotation: str
    kind: str  # "positional", "optional", "varargs", "keyword"
    default: str | None = None
    doc: str = ""


@dataclasses.dataclass
class Group:
    """Options that must be given together, or at most (or exactly) one of."""

    names: list[str]
    rule: str  # "one_of", "exactly_one", "together", "needed_by"
    when: list[str] = dataclasses.field(default_factory=list)
    #: For one_of/exactly_one: the parameters of each alternative (a block
    #: alternative has several); by default one per name.
    alternatives: list[list[str]] = dataclasses.field(default_factory=list)


class Unsupported(Exception):
    """An argument structure the generator does not turn into a signature."""


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text))


def _identifier(text: str) -> str:
    name = re.sub(r"[^0-9a-zA-Z_]", "_", text.lower()).strip("_")
    if not name or name[0].isdigit():
        raise Unsupported(f"no Python name for {text!r}")
    return name


def _plural(name: str) -> str:
    if name.endswith("s"):
        return name
    if name.endswith("y") and not name.endswith("ey"):
        return name[:-1] + "ies"
    return name + "s"


_PY_TYPES = {
    "key": "Key",
    "string": "Arg",
    "pattern": STR,
    "integer": "int",
    "double": "float",
    "unix-time": "int",
}


class SignatureBuilder:
    """Turns a command's arguments into parameters and the code that sends them."""

    def __init__(self, spec: Spec, helper: str) -> None:
        self.spec = spec
        self.helper = helper
        self.params: list[Param] = []
        self.groups: list[Group] = []
        self.checks: list[str] = []
        self.renames = {**rules.RENAMES["*"], **rules.RENAMES.get(spec.key, {})}
        self.omit = rules.OMIT.get(spec.key, {})
        self.defaults = rules.DEFAULTS.get(spec.key, {})
        self.uses: set[str] = set()  # runtime helpers the code needs

    # The code is a list of steps; a step is ("static", [expr, ...]) or
    # ("code", [line, ...]) appending to ``parts``.

    def build(self) -> list[tuple[str, list[str]]]:
        arguments = self.spec.body.get("arguments", [])
        steps: list[tuple[str, list[str]]] = [
            ("static", [repr(w) for w in self.spec.words.split()])
        ]
        steps += self._sequence(arguments, optional=False, top=True)
        for group in rules.EXCLUSIVE.get(self.spec.key, []):
            self.groups.append(Group(list(group), "one_of"))
        return steps

    def _name(self, argument: dict[str, Any], *, prefer_token: bool) -> str:
        token = argument.get("token")
        raw = argument["name"]
        if prefer_token and token and re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", token):
            raw = token
        name = _identifier(raw)
        name = self.renames.get(name, name)
        if keyword.iskeyword(name):
            raise Unsupported(
                f"{self.spec.key}: parameter {name!r} is a Python keyword: rename it"
            )
        if name in ("parts", "self") or name in {p.name for p in self.params}:
            raise Unsupported(f"{self.spec.key}: parameter name {name!r} is taken: rename it")
        return name

    def _needs_one(self, what: str) -> str:
        """The line raising for an empty repeated argument."""
        return f"    raise ValueError({_q(self.helper + ' needs at least one ' + what)})"

    def _flag_name(self, argument: dict[str, Any]) -> str:
        token = argument.get("token") or ""
        raw = token if re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", token) else argument["name"]
        name = _identifier(raw)
        return self.renames.get(name, name)

    def _add(self, param: Param) -> str:
        if param.name in self.defaults and param.kind == "positional":
            param.kind = "keyword"
            param.default = self.defaults[param.name]
        self.params.append(param)
        return param.name

    def _sequence(
        self, arguments: list[dict[str, Any]], *, optional: bool, top: bool
    ) -> list[tuple[str, list[str]]]:
        steps: list[tuple[str, list[str]]] = []
        index = 0
        while index < len(arguments):
            argument = arguments[index]
            following = arguments[index + 1 :]
            if argument["name"] in self.omit:
                index += 1
                continue
            if self._is_count(argument, following):
                counted = following[0]
                steps += self._counted(counted, optional=optional, rest=following[1:])
                index += 2
                continue
            steps += self._argument(argument, optional=optional, rest=following, top=top)
            index += 1
        return steps

    @staticmethod
    def _is_count(argument: dict[str, Any], following: list[dict[str, Any]]) -> bool:
        return (
            argument["type"] == "integer"
            and argument["name"].lower().startswith("num")
            and not argument.get("optional")
            and bool(following)
            and bool(following[0].get("multiple"))
            and not following[0].get("token")
        )

    def _counted(
        self, counted: dict[str, Any], *, optional: bool, rest: list[dict[str, Any]]
    ) -> list[tuple[str, list[str]]]:
        name = self._name(counted, prefer_token=False)
        name = _plural(name)
        optional = optional or bool(counted.get("optional"))
        if counted["type"] == "block":
            mapping = self._mapping_param(counted, name="mapping", optional=optional)
            self.uses.add("pairs")
            return [("code", [f"parts.append(len({mapping}))", f"parts += pairs({mapping})"])]
        annotation = _PY_TYPES[counted["type"]]
        if counted["type"] == "key":
            param = Param(name, f"{annotation} | Sequence[{annotation}]", "positional")
            self.uses.add("keys_of")
            if optional:
                param.kind, param.default = "optional", "()"
            self._add(param)
            local = f"{name}_"
            lines = [f"{local} = keys_of({name})"]
            if not optional:
                lines += [
                    f"if not {local}:",
                    self._needs_one(counted["name"]),
                ]
            return [("code", [*lines, f"parts += (len({local}), *{local})"])]
        param = Param(name, f"Sequence[{annotation}]", "positional")
        if optional:
            param.kind, param.default = "optional", "()"
        self._add(param)
        lines = []
        if not optional:
            lines = [
                f"if not {name}:",
                self._needs_one(counted["name"]),
            ]
        return [("code", [*lines, f"parts += (len({name}), *{name})"])]

    def _mapping_param(self, block: dict[str, Any], *, name: str, optional: bool) -> str:
        children = block["arguments"]
        if len(children) != 2 or any(c["type"] not in _PY_TYPES for c in children):
            raise Unsupported(f"{self.spec.key}: a repeated block of {len(children)}")
        key_type, value_type = (_PY_TYPES[c["type"]] for c in children)
        if key_type == "Arg" and self.spec.group in ("hash", "stream"):
            key_type = "Arg"
        name = self.renames.get(block["name"], name)
        self._add(
            Param(
                name,
                f"Mapping[{key_type}, {value_type}]" + (" | None" if optional else ""),
                "keyword" if optional else "positional",
                "None" if optional else None,
            )
        )
        return name

    def _argument(
        self,
        argument: dict[str, Any],
        *,
        optional: bool,
        rest: list[dict[str, Any]],
        top: bool,
    ) -> list[tuple[str, list[str]]]:
        before = len(self.params)
        steps = self._argument_steps(argument, optional=optional, rest=rest, top=top)
        since = argument.get("since") or self._added_in(argument)
        if since and _version(since) > _version(str(self.spec.body.get("since", "0"))):
            # An argument newer than the command: say so, as servers differ.
            for param in self.params[before:]:
                if "since" not in param.doc:
                    param.doc = (param.doc or "the argument.").rstrip(".") + f" (since {since})."
        return steps

    def _added_in(self, argument: dict[str, Any]) -> str | None:
        """The version the command's history says added the argument's token, if it does."""
        token = argument.get("token")
        if not token:
            return None
        for version, change in self.spec.body.get("history", []):
            if change.startswith("Added") and re.search(rf"`{re.escape(token)}`", change):
                return str(version)
        return None

    def _argument_steps(
        self,
        argument: dict[str, Any],
        *,
        optional: bool,
        rest: list[dict[str, Any]],
        top: bool,
    ) -> list[tuple[str, list[str]]]:
        kind = argument["type"]
        own_optional = bool(argument.get("optional"))
        token = argument.get("token")
        if kind == "pure-token":
            if not own_optional and not optional:
                return [("static", [repr(token)])]
            name = self._add(
                Param(
                    self._name(argument, prefer_token=True),
                    "bool",
                    "keyword",
                    "False",
                    f"send ``{token}``.",
                )
            )
            return [("code", [f"if {name}:", f"    parts.append({token!r})"])]
        if kind in _PY_TYPES:
            return self._simple(argument, optional=optional or own_optional, rest=rest, top=top)
        if kind == "oneof":
            return self._oneof(argument, optional=optional or own_optional)
        if kind == "block":
            return self._block(argument, optional=optional or own_optional, rest=rest)
        raise Unsupported(f"{self.spec.key}: argument type {kind}")

    def _annotation(self, argument: dict[str, Any]) -> str:
        annotation = _PY_TYPES[argument["type"]]
        if argument["type"] == "double" and argument["name"] in ("min", "max"):
            annotation = "float | str"  # "-inf", "(1.5"
        if argument["type"] == "integer" and self.spec.key in ("ZINCRBY",):
            annotation = "float"
        return annotation

    def _simple(
        self,
        argument: dict[str, Any],
        *,
        optional: bool,
        rest: list[dict[str, Any]],
        top: bool,
    ) -> list[tuple[str, list[str]]]:
        token = argument.get("token")
        multiple = bool(argument.get("multiple"))
        annotation = self._annotation(argument)
        if argument["name"] == "weight":
            annotation = "float"
        if not multiple:
            if not optional:
                name = self._add(
                    Param(self._name(argument, prefer_token=False), annotation, "positional")
                )
                return [("static", [repr(token), name] if token else [name])]
            name = self._add(
                Param(
                    self._name(argument, prefer_token=bool(token)),
                    f"{annotation} | None",
                    "keyword" if token else "optional",
                    "None",
                    f"``{token} {argument['name']}``." if token else "",
                )
            )
            emit = f"parts += ({token!r}, {name})" if token else f"parts.append({name})"
            return [("code", [f"if {name} is not None:", f"    {emit}"])]
        # Repeated.
        if token:
            name = self._add(
                Param(
                    self._name(argument, prefer_token=True),
                    f"Sequence[{annotation}] | None",
                    "keyword",
                    "None",
                    f"``{token} {argument['name']} [{argument['name']} ...]``."
                    if not argument.get("multiple_token")
                    else f"``{token} {argument['name']}``, once for each.",
                )
            )
            if argument.get("multiple_token"):
                body = [f"    for item in {name}:", f"        parts += ({token!r}, item)"]
            else:
                body = [f"    parts += ({token!r}, *{name})"]
            return [("code", [f"if {name} is not None:", *body])]
        later_required = any(
            not a.get("optional") and a["type"] != "pure-token" for a in rest
        ) or any(a["type"] in _PY_TYPES and not a.get("optional") for a in rest)
        name = _plural(self._name(argument, prefer_token=False))
        if argument["type"] == "key":
            self.uses.add("keys_of")
            if later_required or not top:
                self._add(Param(name, "Key | Sequence[Key]", "positional"))
            else:
                self._add(Param(name, "Key | Sequence[Key]", "varargs"))
            local = f"{name}_"
            lines = [f"{local} = keys_of({name})"]
            if not optional:
                lines += [
                    f"if not {local}:",
                    self._needs_one(argument["name"]),
                ]
            return [("code", [*lines, f"parts += {local}"])]
        follows_optional = any(p.kind == "optional" for p in self.params)
        if later_required or not top or (optional and follows_optional):
            # EVAL script numkeys [key ...] [arg ...]: eval(script, keys, args).
            self._add(
                Param(
                    name,
                    f"Sequence[{annotation}]",
                    "optional" if optional else "positional",
                    "()" if optional else None,
                )
            )
        else:
            self._add(Param(name, annotation, "varargs"))
        if optional:
            return [("static", [f"*{name}"])]
        return [
            (
                "code",
                [
                    f"if not {name}:",
                    self._needs_one(argument["name"]),
                    f"parts += {name}",
                ],
            )
        ]

    def _oneof(self, argument: dict[str, Any], *, optional: bool) -> list[tuple[str, list[str]]]:
        alternatives = argument["arguments"]
        tokens = tuple(a.get("token") for a in alternatives)
        all_tokens = all(a["type"] == "pure-token" for a in alternatives)
        taken = {p.name for p in self.params}
        flags_clash = all_tokens and any(self._flag_name(a) in taken for a in alternatives)
        own_token = argument.get("token")
        literal = not optional or flags_clash or bool(own_token) or argument["name"] == "unit"
        if all_tokens and literal:
            # LINSERT key BEFORE|AFTER ..., AGGREGATE SUM|MIN|MAX, [m|km|ft|mi]:
            # one parameter naming the token.
            name = self._add(
                Param(
                    self._name(argument, prefer_token=True),
                    "Literal["
                    + ", ".join(repr(t) for t in tokens)
                    + "]"
                    + (" | None" if optional else ""),
                    "keyword" if optional else "positional",
                    "None" if optional else None,
                    f"one of {', '.join(f'``{t}``' for t in tokens)}." if optional else "",
                )
            )
            self.uses.add("choice")
            emit = f"parts.append(choice({name}, {tokens!r}, {name!r}, {self.helper!r}))"
            if own_token:
                emit = (
                    f"parts += ({own_token!r}, "
                    f"choice({name}, {tokens!r}, {name!r}, {self.helper!r}))"
                )
            if optional:
                return [("code", [f"if {name} is not None:", "    " + emit])]
            return [("code", [emit])]
        values = [a for a in alternatives if a["type"] in _PY_TYPES and not a.get("token")]
        pure = [a for a in alternatives if a["type"] == "pure-token"]
        if not optional and len(values) == 1 and len(pure) == len(alternatives) - 1:
            # XGROUP CREATE (id | $): one parameter taking a value or the token.
            value = values[0]
            name = self._add(
                Param(
                    self._name(value, prefer_token=False),
                    "Arg",
                    "positional",
                    None,
                    "a value, or " + ", ".join(f"``{a['token']}``" for a in pure) + ".",
                )
            )
            return [("static", [name])]
        groups: list[list[str]] = []
        steps: list[tuple[str, list[str]]] = []
        for alternative in alternatives:
            before = len(self.params)
            if alternative["type"] == "block" and not alternative.get("token"):
                children = alternative["arguments"]
                if children[0].get("token") and not children[0].get("optional"):
                    # GEOSEARCH BYRADIUS radius unit: a tuple after the token.
                    first = {**children[0]}
                    token = first.pop("token")
                    steps += self._tuple_param(
                        self._name(children[0], prefer_token=True), token, [first, *children[1:]]
                    )
                elif all(c.get("optional") for c in children):
                    # SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE]: options of their own.
                    steps += self._sequence(children, optional=True, top=False)
                else:
                    raise Unsupported(f"{self.spec.key}: a one-of of untokened blocks")
            else:
                alternative = {**alternative, "optional": True}
                steps += self._argument(alternative, optional=True, rest=[], top=False)
            groups.append([p.name for p in self.params[before:]])
        self.groups.append(
            Group(
                [n for g in groups for n in g],
                "one_of" if optional else "exactly_one",
                alternatives=groups,
            )
        )
        if own_token:
            # COMMAND LIST FILTERBY (MODULE name | ...): the token goes first.
            members = {n for g in groups for n in g}
            given = " or ".join(self._given(p) for p in self.params if p.name in members)
            steps.insert(0, ("code", [f"if {given}:", f"    parts.append({own_token!r})"]))
        return steps

    def _tuple_param(
        self, name: str, token: str, children: list[dict[str, Any]]
    ) -> list[tuple[str, list[str]]]:
        """A tuple parameter sent after ``token``: ``limit=(offset, count)``."""
        annotations, values = [], []
        for index, child in enumerate(children):
            if child["type"] == "oneof" and all(
                a["type"] == "pure-token" for a in child["arguments"]
            ):
                choices = tuple(a["token"] for a in child["arguments"])
                annotations.append("Literal[" + ", ".join(repr(c) for c in choices) + "]")
                self.uses.add("choice")
                values.append(f"choice(_v{index}, {choices!r}, {name!r}, {self.helper!r})")
            elif child["type"] in _PY_TYPES and not child.get("multiple"):
                annotations.append(self._annotation(child))
                values.append(f"_v{index}")
            else:
                raise Unsupported(f"{self.spec.key}: {child['name']} in a tuple")
        self._add(
            Param(
                name,
                f"tuple[{', '.join(annotations)}] | None",
                "keyword",
                "None",
                f"``{token} {' '.join(c['name'] for c in children)}``.",
            )
        )
        self.uses.add("fixed")
        names = ", ".join(f"_v{index}" for index in range(len(children)))
        return [
            (
                "code",
                [
                    f"if {name} is not None:",
                    f"    {names}{',' if len(children) == 1 else ''} = "
                    f"fixed({name}, {len(children)}, {name!r}, {self.helper!r})",
                    f"    parts += ({token!r}, {', '.join(values)})",
                ],
            )
        ]

    def _block(
        self, argument: dict[str, Any], *, optional: bool, rest: list[dict[str, Any]]
    ) -> list[tuple[str, list[str]]]:
        children = argument["arguments"]
        token = argument.get("token")
        if argument.get("multiple"):
            if (
                len(children) == 2
                and all(c["type"] in _PY_TYPES and not c.get("multiple") for c in children)
                and not argument.get("multiple_token")
                and not all(c["type"] == "integer" for c in children)
            ):
                return self._pairs(argument, optional=optional)
            if all(c["type"] in _PY_TYPES and not c.get("multiple") for c in children):
                return self._tuples(argument, optional=optional)
            raise Unsupported(f"{self.spec.key}: repeated block {argument['name']}")
        if (
            len(children) == 2
            and all(c["type"] in _PY_TYPES and c.get("multiple") for c in children)
            and not optional
        ):
            # XREAD STREAMS key [key ...] id [id ...]: a mapping of keys to ids.
            name = self._add(Param(argument["name"].lower(), "Mapping[Key, Arg]", "positional"))
            self.uses.add("keys_then_values")
            head = [f"parts.append({token!r})"] if token else []
            return [
                (
                    "code",
                    [
                        f"if not {name}:",
                        self._needs_one(children[0]["name"]),
                        *head,
                        f"parts += keys_then_values({name})",
                    ],
                )
            ]
        if self._is_trim(children):
            return self._trim(children, optional=optional)
        if not optional:
            head: list[tuple[str, list[str]]] = [("static", [repr(token)])] if token else []
            return head + self._sequence(children, optional=False, top=False)
        simple = all(
            not c.get("optional")
            and not c.get("multiple")
            and (
                c["type"] in _PY_TYPES
                or (
                    c["type"] == "oneof" and all(a["type"] == "pure-token" for a in c["arguments"])
                )
            )
            for c in children
        )
        if token and simple and len(children) > 1:
            # LIMIT offset count: one tuple parameter.
            return self._tuple_param(self._name(argument, prefer_token=True), token, children)
        # An optional block of options: each child is a parameter; the block
        # is sent when any is given, and then its required children must be.
        lines: list[str] = []
        block_params: list[Param] = []
        required: list[Param] = []
        for child in children:
            before = len(self.params)
            inner = self._sequence([{**child, "optional": True}], optional=True, top=False)
            added = self.params[before:]
            block_params += added
            if not child.get("optional"):
                required += added
            for kind, step in inner:
                lines += [f"parts += ({', '.join(step)},)"] if kind == "static" else step
        if required and len(block_params) > len(required):
            self.groups.append(
                Group(
                    [p.name for p in required],
                    "together",
                    [p.name for p in block_params if p not in required],
                )
            )
        present = " or ".join(self._given(p) for p in block_params)
        head = [f"    parts.append({token!r})"] if token else []
        return [("code", [f"if {present}:", *head, *("    " + line for line in lines)])]

    def _given(self, param: Param) -> str:
        if param.annotation == "bool" or param.default == "()":
            return param.name
        return f"{param.name} is not None"

    @staticmethod
    def _is_trim(children: list[dict[str, Any]]) -> bool:
        return (
            len(children) >= 2
            and children[0]["type"] == "oneof"
            and not children[0].get("optional")
            and all(a["type"] == "pure-token" for a in children[0]["arguments"])
            and any(c["type"] in _PY_TYPES and not c.get("optional") for c in children[1:])
        )

    def _trim(
        self, children: list[dict[str, Any]], *, optional: bool
    ) -> list[tuple[str, list[str]]]:
        # <(MAXLEN | MINID) [= | ~] threshold [LIMIT count]>: the token says
        # what the value means, so MAXLEN and MINID are parameters taking it.
        choice, *rest = children
        value = next(c for c in rest if c["type"] in _PY_TYPES and not c.get("optional"))
        names = [
            self._add(
                Param(
                    self._name(alternative, prefer_token=True),
                    "Arg | None",
                    "keyword",
                    "None",
                    f"``{alternative['token']} {value['name']}``.",
                )
            )
            for alternative in choice["arguments"]
        ]
        self.groups.append(Group(names, "one_of" if optional else "exactly_one"))
        position = rest.index(value)
        before = len(self.params)
        modifiers = self._sequence(
            [{**c, "optional": True} for c in rest[:position]], optional=True, top=False
        )
        after = self._sequence(
            [{**c, "optional": True} for c in rest[position + 1 :]], optional=True, top=False
        )
        extra = [p.name for p in self.params[before:]]
        if extra:
            self.groups.append(Group(names, "needed_by", extra))
        body = []
        for index, (name, alternative) in enumerate(zip(names, choice["arguments"], strict=True)):
            body.append(f"{'if' if index == 0 else 'elif'} {name} is not None:")
            body.append(f"    parts += ({alternative['token']!r}, {name})")
        value_lines = body
        body = []
        for kind, step in modifiers:
            body += step if kind == "code" else [f"parts += ({', '.join(step)},)"]
        # The modifier (= or ~) goes between the token and the value: send the
        # token, the modifier, then the value.
        if body:
            value_lines = []
            for index, (name, alternative) in enumerate(
                zip(names, choice["arguments"], strict=True)
            ):
                value_lines.append(f"{'if' if index == 0 else 'elif'} {name} is not None:")
                value_lines.append(f"    parts.append({alternative['token']!r})")
                value_lines += ["    " + line for line in body]
                value_lines.append(f"    parts.append({name})")
        for kind, step in after:
            value_lines += step if kind == "code" else [f"parts += ({', '.join(step)},)"]
        if optional:
            present = " or ".join(f"{n} is not None" for n in names)
            return [("code", [f"if {present}:", *("    " + line for line in value_lines)])]
        return [("code", value_lines)]

    def _pairs(self, argument: dict[str, Any], *, optional: bool) -> list[tuple[str, list[str]]]:
        first, second = argument["arguments"]
        reverse = first["type"] == "double" and second["type"] != "double"
        key_child, value_child = (second, first) if reverse else (first, second)
        name = self.renames.get(argument["name"], "mapping")
        key_type = _PY_TYPES[key_child["type"]]
        value_type = self._annotation(value_child)
        self._add(
            Param(
                name,
                f"Mapping[{key_type}, {value_type}]" + (" | None" if optional else ""),
                "keyword" if optional else "positional",
                "None" if optional else None,
                "",
            )
        )
        token = argument.get("token")
        self.uses.add("pairs")
        helper = "pairs_reversed" if reverse else "pairs"
        self.uses.add(helper)
        if argument.get("multiple_token"):
            self.uses.add("tokened_pairs")
            emit = f"parts += tokened_pairs({token!r}, {name})"
        else:
            emit = (f"parts.append({token!r})\n" if token else "") + f"parts += {helper}({name})"
        lines = emit.split("\n")
        if optional:
            return [("code", [f"if {name}:", *("    " + line for line in lines)])]
        return [
            (
                "code",
                [
                    f"if not {name}:",
                    self._needs_one(key_child["name"]),
                    *lines,
                ],
            )
        ]

    def _tuples(self, argument: dict[str, Any], *, optional: bool) -> list[tuple[str, list[str]]]:
        children = argument["arguments"]
        token = argument.get("token")
        annotation = "tuple[" + ", ".join(self._annotation(c) for c in children) + "]"
        if token:
            name = self._name(argument, prefer_token=True)
        else:
            name = _plural(self._name(argument, prefer_token=False))
        words = " ".join(c["name"] for c in children)
        if token and argument.get("multiple_token"):
            doc = f"``({words})`` tuples, each sent as ``{token} {words}``."
        elif token:
            doc = f"``({words})`` tuples, sent after ``{token}``."
        else:
            doc = f"``({words})`` tuples."
        self._add(
            Param(
                name,
                f"Sequence[{annotation}]",
                "optional" if optional and not token else "keyword" if optional else "positional",
                "()" if optional else None,
                doc,
            )
        )
        self.uses.add("fixed" if argument.get("multiple_token") else "flat_tuples")
        if token and argument.get("multiple_token"):
            lines = [
                f"for item in {name}:",
                f"    parts += ({token!r}, "
                f"*fixed(item, {len(children)}, {name!r}, {self.helper!r}))",
            ]
        else:
            lines = [f"parts += flat_tuples({name}, {len(children)}, {name!r}, {self.helper!r})"]
            if token:
                lines = [f"parts.append({token!r})", *lines]
        if not optional:
            return [
                (
                    "code",
                    [
                        f"if not {name}:",
                        self._needs_one(children[-1]["name"]),
                        *lines,
                    ],
                )
            ]
        if token:
            return [("code", [f"if {name}:", *("    " + line for line in lines)])]
        return [("code", lines)]
