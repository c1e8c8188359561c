"""Options shared by the subcommands: where to send (target), the password, the event loop.

Rules kept here:

- A target is one server (``--url``), shards (``--shards``) or a cluster
  (``--cluster``); every URL is checked before anything is sent, and a bad
  one is a one-line error with :attr:`~ExitStatus.USAGE`.
- The password never has to be on the command line (where ``ps`` shows it):
  ``--askpass`` prompts for it, else ``TRIOPIPE_PASSWORD``, else
  ``REDISCLI_AUTH`` (as ``redis-cli`` reads it), else the URL's own. It is
  never printed: targets are described by their URLs without credentials.
- ``--shards A B FILE``: a trailing value that is not a URL is the input
  file, not a server. ``--shards A,B`` (comma-separated) names the same two.
- ``copy`` has two targets, its positional SOURCE and TARGET, each made
  shards or a cluster by ``--source-shards``, ``--target-cluster``, ...
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import getpass
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Literal, Protocol, TypeVar

import anyio
import anyio.abc

from .._client import open_client
from .._cluster import open_cluster_client
from .._config import parse_url
from .._exceptions import AuthenticationError, ResponseError, TransportError
from .._sharded import open_sharded_client
from .._tasks import background_task_group
from ._exits import CliError, ExitStatus

__all__ = [
    "PASSWORD_VARIABLES",
    "Interruptible",
    "Kind",
    "Target",
    "add_backend_option",
    "add_report_options",
    "add_target_options",
    "add_two_target_options",
    "make_target",
    "run_on_backend",
    "target_from_args",
    "two_targets_from_args",
]

T = TypeVar("T")
#: What a target is: one server, shards, or a cluster.
Kind = Literal["server", "shards", "cluster"]

DEFAULT_URL = "redis://localhost:6379"
#: Environment variables holding the password, in the order they are read.
PASSWORD_VARIABLES = ("TRIOPIPE_PASSWORD", "REDISCLI_AUTH")


def add_target_options(
    parser: argparse.ArgumentParser, *, file_option: str | None = "file"
) -> None:
    """Add ``--url``/``--shards``/``--cluster`` and ``--askpass`` to ``parser``.

    ``file_option`` names the positional input argument that a trailing
    non-URL value of ``--shards`` or ``--cluster`` belongs to.
    """
    group = parser.add_argument_group("target (one of)")
    exclusive = group.add_mutually_exclusive_group()
    exclusive.add_argument(
        "--url",
        default=None,
        metavar="URL",
        help=f"one server: redis://[[user]:password@]host[:port][/db], rediss://... or "
        f"unix:///path (default: {DEFAULT_URL})",
    )
    exclusive.add_argument(
        "--shards",
        nargs="+",
        metavar="URL",
        help="several servers, keys spread over them by slot as triopipe's sharded client does",
    )
    exclusive.add_argument(
        "--cluster", nargs="+", metavar="URL", help="a Redis Cluster: one or more of its nodes"
    )
    group.add_argument(
        "--askpass",
        action="store_true",
        help="prompt for the password (otherwise from TRIOPIPE_PASSWORD, then REDISCLI_AUTH, "
        "then the URL)",
    )
    parser.set_defaults(_file_option=file_option)


def add_report_options(parser: argparse.ArgumentParser, *, errors_help: str) -> None:
    """Add how a run reports: ``--errors FILE``, ``--json`` and ``--quiet``."""
    parser.add_argument("--errors", metavar="FILE", help=errors_help)
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the counts as one JSON object on standard output at the end",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress and no summary (errors still shown)"
    )


def add_backend_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--backend``: the event loop to run on."""
    parser.add_argument(
        "--backend",
        choices=["asyncio", "trio"],
        default="asyncio",
        help="event loop to run on (default: asyncio; trio when installed and asked for)",
    )


@dataclasses.dataclass(frozen=True)
class Target:
    """Where commands go: ``kind`` is ``server``, ``shards`` or ``cluster``."""

    kind: Kind
    urls: tuple[str, ...]
    password: str | None = dataclasses.field(default=None, repr=False)

    def describe(self) -> str:
        """The target for people: its URLs without credentials, and its kind."""
        shown = ", ".join(parse_url(url).url for url in self.urls)
        if self.kind == "server":
            return f"{shown} (one server)"
        if self.kind == "shards":
            return f"{len(self.urls)} shards: {shown}"
        return f"cluster at {shown}"

    @contextlib.asynccontextmanager
    async def open(self, **options: Any) -> AsyncIterator[Any]:
        """A client for the target, connected.

        Raises:
            CliError: the target cannot be reached or refused the credentials
                (:attr:`~ExitStatus.CANNOT_CONNECT`).
        """
        if self.password is not None:
            options["password"] = self.password
        if self.kind == "server":
            opener: Any = open_client(self.urls[0], **options)
        elif self.kind == "shards":
            opener = open_sharded_client(list(self.urls), **options)
        else:
            opener = open_cluster_client(list(self.urls), **options)
        async with contextlib.AsyncExitStack() as stack:
            try:
                client = await stack.enter_async_context(opener)
            except AuthenticationError as exc:
                raise CliError(
                    f"cannot connect to {self.describe()}: the server refused the credentials: "
                    f"{exc}",
                    ExitStatus.CANNOT_CONNECT,
                ) from None
            except (TransportError, ResponseError, OSError) as exc:
                raise CliError(
                    f"cannot connect to {self.describe()}: {exc}", ExitStatus.CANNOT_CONNECT
                ) from None
            yield client


