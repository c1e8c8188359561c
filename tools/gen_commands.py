"""Generate triopipe's command tables and typed helpers from the command specifications.

Inputs (data, never edited here):

- ``../shared/commands/json/*.json``: one specification per command (name,
  group, flags, key specs, arguments, reply schema...), the format described
  in ``../shared/commands/FORMAT.md``;
- ``tools/commands/*.json``: what live servers (Redis 7.0, Valkey 9.1) say
  of their commands, recorded by ``tools/snapshot_commands.py``. Commands a
  server knows and the specifications lack (Valkey 9's hash-field expiry...)
  are taken from there;
- ``tools/command_rules.py``: the decisions the specifications cannot make
  (how a command uses its connection, Python names, replies that depend on
  the arguments), each with its reason.

Outputs (committed, marked generated; ``tests/test_generated.py`` fails
when they are stale):

- ``triopipe/_routing/_keyspecs.py``: every command's class, key specs and
  cluster request/response policies;
- ``triopipe/_commands/<group>.py``: a builder per command and the mixin
  class that makes them methods of every facade;
- ``docs/commands.rst`` (the helpers by group) and
  ``docs/_generated/command_classes.rst`` (the class of every command).

The work is shared with ``command_specs.py`` (loading the inputs, helper
names), ``command_shapes.py`` (reply schemas to Python types and shapers),
``command_signatures.py`` (arguments to parameters) and ``command_code.py``
(each builder's code and docstring); this module classes the commands and
writes the modules and docs.

Usage::

    python tools/gen_commands.py            # write the outputs
    python tools/gen_commands.py --check    # exit 1 if an output is stale

``--specs DIR`` (or ``TRIOPIPE_COMMAND_SPECS``) names another directory of
specifications.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import command_rules as rules
from command_code import Helper, _long_string, build_helper
from command_shapes import NeedsVariants
from command_signatures import Unsupported
from command_specs import (
    _BUILTINS,
    COMMANDS_PACKAGE,
    DEFAULT_SPECS,
    DOCS,
    GENERATED,
    GROUP_MODULES,
    KEYSPECS_MODULE,
    ROOT,
    Spec,
    _q,
    containers,
    helper_keys,
    helper_name,
    load_specs,
    servers,
)

# -- Classes ---------------------------------------------------------------------------


def classify(specs: dict[str, Spec]) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Each command's class, the token that makes a command blocking, and refusals' advice.

    Returns ``(classes, blocking_tokens, instead)``. A class is one of
    ``shared``, ``blocking``, ``subscription``, ``connection_state``,
    ``pinned``; a container whose subcommands differ is ``subcommand``.
    """
    decided = (
        rules.SUBSCRIPTION.keys()
        | rules.CONNECTION_STATE.keys()
        | rules.PINNED.keys()
        | rules.REVIEWED_SHARED.keys()
    )
    stale = sorted(decided - specs.keys())
    if stale:
        raise SystemExit(f"command_rules.py decides commands no source knows: {stale}")
    classes: dict[str, str] = {}
    blocking_tokens: dict[str, str] = {}
    instead: dict[str, str] = {}
    undecided = []
    for key, spec in sorted(specs.items()):
        if key in rules.PINNED:
            classes[key] = "pinned"
            instead[key] = rules.PINNED[key]
        elif key in rules.SUBSCRIPTION:
            classes[key] = "subscription"
            instead[key] = rules.SUBSCRIPTION[key]
        elif key in rules.CONNECTION_STATE:
            classes[key] = "connection_state"
            instead[key] = rules.CONNECTION_STATE[key]
        elif "BLOCKING" in spec.flags:
            token = _blocking_token(spec)
            if token:
                classes[key] = "shared"
                blocking_tokens[key] = token
            else:
                classes[key] = "blocking"
        else:
            if key not in rules.REVIEWED_SHARED and (
                spec.group in rules.DECIDED_GROUPS or spec.flags & rules.DECIDED_FLAGS
            ):
                undecided.append(key)
            classes[key] = "shared"
    if undecided:
        raise SystemExit(
            "decide how these commands use their connection (tools/command_rules.py): "
            + ", ".join(undecided)
        )
    for container in containers(specs):
        subclasses = {classes[key] for key in specs if key.startswith(container + "|")} | {
            "blocking_token" for key in blocking_tokens if key.startswith(container + "|")
        }
        classes[container] = subclasses.pop() if len(subclasses) == 1 else "subcommand"
    return classes, blocking_tokens, instead


