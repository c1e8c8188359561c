"""The ``triopipe`` command line: one module per subcommand.

Each subcommand module (``_pump``, ...) has ``add_parser(subcommands)``, which
adds its parser and sets ``run`` (parsed arguments -> exit status) as its
default; this module only assembles them. ``bench`` is passed through to the
benchmark suite of a source checkout, untouched.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import _copy, _import, _pump

__all__ = ["main"]

_SUBCOMMANDS = (_pump, _import, _copy)


def _bench_command(rest: Sequence[str]) -> int:
    try:
        from benchmarks.cli import main as bench_main
    except ImportError:
        print(
            "triopipe bench: the benchmark suite lives in triopipe's source tree; run it "
            "there with `nox -s bench` or `python -m benchmarks`",
            file=sys.stderr,
        )
        return 2
    result = bench_main(list(rest))
    return int(result or 0)


def _parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="triopipe", description="triopipe: pump data into Redis, pipelined."
    )
    parser.add_argument("--version", action="version", version=f"triopipe {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for module in _SUBCOMMANDS:
        module.add_parser(commands)
    commands.add_parser(
        "bench",
        help="run the comparative benchmark suite (from a source checkout)",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["bench"]:
        return _bench_command(arguments[1:])
    args = _parser().parse_args(arguments)
    status: int = args.run(args)
    return status