def target_from_args(args: argparse.Namespace) -> Target:
    """The target the options name, every URL checked, the password found.

    Raises:
        CliError: a bad URL (:attr:`~ExitStatus.USAGE`).
    """
    file_option = getattr(args, "_file_option", None)
    for kind in ("shards", "cluster"):
        urls = getattr(args, kind)
        no_file = file_option is not None and getattr(args, file_option) in (None, "-")
        if file_option is not None and no_file and len(urls or ()) > 1 and "://" not in urls[-1]:
            setattr(args, file_option, urls.pop())
    if args.shards:
        return make_target("shards", args.shards, askpass=args.askpass)
    if args.cluster:
        return make_target("cluster", args.cluster, askpass=args.askpass)
    return make_target("server", [args.url or DEFAULT_URL], askpass=args.askpass)


def make_target(
    kind: Kind, urls: Sequence[str], *, askpass: bool = False, prompt: str = "Redis password: "
) -> Target:
    """A target of ``kind`` (``server``, ``shards``, ``cluster``), URLs checked, password found.

    A comma-separated value counts as several URLs. For subcommands with
    targets of their own (a copy's source and destination): ``prompt`` tells
    which one ``--askpass`` asks for.

    Raises:
        CliError: no URL, a bad one, or several for one server
            (:attr:`~ExitStatus.USAGE`).
    """
    split = tuple(part for url in urls for part in url.split(",") if part)
    if not split:
        raise CliError("no server URL given", ExitStatus.USAGE)
    if kind == "server" and len(split) > 1:
        raise CliError(
            "several URLs for one server: say --shards or --cluster (pump, import) or "
            "--source-shards, --target-cluster, ... (copy)",
            ExitStatus.USAGE,
        )
    try:
        for url in split:
            parse_url(url)
    except (ValueError, TypeError) as exc:
        raise CliError(str(exc), ExitStatus.USAGE) from None
    return Target(kind, split, password=_password(askpass, prompt))


def add_two_target_options(parser: argparse.ArgumentParser) -> None:
    """Add positional SOURCE and TARGET, what kind each is, and ``--askpass``."""
    parser.add_argument("source", help="the source's URL (or URLs, comma-separated)")
    parser.add_argument("target", help="the target's URL (or URLs, comma-separated)")
    group = parser.add_argument_group("kinds of source and target (default: one server)")
    for side in ("source", "target"):
        exclusive = group.add_mutually_exclusive_group()
        exclusive.add_argument(
            f"--{side}-shards", action="store_true", help=f"{side.upper()} is shards"
        )
        exclusive.add_argument(
            f"--{side}-cluster", action="store_true", help=f"{side.upper()} is a cluster"
        )
    group.add_argument(
        "--askpass",
        action="store_true",
        help="prompt for each side's password (otherwise from TRIOPIPE_PASSWORD, then "
        "REDISCLI_AUTH, then the URL)",
    )


def two_targets_from_args(args: argparse.Namespace) -> tuple[Target, Target]:
    """The source and the target :func:`add_two_target_options` named.

    Raises:
        CliError: a bad URL (:attr:`~ExitStatus.USAGE`).
    """
    sides = []
    for side in ("source", "target"):
        kind: Kind = (
            "cluster"
            if getattr(args, f"{side}_cluster")
            else "shards"
            if getattr(args, f"{side}_shards")
            else "server"
        )
        prompt = f"Redis password of the {side}: "
        sides.append(make_target(kind, [getattr(args, side)], askpass=args.askpass, prompt=prompt))
    return sides[0], sides[1]


def _password(askpass: bool, prompt: str) -> str | None:
    if askpass:
        return getpass.getpass(prompt)
    for variable in PASSWORD_VARIABLES:
        value = os.environ.get(variable)
        if value:
            return value
    return None


class Interruptible(Protocol):
    """A run's state that records a Ctrl-C (or SIGTERM)."""

    interrupted: bool


async def stop_on_signals(
    run: Callable[[], Awaitable[None]], state: Interruptible, *signals: signal.Signals
) -> None:
    """Run ``run()``; the first of ``signals`` sets ``state.interrupted`` and cancels it.

    Taken as a message rather than raised wherever it lands (as KeyboardInterrupt
    is on trio), a signal stops the run at an await, between two updates of its
    counts, never half way through one. The receiver is open before ``run``
    starts; a signal before that still raises, before anything was counted.
    """

    async def watch(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        with anyio.open_signal_receiver(*signals) as received:
            task_status.started()
            async for _ in received:
                state.interrupted = True
                scope.cancel()
                return

    with anyio.CancelScope() as scope:
        async with background_task_group() as tasks:
            await tasks.start(watch)
            await run()


def run_on_backend(function: Callable[[], Awaitable[T]], backend: str) -> T:
    """Run ``function`` on the event loop ``backend`` (asyncio when trio is not installed)."""
    if backend == "trio":
        try:
            import trio  # noqa: F401
        except ImportError:
            backend = "asyncio"
    return anyio.run(functools.partial(function), backend=backend)
