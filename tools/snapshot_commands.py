"""Record what a live server says of its commands, for ``tools/gen_commands.py``.

The command specifications in ``../shared/commands/json`` describe one server
line (Valkey 8.0, which covers Redis 7.2). Servers differ: Redis 7.0 lacks a
few of those commands, Valkey 9 adds hash-field expiry and more. The
generator reads the snapshots this script writes, so that every command a
supported server knows has a class and key specs, and commands missing from
the specifications get their arguments from the server's ``COMMAND DOCS``.

A snapshot holds, for each command and subcommand, what ``COMMAND INFO`` and
``COMMAND DOCS`` say, rewritten in the specifications' own format (see
``../shared/commands/FORMAT.md``): ``arity``, ``command_flags``,
``acl_categories``, ``command_tips``, ``key_specs``, ``summary``, ``since``,
``group``, ``arguments`` and, for subcommands, ``container``.

Usage::

    python tools/snapshot_commands.py                      # the redis-server on PATH
    TRIOPIPE_REDIS_SERVER=/path/to/valkey-server python tools/snapshot_commands.py

It writes ``tools/commands/<server>-<version>.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio

import triopipe
import triopipe.testing

SNAPSHOTS = Path(__file__).resolve().parent / "commands"


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    return value


def _key_spec(raw: dict[str, Any]) -> dict[str, Any]:
    """A ``COMMAND INFO`` key spec in the specifications' format."""
    begin, find = raw["begin_search"], raw["find_keys"]
    if begin["type"] == "index":
        begin_search: dict[str, Any] = {"index": {"pos": begin["spec"]["index"]}}
    elif begin["type"] == "keyword":
        spec = begin["spec"]
        begin_search = {"keyword": {"keyword": spec["keyword"], "startfrom": spec["startfrom"]}}
    else:
        begin_search = {"unknown": None}
    if find["type"] == "range":
        spec = find["spec"]
        find_keys: dict[str, Any] = {
            "range": {"lastkey": spec["lastkey"], "step": spec["keystep"], "limit": spec["limit"]}
        }
    elif find["type"] == "keynum":
        spec = find["spec"]
        find_keys = {
            "keynum": {
                "keynumidx": spec["keynumidx"],
                "firstkey": spec["firstkey"],
                "step": spec["keystep"],
            }
        }
    else:
        find_keys = {"unknown": None}
    return {
        "flags": sorted(flag.upper() for flag in raw.get("flags", [])),
        "begin_search": begin_search,
        "find_keys": find_keys,
    }


def _argument(raw: dict[str, Any]) -> dict[str, Any]:
    """A ``COMMAND DOCS`` argument in the specifications' format."""
    out: dict[str, Any] = {"name": raw["name"], "type": raw["type"]}
    for field in ("token", "key_spec_index", "since"):
        if field in raw:
            out[field] = raw[field]
    flags = raw.get("flags", [])
    for flag in ("optional", "multiple", "multiple_token"):
        if flag in flags:
            out[flag] = True
    if "arguments" in raw:
        out["arguments"] = [_argument(a) for a in raw["arguments"]]
    return out


def _entry(info: list[Any], docs: dict[str, Any], container: str | None) -> dict[str, Any]:
    name = info[0].split("|")[-1].upper()
    body: dict[str, Any] = {
        "summary": docs.get("summary", ""),
        "since": docs.get("since", ""),
        "group": docs.get("group", "").replace("-", "_"),
        "arity": info[1],
        "command_flags": sorted(flag.upper() for flag in info[2]),
        "acl_categories": sorted(cat.lstrip("@").upper() for cat in info[6]),
    }
    if container:
        body["container"] = container
    if info[7]:
        body["command_tips"] = [tip.upper() for tip in info[7]]
    if info[8]:
        body["key_specs"] = [_key_spec(spec) for spec in info[8]]
    if "arguments" in docs:
        body["arguments"] = [_argument(a) for a in docs["arguments"]]
    return {name: body}


async def snapshot() -> tuple[str, dict[str, Any]]:
    """Start a throwaway server and read every command's info and docs."""
    async with (
        triopipe.testing.redis_server() as server,
        triopipe.open_client(server.url, protocol=3, decode=True) as redis,
    ):
        info_text = await redis.execute("INFO", "server")
        fields = dict(line.split(":", 1) for line in info_text.splitlines() if ":" in line)
        if "valkey_version" in fields:
            product, version = "valkey", fields["valkey_version"]
        else:
            product, version = "redis", fields["redis_version"]
        infos = _plain(await redis.execute("COMMAND"))
        docs = _plain(await redis.execute("COMMAND", "DOCS"))
    commands: dict[str, Any] = {}
    for info in infos:
        top = info[0]
        top_docs = docs.get(top, {})
        commands[top.upper()] = _entry(info, top_docs, None)
        for sub in info[9]:
            sub_docs = top_docs.get("subcommands", {}).get(sub[0], {})
            commands[sub[0].upper().replace("|", " ")] = _entry(sub, sub_docs, top.upper())
    return f"{product}-{version}", {
        "server": product,
        "version": version,
        "commands": dict(sorted(commands.items())),
    }


def main() -> None:
    name, data = anyio.run(snapshot)
    SNAPSHOTS.mkdir(exist_ok=True)
    path = SNAPSHOTS / f"{name}.json"
    lines = [
        "{",
        f'  "server": {json.dumps(data["server"])},',
        f'  "version": {json.dumps(data["version"])},',
        '  "commands": {',
    ]
    items = list(data["commands"].items())
    for index, (command, body) in enumerate(items):
        comma = "," if index < len(items) - 1 else ""
        lines.append(f"    {json.dumps(command)}: {json.dumps(body, sort_keys=True)}{comma}")
    lines += ["  }", "}"]
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path} ({len(items)} commands)", file=sys.stderr)


if __name__ == "__main__":
    main()
