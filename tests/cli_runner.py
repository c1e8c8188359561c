"""Run the ``triopipe`` command line for a test: in this process, or as a program.

In this process it is several times quicker (no interpreter to start), for
runs that need no process of their own; ``subprocess=True`` runs the real
program (worker processes, environment variables, signals).
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from collections.abc import Mapping
from unittest import mock

from triopipe._cli import main


def triopipe(
    *args: str,
    data: bytes = b"",
    subprocess_: bool = False,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """The exit status and output of ``triopipe ARGS`` with ``data`` on standard input."""
    if subprocess_ or env is not None:
        return subprocess.run(
            [sys.executable, "-m", "triopipe", *args],
            input=data,
            capture_output=True,
            timeout=120,
            check=False,
            env=env,
        )
    stdout, stderr = io.StringIO(), io.StringIO()
    stdin = io.TextIOWrapper(io.BufferedReader(io.BytesIO(data)))  # type: ignore[arg-type]
    with (
        mock.patch.object(sys, "stdin", stdin),
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
    ):
        try:
            status = main(list(args))
        except SystemExit as exit_:  # argparse's usage errors
            status = int(exit_.code or 0)
    return subprocess.CompletedProcess(
        list(args), status, stdout.getvalue().encode(), stderr.getvalue().encode()
    )
