"""Developer and CI tasks: ``nox -s tests``, ``lint``, ``typecheck``, ``docs``, ``bench``.

Sessions run with the interpreter nox itself runs on; no version list is
hard-coded. The tests need a ``redis-server`` binary on ``PATH`` (or named by
``TRIOPIPE_REDIS_SERVER``).
"""

from __future__ import annotations

from collections.abc import Sequence

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["tests", "lint", "typecheck"]


def run_pytest(
    session: nox.Session, *, extras: str = "test", pytest_args: Sequence[str] = ()
) -> None:
    """Install the package with ``extras`` and run pytest on it.

    The package is installed (not imported from the checkout), so the tests
    see what users get, entry points included. Arguments after ``--`` on the
    nox command line go to pytest: ``nox -s tests -- -k restart -x``.
    """
    session.install(f".[{extras}]")
    session.run("python", "-m", "pytest", *pytest_args, *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite against real redis-server processes, on trio and asyncio."""
    run_pytest(session)


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
