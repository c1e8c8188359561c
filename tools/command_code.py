"""The code and docstring of each generated builder, for ``tools/gen_commands.py``."""

from __future__ import annotations

import dataclasses
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import command_rules as rules
from command_shapes import Shape, ShapeCompiler, _union
from command_signatures import SignatureBuilder, Unsupported
from command_specs import _BUILTINS, Spec, _q, helper_name, servers

# -- Helpers: code ------------------------------------------------------------------------------


def _requote(code: str) -> str:
    """Turn the single-quoted literals of ``repr`` into double-quoted ones."""
    return re.sub(r"'([^'\"\\]*)'", r'"\1"', code)


def _long_string(text: str, indent: int) -> str:
    """A string literal, split over parenthesized lines when it is long."""
    if len(text) + indent < 80:
        return _q(text)
    words = textwrap.wrap(text, width=88 - indent, drop_whitespace=False)
    pad = " " * indent
    return "(\n" + "".join(f"{pad}{_q(w)}\n" for w in words) + " " * (indent - 4) + ")"


def _sentence_list(names: list[str], conjunction: str = "and") -> str:
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + f" {conjunction} " + names[-1]


def _check_lines(builder: SignatureBuilder) -> list[str]:
    by_name = {p.name: p for p in builder.params}
    lines = []
    for group in builder.groups:
        given = [builder._given(by_name[n]) for n in group.names]
        if group.rule in ("one_of", "exactly_one"):
            alternatives = group.alternatives or [[n] for n in group.names]
            terms = []
            for alternative in alternatives:
                expr = " or ".join(builder._given(by_name[n]) for n in alternative)
                if by_name[alternative[0]].annotation == "bool" and len(alternative) == 1:
                    terms.append(expr)
                else:
                    terms.append(f"({expr})")
            count = " + ".join(terms)
            labels = ["/".join(a) for a in alternatives]
            if group.rule == "one_of":
                message = f"{builder.helper}: {_sentence_list(labels)} are mutually exclusive"
                lines += [f"if {count} > 1:", f"    raise ValueError({_q(message)})"]
            else:
                message = f"{builder.helper}: give exactly one of {_sentence_list(labels, 'or')}"
                lines += [f"if {count} != 1:", f"    raise ValueError({_q(message)})"]
        elif group.rule == "together":
            others = " or ".join(builder._given(by_name[n]) for n in group.when)
            missing = " or ".join(
                g.replace(" is not None", " is None") if g.endswith(" is not None") else f"not {g}"
                for g in given
            )
            message = (
                f"{builder.helper}: {_sentence_list(group.when, 'or')} "
                f"needs {_sentence_list(group.names)}"
            )
            lines += [f"if ({others}) and ({missing}):", f"    raise ValueError({_q(message)})"]
        elif group.rule == "needed_by":
            others = " or ".join(builder._given(by_name[n]) for n in group.when)
            none = " and ".join(f"{n} is None" for n in group.names)
            message = (
                f"{builder.helper}: {_sentence_list(group.when, 'or')} needs "
                f"{_sentence_list(group.names, 'or')}"
            )
            lines += [f"if ({others}) and {none}:", f"    raise ValueError({_q(message)})"]
    return lines


def _signature(builder: SignatureBuilder, returns: str) -> str:
    positional = [p for p in builder.params if p.kind == "positional"]
    optional = [p for p in builder.params if p.kind == "optional"]
    varargs = [p for p in builder.params if p.kind == "varargs"]
    keywords = [p for p in builder.params if p.kind == "keyword"]
    if len(varargs) > 1:
        raise Unsupported(f"{builder.spec.key}: several repeated arguments")
    if varargs:
        keywords = optional + keywords
        optional = []
    parts = [f"{p.name}: {p.annotation}" for p in positional]
    parts += [f"{p.name}: {p.annotation} = {p.default}" for p in optional]
    if varargs:
        parts.append(f"*{varargs[0].name}: {varargs[0].annotation}")
    elif keywords:
        parts.append("*")
    parts += [f"{p.name}: {p.annotation} = {p.default}" for p in keywords]
    return f"({', '.join(parts)}) -> Command[{returns}]:"


def _sanitize(text: str) -> str:
    """Specification prose as reStructuredText: inline code, no stray markup."""
    text = re.sub(r"`([^`]+)`", r"``\1``", text.strip())
    text = text.replace("``!", "``")
    text = re.sub(r"(?<![`\w])\*(?![`\w])", "``*``", text)
    text = re.sub(r"(\w)_(\W|$)", r"\1\\_\2", text)
    return text


def _wrap(text: str, indent: int) -> list[str]:
    return textwrap.wrap(text, width=95 - indent, break_on_hyphens=False) or [""]


def _docstring(spec: Spec, builder: SignatureBuilder, shape_docs: list[str]) -> list[str]:
    body = spec.body
    summary = _sanitize(str(body.get("summary", "")).rstrip("."))
    lines = _wrap(f"{summary} (``{spec.words}``).", 4)
    notes = [f"Since {body.get('since', '?')}"]
    if spec.source != "spec":
        notes[0] += f" ({spec.source.split('-')[0].title()})"
    if body.get("deprecated_since"):
        replaced = _sanitize(str(body.get("replaced_by", "")))
        notes.append(
            f"deprecated since {body['deprecated_since']}"
            + (f": use {replaced}" if replaced else "")
        )
    missing = [s for s in servers() if s not in spec.servers]
    if missing:
        notes.append("not in " + ", ".join(m.replace("-", " ") for m in missing))
    lines += ["", *_wrap("; ".join(notes) + ".", 4)]
    documented = [p for p in builder.params if p.doc]
    if documented:
        lines += ["", "Args:"]
        for param in documented:
            wrapped = _wrap(f"{param.name}: {param.doc}", 8)
            lines += ["    " + wrapped[0], *("        " + w for w in wrapped[1:])]
    if shape_docs:
        lines += ["", "Returns:"]
        for text in shape_docs:
            lines += ["    " + w for w in _wrap(_sanitize(text), 4)]
    return lines