def _blocking_token(spec: Spec) -> str | None:
    """The optional token that makes a command blocking (XREAD's BLOCK), if it has one."""
    for argument in spec.body.get("arguments", []):
        if argument.get("optional") and argument.get("token") == "BLOCK":
            return "BLOCK"
    return None


# -- Key specs and policies --------------------------------------------------------------


def _key_spec(raw: dict[str, Any]) -> str | None:
    begin, find = raw["begin_search"], raw["find_keys"]
    if "unknown" in begin or "unknown" in find:
        return None
    if "index" in begin:
        head = f"INDEX, {begin['index']['pos']}, 0"
    else:
        keyword_ = begin["keyword"]
        head = f"KEYWORD, {keyword_['keyword']!r}, {keyword_['startfrom']}"
    if "range" in find:
        r = find["range"]
        tail = f"RANGE, {r['lastkey']}, {r['step']}, {r['limit']}"
    else:
        k = find["keynum"]
        tail = f"KEYNUM, {k['keynumidx']}, {k['firstkey']}, {k['step']}"
    return f"({head}, {tail})"


KEYSPECS_HEADER = '''"""Every command's class, key specs and cluster policies.

{generated}
Sources: the command specifications ({spec_count} commands) and the servers
{servers}.

``COMMAND_CLASS`` maps a command name (``"GET"``, or ``"CLIENT|LIST"`` for a
subcommand of a container listed in ``CONTAINERS``) to its class:
``shared``, ``blocking``, ``subscription``, ``connection_state`` or
``pinned`` (a container whose subcommands differ is ``subcommand``);
``BLOCKING_TOKEN`` names the option that makes a shared command blocking
(``XREAD ... BLOCK``); ``INSTEAD`` says what to use instead of a command a
shared connection refuses. See ``triopipe._routing._commands``.

``KEY_SPECS`` maps a command name to its key specs. Each spec is
``(begin, where, start, find, a, b, c)``:

- ``begin`` is ``INDEX`` (keys start at argument ``where``) or ``KEYWORD``
  (keys start after the keyword ``where``, searched from argument ``start``,
  backwards from the end when ``start`` is negative);
- ``find`` is ``RANGE`` (``a`` = last key relative to the start, or counted
  from the end when negative; ``b`` = step between keys; ``c`` = when not 0,
  only the first 1/c of the remaining arguments are keys) or ``KEYNUM``
  (``a`` = index of the key count relative to the start, ``b`` = first key
  relative to the start, ``c`` = step).

``UNKNOWN_KEYS`` names commands with a key spec the server itself cannot
describe (the keyword may be anywhere); they need a hand-written rule.
``REQUEST_POLICY`` and ``RESPONSE_POLICY`` hold the cluster tips: where a
command goes (``all_shards``, ``all_nodes``, ``multi_shard``, ``special``)
and how its replies combine (``agg_sum``, ``all_succeeded``...). A key-less
command without a request policy may run on any node. ``special`` means the
replies combine in a way of the command's own (``INFO``, ``SCAN``...).
"""

from __future__ import annotations

from typing import Final

INDEX: Final = 0
KEYWORD: Final = 1
RANGE: Final = 0
KEYNUM: Final = 1

KeySpec = tuple[int, "int | str", int, int, int, int, int]

'''


