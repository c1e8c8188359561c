"""Run the ``triopipe`` command line for a test: in this process, or as a program.

In this process it is several times quicker (no interpreter to start), for
runs that need no process of their own; ``subprocess=True`` runs the real
program (worker processes, environment variables, signals).
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from collections.abc import Mapping
from typing import Any
from unittest import mock

import anyio
from helpers import Control

from triopipe._cli import main
from triopipe.testing import tcp_proxy


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


async def run_breaking_links(
    args: list[str], server_url: str, through: str, keys_before: int
) -> tuple[int, dict[str, Any]]:
    """Run ``triopipe ARGS --json`` as a program, its links to one server through a proxy.

    ``{proxy}`` in ``args`` is the proxy's URL; ``server_url`` is where the
    proxy leads. Once the server ``through`` leads to (``server_url`` or
    another) holds ``keys_before`` keys, the proxy stalls (what the program
    writes then stays unanswered) and every link through it is reset.
    Returns the exit status and the JSON summary.
    """
    host, port = server_url.removeprefix("redis://").rstrip("/").split(":")
    watched = Control(through)
    async with tcp_proxy(host, int(port)) as proxy:
        argv = [sys.executable, "-m", "triopipe"]
        argv += [arg.replace("{proxy}", proxy.url) for arg in args] + ["--json"]
        async with await anyio.open_process(argv) as process:
            while int(await anyio.to_thread.run_sync(watched.dbsize)) < keys_before:
                await anyio.sleep(0.01)
            proxy.stall()
            await anyio.sleep(0.2)
            proxy.reset()
            assert process.stdout is not None
            output = b"".join([chunk async for chunk in process.stdout])
            status = await process.wait()
    summary: dict[str, Any] = json.loads(output)
    return status, summary
