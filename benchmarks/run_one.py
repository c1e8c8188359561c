"""Run one measurement in this process: ``python -m benchmarks.run_one SPEC``.

``SPEC`` is a JSON object with ``function`` (a name in
:data:`benchmarks.workloads.REGISTRY`), ``urls``, ``backend`` and ``params``.
The harness starts a fresh interpreter for every run, so runs cannot disturb
each other (no warm caches, no leftover tasks or sockets) and the process's
peak RSS belongs to that one run.

The last line of stdout is a JSON object: ``seconds``, ``ops``, ``extra`` and
``rss_peak_mib``; or ``skipped`` with the reason. Anything else (a failure)
exits non-zero with a traceback on stderr.
"""

from __future__ import annotations

import json
import resource
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["main", "peak_rss_mib"]


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: Sequence[str] | None = None) -> int:
    from . import round_trips  # noqa: F401  (registers B8's functions)
    from .workloads import REGISTRY, Context, SkippedError

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m benchmarks.run_one SPEC_JSON", file=sys.stderr)
        return 2
    spec = json.loads(args[0])
    function = REGISTRY[spec["function"]]
    context = Context(tuple(spec["urls"]), spec["backend"], dict(spec["params"]))
    result: dict[str, Any]
    try:
        outcome = function(context)
    except SkippedError as exc:
        result = {"skipped": str(exc)}
    else:
        result = {
            "seconds": outcome.seconds,
            "ops": outcome.ops,
            "extra": outcome.extra,
            "rss_peak_mib": peak_rss_mib(),
        }
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