def render_keyspecs(specs: dict[str, Spec]) -> str:
    classes, blocking_tokens, instead = classify(specs)
    spec_count = sum(1 for s in specs.values() if s.source == "spec")
    lines = [
        KEYSPECS_HEADER.format(
            generated=GENERATED,
            spec_count=spec_count,
            servers=" and ".join(servers()),
        )
    ]
    key_specs: dict[str, list[str]] = {}
    unknown: set[str] = set()
    requests: dict[str, str] = {}
    responses: dict[str, str] = {}
    container_names = containers(specs)
    for key, spec in sorted(specs.items()):
        if key in container_names:
            continue
        converted = []
        for raw in spec.body.get("key_specs", []):
            text = _key_spec(raw)
            if text is None:
                unknown.add(key)
            else:
                converted.append(text)
        key_specs[key] = converted
        for tip in spec.body.get("command_tips", []):
            kind, _, value = tip.lower().partition(":")
            if kind == "request_policy":
                requests[key] = value
            elif kind == "response_policy":
                responses[key] = value
        for kind, value in rules.TIP_OVERRIDES.get(key, {}).items():
            table = requests if kind == "request_policy" else responses
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
    lines.append("COMMAND_CLASS: Final[dict[str, str]] = {")
    lines += [f"    {key!r}: {value!r}," for key, value in sorted(classes.items())]
    lines.append("}")
    lines.append(
        f"BLOCKING_TOKEN: Final[dict[str, str]] = {dict(sorted(blocking_tokens.items()))!r}"
    )
    lines.append("INSTEAD: Final[dict[str, str]] = {")
    lines += [
        f"    {_q(key)}: {_long_string(value, 8)}," for key, value in sorted(instead.items())
    ]
    lines.append("}")
    lines.append("KEY_SPECS: Final[dict[str, tuple[KeySpec, ...]]] = {")
    for key in sorted(key_specs):
        body = ", ".join(key_specs[key])
        comma = "," if len(key_specs[key]) == 1 else ""
        lines.append(f"    {key!r}: ({body}{comma}),")
    lines.append("}")
    lines.append(f"CONTAINERS: Final = frozenset({sorted(container_names)!r})")
    lines.append(f"UNKNOWN_KEYS: Final = frozenset({sorted(unknown)!r})")
    lines.append(f"REQUEST_POLICY: Final[dict[str, str]] = {dict(sorted(requests.items()))!r}")
    lines.append(f"RESPONSE_POLICY: Final[dict[str, str]] = {dict(sorted(responses.items()))!r}")
    return "\n".join(lines) + "\n"


# -- Modules ---------------------------------------------------------------------------------

_ARGS_HELPERS = (
    "choice", "fixed", "flat_tuples", "keys_of", "keys_then_values", "pairs", "pairs_reversed",
    "tokened_pairs",
)  # fmt: skip


def _shadows_builtin(helpers: list[Helper]) -> bool:
    for helper in helpers:
        signature = helper.code[0]
        for name in re.findall(r"(\w+):", signature):
            if name in _BUILTINS:
                return True
    return False


def render_group(
    group: str, helpers: list[Helper], manual: list[str], shaper_names: dict[str, str]
) -> str:
    _, class_name, title = GROUP_MODULES[group]
    names = sorted([h.name for h in helpers] + manual)
    code_text = "\n".join("\n".join(h.code) for h in helpers)
    shaper_defs = {expr: name for expr, name in shaper_names.items() if name in code_text}
    shape_words = set(re.findall(r"\b[a-z_]+\b", " ".join(shaper_defs) + " " + code_text))
    lines = [
        f'"""{title}: a typed helper for each command.',
        "",
        GENERATED,
        "Each builder checks its arguments and returns the :class:`~triopipe._commands.Command`",
        f"to send; :class:`{class_name}` makes them methods of every facade.",
        '"""',
        "",
        *(
            [
                "# ruff: noqa: A002 - parameters are named after the command's arguments "
                "(min, max, id...)",
                "",
            ]
            if _shadows_builtin(helpers)
            else []
        ),
        "from __future__ import annotations",
        "",
    ]
    typing_names = [n for n in ("Any", "Literal") if re.search(rf"\b{n}\b", code_text)]
    abc_names = [n for n in ("Mapping", "Sequence") if re.search(rf"\b{n}\b", code_text)]
    if abc_names:
        lines.append(f"from collections.abc import {', '.join(abc_names)}")
    if typing_names:
        lines.append(f"from typing import {', '.join(typing_names)}")
    lines.append("")
    args_names = sorted(n for n in _ARGS_HELPERS if re.search(rf"\b{n}\(", code_text))
    if args_names:
        lines.append(f"from ._args import {', '.join(args_names)}")
    base_names = [n for n in ("Arg", "Command", "Key") if re.search(rf"\b{n}\b", code_text)]
    lines.append(f"from ._base import {', '.join([*base_names, 'command'])}")
    imported = list(manual)
    for key, other in sorted(rules.ALSO_IN.items()):
        if other == group:
            assert key in rules.MANUAL, key
            imported.append(helper_name(key))
    for name in sorted(imported):
        noqa = "  # noqa: A004 - the command's name" if name in _BUILTINS else ""
        lines.append(f"from ._manual import {name} as {name}{noqa}")
    shape_imports = sorted(w for w in shape_words if w in SHAPE_FUNCTIONS)
    if shape_imports:
        lines.append(f"from ._shapes import {', '.join(shape_imports)}")
    lines.append("")
    lines.append(f"__all__ = [{', '.join(_q(n) for n in [class_name, *names])}]")
    lines.append("")
    for expr, name in sorted(shaper_defs.items(), key=lambda item: int(item[1].split("_")[-1])):
        lines.append(f"{name} = {expr}")
    lines.append("")
    for helper in helpers:
        lines += ["", *helper.code, ""]
    lines += [
        "",
        f"class {class_name}:",
        f'    """The {title.lower()} helpers, as methods of every facade with ``_dispatch``."""',
        "",
        "    __slots__ = ()",
        "",
    ]
    for name in names:
        lines.append(f"    {name} = command({name})")
    return "\n".join(lines) + "\n"


