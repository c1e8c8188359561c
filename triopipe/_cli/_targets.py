"""Where ``import`` and ``copy`` connect: one server, shards or a cluster.

Rules that live here: every URL is checked before anything connects (a bad
one is a usage error naming it, its password masked); a URL without a
password takes the one of ``REDISCLI_AUTH`` (as ``redis-cli`` does) or
``TRIOPIPE_PASSWORD``, so it need not appear on the command line (and in
``ps``); a target is named in summaries without its credentials.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

from .._client import open_client
from .._cluster import open_cluster_client
from .._config import parse_url
from .._sharded import open_sharded_client

__all__ = ["PASSWORD_VARIABLES", "Target", "open_target"]

#: Environment variables a password is taken from, first set wins.
PASSWORD_VARIABLES = ("REDISCLI_AUTH", "TRIOPIPE_PASSWORD")

Kind = Literal["server", "shards", "cluster"]


@dataclasses.dataclass(frozen=True)
class Target:
    """One side of a run: its kind and its URLs (shards and cluster seeds: several)."""

    kind: Kind
    urls: tuple[str, ...]

    @classmethod
    def parse(cls, kind: Kind, urls: Sequence[str]) -> Target:
        """A target from URLs (a comma-separated list counts as several).

        Raises:
            ValueError: no URL, a malformed one (named, password masked), or
                several URLs for a single server.
        """
        split = tuple(part for url in urls for part in url.split(",") if part)
        if not split:
            raise ValueError("no server URL given")
        for url in split:
            parse_url(url)  # raises a ValueError naming the (masked) URL
        if kind == "server" and len(split) > 1:
            raise ValueError(
                "several URLs for one server: say --shards or --cluster (for import) "
                "or --source-shards/--target-cluster ... (for copy)"
            )
        return cls(kind, split)

    def describe(self) -> str:
        """The target for people: its kind and addresses, never a password."""
        names = ", ".join(parse_url(url).url for url in self.urls)
        return names if self.kind == "server" else f"{self.kind} {names}"


def _password_options(urls: Sequence[str]) -> dict[str, Any]:
    if any(parse_url(url).password for url in urls):
        return {}
    for variable in PASSWORD_VARIABLES:
        password = os.environ.get(variable)
        if password:
            return {"password": password}
    return {}


@contextlib.asynccontextmanager
async def open_target(target: Target) -> AsyncIterator[Any]:
    """A connected client for ``target`` (``Client``, ``ShardedClient`` or ``ClusterClient``)."""
    options = _password_options(target.urls)
    if target.kind == "cluster":
        async with open_cluster_client(list(target.urls), **options) as client:
            yield client
    elif target.kind == "shards":
        async with open_sharded_client(list(target.urls), **options) as client:
            yield client
    else:
        async with open_client(target.urls[0], **options) as client:
            yield client