def _without_protocol_notes(text: str) -> str:
    """A reply's description without what it says of RESP2 (the helpers hide the difference)."""
    sentences = re.split(r"(?<=\.)\s+", text.strip())
    return " ".join(s for s in sentences if "RESP" not in s).strip()


def _reply_docs(schema: Any) -> list[str]:
    if not isinstance(schema, dict):
        return []
    if schema.get("description"):
        return [_without_protocol_notes(str(schema["description"]))]
    for combinator in ("oneOf", "anyOf"):
        if combinator in schema:
            docs = []
            for option in schema[combinator]:
                if isinstance(option, dict) and option.get("description"):
                    text = _without_protocol_notes(str(option["description"])).rstrip(".")
                    if text not in docs:
                        docs.append(text)
            docs = [d[:1].lower() + d[1:] if i else d for i, d in enumerate(docs)]
            return ["; or ".join(docs) + "."] if docs else []
    return []


@dataclasses.dataclass
class Helper:
    """One generated builder: its code and what the docs and tests need of it."""

    key: str
    name: str
    group: str
    code: list[str]
    shapers: dict[str, str]
    uses: set[str]
    returns: str


def build_helper(spec: Spec, shaper_names: dict[str, str]) -> Helper:
    name = helper_name(spec.key)
    builder = SignatureBuilder(spec, name)
    steps = builder.build()
    schema = spec.body.get("reply_schema")
    compiler = ShapeCompiler(spec)
    variants, default = rules.VARIANTS.get(spec.key, ([], None))
    alternatives = compiler.alternatives(schema)

    def shape_of(choice: int | str | None) -> Shape:
        if choice is None:
            return compiler.compile(schema)
        if isinstance(choice, str):
            pytype, shaper = rules.SHAPES[choice]
            return Shape(pytype, shaper)
        return compiler.compile(alternatives[choice])

    cases = [(condition, shape_of(choice)) for condition, choice in variants]
    default_shape = shape_of(default)
    returns = _union([s.pytype for _, s in cases] + [default_shape.pytype])

    def shaper_ref(shape: Shape) -> str | None:
        if shape.shaper is None:
            return None
        if re.fullmatch(r"\w+", shape.shaper):
            return shape.shaper
        if shape.shaper not in shaper_names:
            shaper_names[shape.shaper] = f"_SHAPE_{len(shaper_names) + 1}"
        return shaper_names[shape.shaper]

    head = [_requote(line) for line in (f"def {name}" + _signature(builder, returns)).split("\n")]
    if name in _BUILTINS:
        head[0] += "  # noqa: A001 - the command's name"
    doc = _docstring(spec, builder, _reply_docs(schema))
    opening = 'r"""' if "\\" in "\n".join(doc) else '"""'
    docstring = [f"    {opening}{doc[0]}", *(("    " + line) if line else "" for line in doc[1:])]
    docstring.append('    """')
    code = ["    " + line for line in _check_lines(builder)]
    statics: list[str] = []
    index = 0
    while index < len(steps) and steps[index][0] == "static":
        statics += steps[index][1]
        index += 1
    rest = steps[index:]
    returns_lines = []
    for condition, shape in cases:
        ref = shaper_ref(shape)
        returns_lines += [
            f"if {condition}:",
            f"    return Command(tuple(parts){', ' + ref if ref else ''})",
        ]
    ref = shaper_ref(default_shape)
    if not rest and not cases:
        tuple_text = ", ".join(statics) + ("," if len(statics) == 1 else "")
        code.append(f"    return Command(({tuple_text}){', ' + ref if ref else ''})")
    elif (
        len(rest) == 1
        and rest[0][0] == "code"
        and not cases
        and re.fullmatch(r"parts \+= (\w+)", rest[0][1][-1])
        and not any(line.startswith(" ") for line in rest[0][1])
    ):
        # mget: the checks, then one tuple of the words and the keys.
        *lines, last = rest[0][1]
        code += ["    " + line for line in lines]
        tuple_text = ", ".join([*statics, "*" + last.split("+= ")[1]])
        code.append(f"    return Command(({tuple_text}){', ' + ref if ref else ''})")
    else:
        code.append(f"    parts: list[Arg] = [{', '.join(statics)}]")
        for kind, step in rest:
            if kind == "static":
                for expr in step:
                    if expr.startswith("*"):
                        code.append(f"    parts += {expr[1:]}")
                    else:
                        code.append(f"    parts.append({expr})")
            else:
                code += ["    " + line for line in step]
        code += ["    " + line for line in returns_lines]
        code.append(f"    return Command(tuple(parts){', ' + ref if ref else ''})")
    code = head + docstring + [_requote(line) for line in code]
    return Helper(spec.key, name, spec.group, code, {}, builder.uses, returns)