#: The shapers of ``triopipe/_commands/_shapes.py`` that generated code may name.
SHAPE_FUNCTIONS = frozenset(
    {
        "dict_of", "entry", "fields_of", "geo_items", "is_ok", "list_of", "optional",
        "optional_pair", "pair", "pairs_of", "prefix_items", "scan_page", "set_of", "to_bool",
        "to_dict",
        "to_float", "to_number", "to_set", "tuple_of",
    }
)  # fmt: skip


def render_package_init(groups: list[str]) -> str:
    lines = [
        '"""Typed command helpers, one module per Redis command group.',
        "",
        GENERATED,
        "",
        ":class:`Commands` is the mixin every facade (client, sharded client, cluster",
        "client, batch, transaction, blocking client) inherits; each helper is defined",
        "once, as a builder in its group's module, and sent by the facade's",
        "``_dispatch``.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from ._base import Arg, Command, Key, command, run_command",
    ]
    for module, class_name, _ in sorted(GROUP_MODULES[g] for g in groups):
        lines.append(f"from .{module} import {class_name}")
    lines += [
        "",
        "__all__ = [",
        '    "Arg",',
        '    "Command",',
        '    "Commands",',
        '    "Key",',
        '    "command",',
        '    "run_command",',
        "]",
        "",
        "",
        "class Commands(",
    ]
    lines += [f"    {GROUP_MODULES[g][1]}," for g in groups]
    lines += [
        "):",
        '    """The typed helpers of every command group.',
        "",
        "    A facade provides ``_dispatch(command)``.",
        '    """',
        "",
        "    __slots__ = ()",
    ]
    return "\n".join(lines) + "\n"


# -- Docs ------------------------------------------------------------------------------------


def render_commands_doc(
    groups: list[str], helpers: dict[str, list[Helper]], manual: dict[str, list[str]]
) -> str:
    total = sum(len(h) + len(manual.get(g, [])) for g, h in helpers.items())
    lines = [
        ".. " + GENERATED.replace("``", ""),
        "",
        "Typed helpers by command group",
        "==============================",
        "",
        f"triopipe has {total} typed helpers, generated from the command specifications. Each is",
        "a method of every facade: a coroutine on the clients (``await redis.hincrby(...)``),",
        "a :class:`~triopipe.Pending` at once on batches and transactions, and a blocking call",
        "on the :mod:`triopipe.sync` clients. The name is the command's in lower case, with",
        "spaces and dashes as underscores (``CLIENT LIST`` is ``client_list``), except ``DEL``,",
        "which is ``delete``. Tokens and flags are keyword arguments (``zrange(key, 0, -1,",
        "withscores=True)``); options the server takes one of are checked before anything is",
        "sent. Results have the same Python types under ``protocol=2`` and ``protocol=3``.",
        "",
    ]
    for group in groups:
        module, class_name, title = GROUP_MODULES[group]
        lines += [title, "-" * len(title), ""]
        lines += [
            f".. autoclass:: triopipe._commands.{module}.{class_name}",
            "   :members:",
            "   :undoc-members:",
            "   :no-show-inheritance:",
            "",
        ]
    return "\n".join(lines)


_CLASS_TITLES = {
    "shared": "Shared",
    "blocking": "Blocking",
    "subscription": "Subscription",
    "connection_state": "Connection state",
    "pinned": "Pinned",
    "subcommand": "By subcommand",
}


