"""Records to commands, for ``triopipe import`` (sans-io: no files, no sockets).

Theory of operation:

* A *template* is one command written as a line: arguments are separated by
  spaces, and an argument may be put in double quotes to hold spaces
  (``\\"`` and ``\\\\`` inside them). ``{field}`` anywhere in an argument is
  replaced by the record's value of that field; ``{field:TYPE}`` checks the
  value first (:data:`FIELD_TYPES`); ``{{`` and ``}}`` are literal braces. A
  value is never split: ``{name}`` holding ``John Smith`` is one argument.
* Templates are parsed once, before any record is read, and checked against
  the fields the input declares (a CSV header): a field no template can get
  is refused before anything is sent (:class:`TemplateError`).
* Every good record becomes exactly one command per template, in the
  templates' order; a bad record (missing or null field, a value of the wrong
  type, a malformed line, a row of the wrong width) becomes none and is
  reported as a :class:`BadRecord` with its number and line.
* Records are numbered from 1, in input order: a CSV header is not a record;
  in JSON Lines every non-blank line is one.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

__all__ = [
    "FIELD_TYPES",
    "BadRecord",
    "CommandTemplate",
    "Record",
    "RecordError",
    "TemplateError",
    "csv_records",
    "jsonl_records",
    "parse_templates",
]


class TemplateError(ValueError):
    """A template that cannot be parsed, or names a field the input lacks."""


class RecordError(ValueError):
    """A record that cannot become commands (the message names the field and why)."""


def _check_int(value: str) -> str | None:
    if re.fullmatch(r"[+-]?[0-9]+", value) is None:
        return "is not an integer"
    if not -(2**63) <= int(value) < 2**63:
        return "is out of the 64-bit range Redis accepts"
    return None


def _check_float(value: str) -> str | None:
    try:
        number = float(value)
    except ValueError:
        return "is not a number"
    if number != number or value.strip() != value:
        return "is not a number"
    return None


def _check_nonempty(value: str) -> str | None:
    return "is empty" if not value else None


#: The types a field reference may ask for: ``{age:int}`` (64-bit signed
#: integer, as ``INCRBY`` and ``EXPIRE`` take), ``{score:float}`` (a number
#: Redis parses: ``1.5``, ``-3e2``, ``inf``), ``{id:nonempty}``, and ``str``
#: (the default: anything, the empty string included).
FIELD_TYPES: Mapping[str, Callable[[str], str | None]] = {
    "str": lambda value: None,
    "int": _check_int,
    "float": _check_float,
    "nonempty": _check_nonempty,
}


@dataclasses.dataclass(frozen=True)
class _Field:
    index: int  # position in the record's value list (see CommandTemplate.fields)
    name: str
    type: str


# An argument: its literal text and field references, in order.
_Part = str | _Field


@dataclasses.dataclass(frozen=True)
class BadRecord:
    """A record that became no command: its number, its line, and why."""

    number: int
    line: int
    reason: str

    def __str__(self) -> str:
        return f"record {self.number} (line {self.line}): {self.reason}"


class Record(NamedTuple):
    """A good record: its number, its line, and its values in the order of ``fields``.

    (A named tuple: one is made for every record, so it must be cheap to make.)
    """

    number: int
    line: int
    values: Sequence[str]


class CommandTemplate:
    """Every template of one import, parsed: records (as value lists) to commands."""

    def __init__(self, templates: Sequence[Sequence[Sequence[_Part]]], fields: list[str]) -> None:
        self._templates = templates
        self._render = _renderer(templates)
        #: The fields the templates use, each once, in order of first use: a
        #: record's values are given in this order.
        self.fields = fields
        self._checks = [
            (field.index, field.name, FIELD_TYPES[field.type])
            for field in _unique_fields(templates)
            if field.type != "str"
        ]

    def __len__(self) -> int:
        return len(self._templates)

    def check(self, available: Iterable[str]) -> None:
        """Refuse templates that use a field not among ``available`` (a CSV header).

        Raises:
            TemplateError: naming each missing field and what the input has.
        """
        have = set(available)
        missing = [name for name in self.fields if name not in have]
        if missing:
            names = ", ".join(repr(name) for name in missing)
            offered = ", ".join(repr(name) for name in available) or "none"
            raise TemplateError(f"no field {names} in the input (its fields: {offered})")

    def problem(self, values: Sequence[str]) -> str | None:
        """What makes one record's values bad (a value not of its field's type), if anything."""
        for index, name, check in self._checks:
            problem = check(values[index])
            if problem is not None:
                return f"field {name!r} {problem}: {values[index]!r}"
        return None

    def render(self, values: Sequence[str]) -> list[tuple[str, ...]]:
        """The commands of one record's values.

        Raises:
            RecordError: a value that is not of its field's type.
        """
        if self._checks:
            problem = self.problem(values)
            if problem is not None:
                raise RecordError(problem)
        return self._render(values)


def _renderer(
    templates: Sequence[Sequence[Sequence[_Part]]],
) -> Callable[[Sequence[str]], list[tuple[str, ...]]]:
    """One function that builds every command of a record from its values.

    Generated once per import, as ``lambda v: [("SET", "key:" + v[0], v[1])]``:
    a million records are rendered several times faster than by walking the
    parsed templates. Only ``repr()`` of literal text and integer indexes go
    into the source, so no input can change what it does.
    """

    def argument(parts: Sequence[_Part]) -> str:
        return " + ".join(repr(p) if isinstance(p, str) else f"v[{p.index}]" for p in parts)

    commands = ", ".join(
        "(" + "".join(argument(parts) + ", " for parts in template) + ")" for template in templates
    )
    render: Callable[[Sequence[str]], list[tuple[str, ...]]] = eval(
        f"lambda v: [{commands}]", {"__builtins__": {}}
    )
    return render


def _unique_fields(templates: Sequence[Sequence[Sequence[_Part]]]) -> list[_Field]:
    seen: dict[tuple[str, str], _Field] = {}
    for template in templates:
        for argument in template:
            for part in argument:
                if isinstance(part, _Field):
                    seen.setdefault((part.name, part.type), part)
    return list(seen.values())


def parse_templates(texts: Sequence[str]) -> CommandTemplate:
    """Parse the ``-c`` templates of one import.

    Raises:
        TemplateError: an empty template, an unclosed quote or brace, an
            empty field name, or an unknown type (naming the template).
    """
    if not texts:
        raise TemplateError("give at least one command template (-c 'SET key:{id} {value}')")
    fields: list[str] = []
    parsed = []
    text = ""
    try:
        for text in texts:
            parsed.append(_parse_one(text, fields))
    except TemplateError as exc:
        raise TemplateError(f"template {text!r}: {exc}") from None
    return CommandTemplate(parsed, fields)


def _parse_one(text: str, fields: list[str]) -> list[list[_Part]]:
    arguments: list[list[_Part]] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            break
        argument, position = _parse_argument(text, position, fields)
        arguments.append(argument)
    if not arguments:
        raise TemplateError("it is empty")
    return arguments


def _parse_argument(text: str, position: int, fields: list[str]) -> tuple[list[_Part], int]:
    parts: list[_Part] = []
    literal: list[str] = []
    quoted = text[position] == '"'
    if quoted:
        position += 1
    while True:
        if position == len(text):
            if quoted:
                raise TemplateError("a double quote is not closed")
            break
        char = text[position]
        if quoted and char == '"':
            position += 1
            if position < len(text) and not text[position].isspace():
                raise TemplateError("a closing quote must be followed by a space")
            break
        if not quoted and char.isspace():
            break
        if quoted and char == "\\" and position + 1 < len(text):
            literal.append(text[position + 1])
            position += 2
        elif text.startswith(("{{", "}}"), position):
            literal.append(char)
            position += 2
        elif char == "{":
            end = text.find("}", position)
            if end < 0:
                raise TemplateError("a '{' is not closed (write '{{' for a literal brace)")
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(_parse_field(text[position + 1 : end], fields))
            position = end + 1
        elif char == "}":
            raise TemplateError("a '}' has no '{' (write '}}' for a literal brace)")
        else:
            literal.append(char)
            position += 1
    if literal or not parts:
        parts.append("".join(literal))
    return parts, position


def _parse_field(reference: str, fields: list[str]) -> _Field:
    if "{" in reference:
        raise TemplateError("a '{' is not closed (write '{{' for a literal brace)")
    name, _, kind = reference.partition(":")
    name = name.strip()
    kind = kind.strip() or "str"
    if not name:
        raise TemplateError("a field reference '{}' has no name")
    if kind not in FIELD_TYPES:
        raise TemplateError(
            f"unknown type {kind!r} for field {name!r} (types: {', '.join(FIELD_TYPES)})"
        )
    if name not in fields:
        fields.append(name)
    return _Field(fields.index(name), name, kind)


# -- readers: text lines to numbered records -----------------------------------


def csv_records(
    lines: Iterable[str], fields: Sequence[str], delimiter: str = ","
) -> tuple[list[str], Iterator[Record | BadRecord]]:
    """The header of CSV (or TSV) text and its records, as values of ``fields``.

    ``lines`` is text as :func:`open` gives it with ``newline=""`` (a quoted
    value may span lines). Returns the header at once, so templates can be
    checked against it before any record is read.

    Raises:
        RecordError: the input has no header line.
    """
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise RecordError("the input is empty: a CSV file starts with a header line") from None
    except csv.Error as exc:
        raise RecordError(f"the header line is malformed: {exc}") from None
    positions = {name: index for index, name in enumerate(header)}
    wanted = [positions.get(name, -1) for name in fields]
    return header, _csv_rows(reader, len(header), wanted)


def _csv_rows(reader: Any, width: int, wanted: list[int]) -> Iterator[Record | BadRecord]:
    # The values the templates use, picked from a row in one C call.
    pick: Callable[[list[str]], Sequence[str]]
    if wanted == list(range(width)):
        pick = tuple
    elif len(wanted) == 1:
        only = wanted[0]
        pick = lambda row: (row[only],)  # noqa: E731 - one of three pickers
    else:
        pick = operator.itemgetter(*wanted)
    make = Record._make
    number = 0
    while True:
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            number += 1
            yield BadRecord(number, line, f"malformed CSV: {exc}")
            continue
        if not row:
            continue  # a blank line
        number += 1
        if len(row) == width:
            yield make((number, line, pick(row)))
        else:
            yield BadRecord(number, line, f"{len(row)} fields where the header has {width}")


def jsonl_records(lines: Iterable[str], fields: Sequence[str]) -> Iterator[Record | BadRecord]:
    """The records of JSON Lines text (one object a line), as values of ``fields``.

    Values become text: strings as they are, numbers as JSON writes them,
    ``true``/``false``, and arrays or objects as compact JSON; a ``null`` or
    missing field makes the record bad.
    """
    number = 0
    for line_number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        number += 1
        try:
            item = json.loads(line)
        except ValueError as exc:
            yield BadRecord(number, line_number, f"malformed JSON: {exc}")
            continue
        if not isinstance(item, dict):
            yield BadRecord(number, line_number, "a line must hold a JSON object")
            continue
        values = []
        for name in fields:
            value = item.get(name)
            if value is None:
                missing = "is null" if name in item else "is missing"
                yield BadRecord(number, line_number, f"field {name!r} {missing}")
                break
            values.append(_json_text(value))
        else:
            yield Record(number, line_number, values)


def _json_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
