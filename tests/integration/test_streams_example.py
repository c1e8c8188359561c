"""``examples/streams.py`` runs as the streams guide says (its own throwaway server)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parents[2] / "examples" / "streams.py"


def test_the_streams_example_runs_as_documented() -> None:
    root = str(EXAMPLE.parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--backend", "asyncio"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[:3] == [
        "added 2000 jobs to the stream 'jobs'",
        "alice crashed after 250 jobs",
        "bob did 1800 jobs, including alice's unacknowledged ones",
    ]
    assert lines[3].startswith("all 2000 jobs done, 50 of them twice: ")
    assert lines[4:] == ["pending in the group: 0", "alice, restarted, got 'after the restart'"]