def render_classes_doc(specs: dict[str, Spec]) -> str:
    classes, blocking_tokens, instead = classify(specs)
    lines = [".. " + GENERATED.replace("``", ""), ""]
    for kind in ("blocking", "subscription", "connection_state", "pinned"):
        names = sorted(k for k, v in classes.items() if v == kind)
        lines += [
            f".. list-table:: {_CLASS_TITLES[kind]} ({len(names)} commands)",
            "   :header-rows: 1",
            "   :widths: 30 70",
            "",
        ]
        lines += ["   * - Command", "     - Instead" if kind != "blocking" else "     - Why"]
        for name in names:
            why = instead.get(
                name, "holds its connection until the server answers, which may be never"
            )
            lines += [f"   * - ``{name.replace('|', ' ')}``", f"     - {_rst_code(why)}"]
        lines.append("")
    if blocking_tokens:
        lines += [
            "Blocking only with an option: "
            + ", ".join(f"``{k}`` (with ``{v}``)" for k, v in sorted(blocking_tokens.items()))
            + ".",
            "",
        ]
    lines += [
        f"Every other command ({sum(1 for v in classes.values() if v == 'shared')} "
        "commands and subcommands) shares a connection.",
        "",
    ]
    return "\n".join(lines)


def _rst_code(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"``\1``", text)


# -- Main ------------------------------------------------------------------------------------


def generate(spec_dir: Path) -> dict[Path, str]:
    """Every output file and its text (code not yet formatted)."""
    specs = load_specs(spec_dir)
    classes, _, _ = classify(specs)
    outputs: dict[Path, str] = {KEYSPECS_MODULE: render_keyspecs(specs)}
    by_group: dict[str, list[Helper]] = {}
    manual: dict[str, list[str]] = {}
    shapers: dict[str, dict[str, str]] = {}
    problems = []
    for key in helper_keys(specs, classes):
        spec = specs[key]
        if key in rules.MANUAL:
            manual.setdefault(spec.group, []).append(helper_name(key))
            continue
        shaper_names = shapers.setdefault(spec.group, {})
        try:
            helper = build_helper(spec, shaper_names)
        except (Unsupported, NeedsVariants) as exc:
            problems.append(str(exc))
            continue
        by_group.setdefault(spec.group, []).append(helper)
    if problems:
        raise SystemExit("cannot generate:\n  " + "\n  ".join(problems))
    groups = [g for g in GROUP_MODULES if g in by_group or g in manual]
    for group in groups:
        module = GROUP_MODULES[group][0]
        outputs[COMMANDS_PACKAGE / f"{module}.py"] = render_group(
            group, by_group.get(group, []), sorted(manual.get(group, [])), shapers.get(group, {})
        )
    outputs[COMMANDS_PACKAGE / "__init__.py"] = render_package_init(groups)
    outputs[DOCS / "commands.rst"] = render_commands_doc(groups, by_group, manual)
    outputs[DOCS / "_generated" / "command_classes.rst"] = render_classes_doc(specs)
    return outputs


def format_python(paths: list[Path]) -> None:
    subprocess.run([sys.executable, "-m", "ruff", "format", "-q", *map(str, paths)], check=True)
    subprocess.run(
        [sys.executable, "-m", "ruff", "check", "-q", "--fix", "--select", "I", *map(str, paths)],
        check=False,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--specs", type=Path, default=Path(os.environ.get("TRIOPIPE_COMMAND_SPECS", DEFAULT_SPECS))
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if an output is stale")
    options = parser.parse_args(argv)
    outputs = generate(options.specs)
    if options.check:
        stale = [path for path, text in outputs.items() if not same_output(path, text)]
        for path in stale:
            print(f"stale: {path.relative_to(ROOT)}", file=sys.stderr)
        return 1 if stale else 0
    for path, text in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    format_python([p for p in outputs if p.suffix == ".py"])
    print(f"wrote {len(outputs)} files", file=sys.stderr)
    return 0


def same_output(path: Path, text: str) -> bool:
    """Whether ``path`` holds ``text``: for Python, the same syntax tree (formatting aside)."""
    if not path.exists():
        return False
    current = path.read_text()
    if path.suffix != ".py":
        return current == text
    import ast

    return ast.dump(ast.parse(current)) == ast.dump(ast.parse(text))


if __name__ == "__main__":
    sys.exit(main())
