"""Records to commands (sans-io): templates, field types, CSV and JSON Lines readers."""

from __future__ import annotations

import io

import pytest

from triopipe._cli._records import (
    BadRecord,
    Record,
    RecordError,
    TemplateError,
    csv_records,
    jsonl_records,
    parse_templates,
)


def test_templates_render_each_value_as_one_argument() -> None:
    templates = parse_templates(
        [
            "HSET user:{id} name {name} age {age:int}",
            "EXPIRE user:{id} 3600",
            'SET "greeting {id}" "Hello, {name}!"',
            "SET tagged:{{{id}}} {{literal}}",
            'SET empty ""',
        ]
    )
    assert templates.fields == ["id", "name", "age"]
    assert len(templates) == 5
    assert templates.render(["7", "Ann  O'Neil", "-12"]) == [
        ("HSET", "user:7", "name", "Ann  O'Neil", "age", "-12"),
        ("EXPIRE", "user:7", "3600"),
        ("SET", "greeting 7", "Hello, Ann  O'Neil!"),
        ("SET", "tagged:{7}", "{literal}"),
        ("SET", "empty", ""),
    ]


def test_literal_text_cannot_escape_into_the_generated_renderer() -> None:
    nasty = r'SET "x\"); import os; (\"" {v}'
    templates = parse_templates([nasty, "SET '{v}' \\"])
    assert templates.render(["a'b\"c\\"]) == [
        ("SET", 'x"); import os; ("', "a'b\"c\\"),
        ("SET", "'a'b\"c\\'", "\\"),
    ]


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("", "it is empty"),
        ("SET {id", "a '{' is not closed (write '{{' for a literal brace)"),
        ("SET {id {x}", "a '{' is not closed (write '{{' for a literal brace)"),
        ("SET id}", "a '}' has no '{' (write '}}' for a literal brace)"),
        ("SET {} v", "a field reference '{}' has no name"),
        (
            "SET {id:bool} v",
            "unknown type 'bool' for field 'id' (types: str, int, float, nonempty)",
        ),
        ('SET "a', "a double quote is not closed"),
        ('SET "a"b', "a closing quote must be followed by a space"),
    ],
)
def test_bad_templates_are_named(template: str, problem: str) -> None:
    with pytest.raises(TemplateError) as caught:
        parse_templates(["SET ok {id}", template])
    assert str(caught.value) == f"template {template!r}: {problem}"


def test_no_template_is_refused() -> None:
    with pytest.raises(TemplateError, match="at least one command template"):
        parse_templates([])


@pytest.mark.parametrize(
    ("kind", "good", "bad"),
    [
        ("int", ["0", "-5", "+7", str(2**63 - 1), str(-(2**63))], ["1.0", " 1", "x", str(2**63)]),
        ("float", ["1.5", "-3e2", "inf", "7"], ["nan", "one", " 1.5", ""]),
        ("nonempty", ["x", " "], [""]),
        ("str", ["", "anything"], []),
    ],
)
def test_field_types(kind: str, good: list[str], bad: list[str]) -> None:
    templates = parse_templates([f"SET k {{v:{kind}}}"])
    for value in good:
        assert templates.render([value]) == [("SET", "k", value)]
    for value in bad:
        with pytest.raises(RecordError, match=f"field 'v' .*: {value!r}"):
            templates.render([value])


def test_templates_are_checked_against_the_header() -> None:
    templates = parse_templates(["SET {id} {nmae}", "SADD s {other}"])
    with pytest.raises(TemplateError) as caught:
        templates.check(["id", "name"])
    assert str(caught.value) == "no field 'nmae', 'other' in the input (its fields: 'id', 'name')"
    templates.check(["other", "nmae", "id"])


def test_csv_records_numbered_with_their_lines() -> None:
    text = 'id,name,age\r\n1,"Lee, Ann",31\n2,Bob\n\n3,"two\nlines",40\n4,x,5,extra\n5,"bad"x,1\n'
    header, records = csv_records(io.StringIO(text, newline=""), ["age", "id"])
    assert header == ["id", "name", "age"]
    got = list(records)
    assert got[:4] == [
        Record(1, 2, ("31", "1")),
        BadRecord(2, 3, "2 fields where the header has 3"),
        Record(3, 5, ("40", "3")),
        BadRecord(4, 7, "4 fields where the header has 3"),
    ]
    assert isinstance(got[4], BadRecord)
    assert (got[4].number, got[4].line) == (5, 8)
    assert got[4].reason.startswith("malformed CSV")
    assert str(got[1]) == "record 2 (line 3): 2 fields where the header has 3"


def test_tsv_and_single_field_records() -> None:
    _, records = csv_records(io.StringIO("a\tb\n1\t2\n"), ["b"], delimiter="\t")
    assert list(records) == [Record(1, 2, ("2",))]
    _, records = csv_records(io.StringIO("a\tb\n1\t2\n"), ["a", "b"], delimiter="\t")
    assert list(records) == [Record(1, 2, ("1", "2"))]


def test_an_empty_csv_has_no_header() -> None:
    with pytest.raises(RecordError, match="starts with a header line"):
        csv_records(io.StringIO(""), ["id"])


def test_jsonl_values_become_text() -> None:
    lines = [
        '{"id": 1, "v": "text", "n": 1.5}\n',
        "\n",
        '{"id": 2, "v": true, "n": [1, {"a": "é"}]}\n',
        '{"id": 3, "v": null, "n": 1}\n',
        '{"id": 4, "n": 1}\n',
        "[1, 2]\n",
        '{"id": 5,\n',
    ]
    got = list(jsonl_records(lines, ["id", "v", "n"]))
    assert got[:5] == [
        Record(1, 1, ["1", "text", "1.5"]),
        Record(2, 3, ["2", "true", '[1,{"a":"é"}]']),
        BadRecord(3, 4, "field 'v' is null"),
        BadRecord(4, 5, "field 'v' is missing"),
        BadRecord(5, 6, "a line must hold a JSON object"),
    ]
    assert isinstance(got[5], BadRecord)
    assert got[5].reason.startswith("malformed JSON")
