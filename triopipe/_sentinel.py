"""Redis Sentinel: a client for whichever server the sentinels name as the primary.

Theory of operation
-------------------

:func:`open_sentinel_client` yields a :class:`SentinelClient`: an ordinary
:class:`~triopipe.Client` (auto-pipelining, windows, dedicated connections,
retries: all unchanged) whose connection group can be *retargeted*
(:meth:`~triopipe._group.ConnectionGroup.retarget`) when the primary
changes. A retarget breaks every link to the old server, so the core's rule
holds across a failover: a command written to the old primary fails with
``ConnectionLostError(sent=True)`` (its outcome is unknown; never resent), a
command not yet written goes to the new one.

:class:`_Sentinels` finds the primary and follows it:

- *discovery*: each sentinel in turn (the last one that answered first) is
  asked ``SENTINEL GET-MASTER-ADDR-BY-NAME``; the address it names is
  believed only once that server says ``master`` to ``ROLE``;
- *following*: one task stays subscribed to ``+switch-master`` on a
  sentinel (moving to the next when that one is lost) and retargets the
  client the moment the sentinels name a new primary, so that writes stop
  reaching a demoted server at once; after subscribing it checks once, for
  a switch it could have missed meanwhile. The announcing sentinel is asked
  first from then on: the others learn of the switch seconds later;
- *checking again*: a broken link, a failed connect or a ``READONLY`` reply
  asks for a discovery (:meth:`_Sentinels.check_soon`); the checker runs one
  at a time, and keeps trying while no sentinel names a primary that answers.
  An announcement heard during a discovery wins over its answer: the
  discovery may have asked a sentinel not yet told, and a demoted primary
  still says ``master`` until the sentinels reconfigure it.

With ``read_from_replicas=True`` read-only commands go to one replica of
those ``SENTINEL REPLICAS`` lists as healthy (a second retargetable client),
and to the primary when there is none or the replica cannot be reached.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc

from ._client import Client
from ._cluster_map import READ_ONLY_COMMANDS, Address, fields_of, text_of
from ._commands import Arg
from ._config import DEFAULT_URL, ClientConfig, parse_url
from ._exceptions import (
    ConnectError,
    ConnectionLostError,
    ReadOnlyError,
    TransportError,
    TriopipeError,
)
from ._group import ConnectionGroup
from ._protocols import DirectRoute
from ._pubsub import Gap
from ._tasks import background_task_group

__all__ = ["SentinelClient", "open_sentinel_client"]

# Pause between discoveries while none succeeds (doubling up to the cap), and
# between subscriptions to +switch-master when sentinels cannot be reached.
_RECHECK_DELAY = 0.1
_RECHECK_CAP = 1.0
_RESUBSCRIBE_DELAY = 0.2
# Replica flags that rule a replica out for reads.
_UNHEALTHY_FLAGS = frozenset({"s_down", "o_down", "disconnected"})


class _Sentinels:
    """The sentinels of one service: who the primary is, and following it when it changes."""

    def __init__(
        self,
        sentinels: Sequence[ClientConfig],
        service_name: str,
        data_config: ClientConfig,
        task_group: anyio.abc.TaskGroup,
        read_from_replicas: bool,
    ) -> None:
        self.service_name = service_name
        self.data_config = data_config
        self._task_group = task_group
        self._read_from_replicas = read_from_replicas
        self._sentinels = [Client(ConnectionGroup(config, task_group)) for config in sentinels]
        self._check_wanted = anyio.Event()
        self.primary: Address | None = None
        self.replica: Address | None = None
        self.client: SentinelClient | None = None
        self.replica_client: Client | None = None
        self.switches = 0
        # The error that breaks links on a switch: not a reason to check again.
        self.switch_error: BaseException | None = None
        # +switch-master messages heard: a discovery that overlapped one may
        # have asked a sentinel not yet told (and a demoted primary still
        # says master for a while), so its answer is older news: dropped.
        self._announcements = 0

    # -- asking the sentinels ----------------------------------------------------------

    def _in_turn(self) -> list[Client]:
        return list(self._sentinels)

    def _answered(self, sentinel: Client) -> None:
        """Ask ``sentinel`` first from now on (it answered)."""
        self._sentinels.remove(sentinel)
        self._sentinels.insert(0, sentinel)

    async def discover(self) -> tuple[Address, Address | None]:
        """The primary that a sentinel names and that says ``master`` itself.

        Also a healthy replica for reads, with ``read_from_replicas`` (else None).

        Raises:
            ConnectError: no sentinel named a primary that confirmed it,
                saying what each answered.
        """
        problems: list[str] = []
        timeout = self.data_config.connect_timeout
        for sentinel in self._in_turn():
            where = sentinel.config.address
            try:
                with anyio.fail_after(timeout):
                    reply = await sentinel.execute(
                        "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name
                    )
            except (TriopipeError, TimeoutError) as exc:
                problems.append(f"sentinel {where}: {exc}")
                continue
            if not reply:
                problems.append(f"sentinel {where} does not know {self.service_name!r}")
                continue
            address = Address(text_of(reply[0]), int(reply[1]))
            role = await self._role(address)
            if role != "master":
                problems.append(f"sentinel {where} names {address}, which says {role}")
                continue
            self._answered(sentinel)
            replica = None
            if self._read_from_replicas:
                replica = await self._healthy_replica(sentinel)
            return address, replica
        raise ConnectError(
            f"no sentinel named a primary for {self.service_name!r}: " + "; ".join(problems)
        )

    async def _role(self, address: Address) -> str:
        """What the server at ``address`` says it is (``ROLE``), or why it could not say."""
        config = dataclasses.replace(
            self.data_config, host=address.host, port=address.port, connections=1
        )
        group = ConnectionGroup(config, self._task_group)
        try:
            with anyio.fail_after(config.connect_timeout):
                reply = await Client(group).execute("ROLE")
            return text_of(reply[0])
        except (TriopipeError, TimeoutError) as exc:
            return f"nothing ({exc})"
        finally:
            group.close()

    async def _healthy_replica(self, sentinel: Client) -> Address | None:
        """One replica the sentinel lists as healthy, at random; None if there is none."""
        try:
            with anyio.fail_after(self.data_config.connect_timeout):
                reply = await sentinel.execute("SENTINEL", "REPLICAS", self.service_name)
        except (TriopipeError, TimeoutError):
            return None
        healthy = list(_healthy_replicas(reply))
        if self.replica in healthy:
            return self.replica  # keep the connections we have
        return random.choice(healthy) if healthy else None

    # -- following the primary ------------------------------------------------------------

    def check_soon(self) -> None:
        """Ask the checker for a discovery (a link broke, a write met ``READONLY``)."""
        self._check_wanted.set()

    def link_lost(self, error: BaseException) -> None:
        """A link of the client broke or could not connect: the primary may have changed."""
        if error is not self.switch_error:
            self.check_soon()

    def switch_to(self, primary: Address, replica: Address | None) -> None:
        """Aim the client at ``primary`` (and reads at ``replica``) if they changed."""
        client = self.client
        self.primary = primary
        # Compared with where the client is aimed, not with the last name
        # heard: a client aimed elsewhere (READONLY) comes back too.
        old = None if client is None else Address(client.config.host, client.config.port)
        if client is not None and primary != old:
            self.switches += 1
            error = ConnectionLostError(
                f"{old} is no longer the primary of {self.service_name!r}: "
                f"the sentinels named {primary}",
                sent=True,
            )
            client.retarget(self.config_for(primary), error)
            observer = self.data_config.observer
            if observer is not None:
                observer.primary_changed(self.service_name, str(old), str(primary))
        replica_client = self.replica_client
        if replica != self.replica and replica_client is not None:
            replica_group = replica_client.group
            error = self.switch_error = ConnectionLostError(
                f"reads of {self.service_name!r} move from replica {self.replica} to "
                f"{replica or 'the primary'}",
                sent=True,
            )
            self.replica = replica
            if replica is not None:
                replica_group.retarget(self.config_for(replica), error)
            else:
                replica_group.close()
                self.replica_client = None
        elif replica is not None and replica_client is None:
            self.replica = replica
            self.replica_client = Client(
                ConnectionGroup(self.config_for(replica), self._task_group)
            )

    def config_for(self, address: Address) -> ClientConfig:
        return dataclasses.replace(self.data_config, host=address.host, port=address.port)

    async def check(self) -> None:
        """Discover the primary and follow it; raise if no sentinel could say.

        An announcement heard meanwhile wins over what the discovery found.
        """
        announcements = self._announcements
        primary, replica = await self.discover()
        if announcements == self._announcements:
            self.switch_to(primary, replica)

    async def run_checker(self) -> None:
        """One discovery at a time, on request; again while none succeeds, backing off."""
        delay = _RECHECK_DELAY
        while True:
            await self._check_wanted.wait()
            self._check_wanted = anyio.Event()
            try:
                await self.check()
            except ConnectError:
                # The sentinels may be about to name a new primary: keep
                # asking, less often the longer it takes.
                await anyio.sleep(delay)
                delay = min(delay * 2, _RECHECK_CAP)
                self.check_soon()
            except anyio.ClosedResourceError:
                return
            else:
                delay = _RECHECK_DELAY

    async def run_follower(self) -> None:
        """Stay subscribed to ``+switch-master`` on some sentinel; switch on each message."""
        while True:
            for sentinel in self._in_turn():
                try:
                    async with sentinel.subscribe("+switch-master") as subscription:
                        self.check_soon()  # a switch may have come while unsubscribed
                        async for item in subscription:
                            if isinstance(item, Gap):
                                # The link to this sentinel was down for a
                                # while: a switch may have gone unheard.
                                self.check_soon()
                                continue
                            self._on_switch(item.data, sentinel)
                except (TriopipeError, anyio.BrokenResourceError):
                    pass
                except anyio.ClosedResourceError:
                    return
                await anyio.sleep(_RESUBSCRIBE_DELAY)

    def _on_switch(self, data: Any, sentinel: Client) -> None:
        """A ``+switch-master`` message: ``name old-host old-port new-host new-port``."""
        words = text_of(data).split()
        if len(words) == 5 and words[0] == self.service_name:
            try:
                primary = Address(words[3], int(words[4]))
            except ValueError:
                return
            # This sentinel knows; the others may learn seconds later.
            self._answered(sentinel)
            self._announcements += 1
            self.switch_to(primary, self.replica)
            if self._read_from_replicas:
                self.check_soon()  # the replicas changed too: pick one again

    def close(self) -> None:
        for sentinel in self._sentinels:
            sentinel.group.close()
        if self.replica_client is not None:
            self.replica_client.group.close()


def _healthy_replicas(reply: Iterable[Any]) -> Iterable[Address]:
    """The replicas of a ``SENTINEL REPLICAS`` reply that are up and replicating."""
    for entry in reply:
        fields = {name: text_of(value) for name, value in fields_of(entry).items()}
        flags = set(fields.get("flags", "").split(","))
        if flags & _UNHEALTHY_FLAGS or fields.get("master-link-status") != "ok":
            continue
        try:
            yield Address(fields["ip"], int(fields["port"]))
        except (KeyError, ValueError):
            continue


class SentinelClient(Client):
    """A client for the primary a set of sentinels names, made by
    :func:`~triopipe.open_sentinel_client`.

    It has the whole interface of :class:`~triopipe.Client` and follows
    failovers: when the sentinels name a new primary, commands not yet
    written go there, and commands already written to the old one fail with
    :class:`~triopipe.ConnectionLostError` (``sent=True``): they are never
    resent, since the old primary may have applied them.
    """

    __slots__ = ("_sentinels",)

    def __init__(self, group: ConnectionGroup, sentinels: _Sentinels) -> None:
        super().__init__(group)
        self._sentinels = sentinels

    def __repr__(self) -> str:
        state = "closed" if self._group.closed else "open"
        watch = self._sentinels
        return f"<SentinelClient {watch.service_name!r} primary={watch.primary} {state}>"

    @property
    def service_name(self) -> str:
        """The name the sentinels monitor the primary under."""
        return self._sentinels.service_name

    @property
    def primary(self) -> str:
        """The current primary's address (``host:port``), as the sentinels last named it."""
        return str(self._sentinels.primary)

    @property
    def failovers(self) -> int:
        """How many times the client has followed the primary to another server."""
        return self._sentinels.switches

    def retarget(self, config: ClientConfig, error: BaseException) -> None:
        """Aim every connection at the server of ``config``; their links break with ``error``.

        Links broken this way are no sign of a failover: the sentinels are
        not asked again for them.
        """
        self._sentinels.switch_error = error
        self._config = config
        self._group.retarget(config, error)

    async def execute(self, *args: Arg) -> Any:
        """Run one command on the primary (a read on a replica, if so opened).

        As :meth:`Client.execute`; a ``READONLY`` reply (the server was
        demoted) makes the client ask the sentinels again. The write is not
        resent: the error is raised.
        """
        replica = self._sentinels.replica_client
        if replica is not None and _reads_only(args):
            try:
                return await replica.execute(*args)
            except TransportError:
                self._sentinels.check_soon()  # and read from the primary
        try:
            return await super().execute(*args)
        except ReadOnlyError:
            self._sentinels.check_soon()
            raise

    def direct_route(self, args: tuple[Arg, ...]) -> DirectRoute | None:
        """The blocking facade's direct path: not for replica reads; ``READONLY`` via the loop.

        A ``READONLY`` refusal (nothing was applied) sends the command again
        through :meth:`execute`, which asks the sentinels again.
        """
        if self._sentinels.replica_client is not None and _reads_only(args):
            return None
        route = super().direct_route(args)
        return None if route is None else DirectRoute(route.connection, self._direct_retryable)

    def _direct_retryable(self, error: BaseException) -> bool:
        return isinstance(error, ReadOnlyError) or self._retryable(error)

    async def execute_many(
        self, commands: Iterable[Sequence[Arg]], *, raise_on_error: bool = True
    ) -> list[Any]:
        """As :meth:`Client.execute_many`, asking the sentinels again on ``READONLY``."""
        try:
            results = await super().execute_many(commands, raise_on_error=raise_on_error)
        except ReadOnlyError:
            self._sentinels.check_soon()
            raise
        if any(type(result) is ReadOnlyError for result in results):
            self._sentinels.check_soon()
        return results


def _reads_only(args: Sequence[Arg]) -> bool:
    try:
        return args[0] in READ_ONLY_COMMANDS
    except TypeError:  # unhashable: the server will refuse it anyway
        return False


def _sentinel_configs(sentinels: Sequence[str], data: ClientConfig) -> list[ClientConfig]:
    if isinstance(sentinels, (str, bytes)) or not sentinels:
        raise ValueError(
            "sentinels must be a non-empty list of sentinel URLs, e.g. "
            '["redis://10.0.0.1:26379", "redis://10.0.0.2:26379"]'
        )
    configs = [
        parse_url(url, {"connect_timeout": data.connect_timeout, "protocol": data.protocol})
        for url in sentinels
    ]
    for config in configs:
        if config.db != 0:
            raise ValueError("a sentinel URL names no database (give db= for the primary)")
    return configs


@asynccontextmanager
async def open_sentinel_client(
    sentinels: Sequence[str],
    service_name: str,
    *,
    read_from_replicas: bool = False,
    **options: Any,
) -> AsyncIterator[SentinelClient]:
    """Open a client for the primary the sentinels name; follow it across failovers.

    Asks the sentinels in turn for the primary of ``service_name``, checks
    with ``ROLE`` that it is one, connects to it, and stays subscribed to
    ``+switch-master`` on a sentinel to move at once when a failover ends. A
    broken link, a failed connect or a ``READONLY`` reply makes it ask the
    sentinels again. Commands written to a primary that is then replaced fail
    with :class:`~triopipe.ConnectionLostError` (``sent=True``): never
    resent.

    Args:
        sentinels: the sentinels' URLs (``redis://host:26379``, with the
            sentinels' own password if they have one).
        service_name: the name the sentinels monitor the primary under
            (``sentinel monitor <name> ...``).
        read_from_replicas: send read-only commands (``GET``, ``HGETALL``...)
            to a replica the sentinels list as healthy; replicas may lag
            behind their primary.
        **options: as for :func:`~triopipe.open_client`, for the primary and
            replicas (``password``, ``db``, ``connections``...).

    Raises:
        ConnectError: no sentinel named a primary that answered as one.
        AuthenticationError: the primary refused the credentials.
        ValueError: no sentinel URL, or a bad option.
    """
    if not isinstance(service_name, str) or not service_name:
        raise ValueError(f"service_name must be a non-empty str, not {service_name!r}")
    data_config = parse_url(DEFAULT_URL, options)
    sentinel_configs = _sentinel_configs(sentinels, data_config)
    async with background_task_group() as task_group:
        watch = _Sentinels(
            sentinel_configs, service_name, data_config, task_group, read_from_replicas
        )
        group: ConnectionGroup | None = None
        try:
            primary, replica = await watch.discover()
            watch.primary = primary
            group = ConnectionGroup(watch.config_for(primary), task_group, on_lost=watch.link_lost)
            watch.client = client = SentinelClient(group, watch)
            watch.switch_to(primary, replica)
            await group.connect()
            task_group.start_soon(watch.run_checker, name="triopipe sentinel checker")
            task_group.start_soon(watch.run_follower, name="triopipe sentinel follower")
            yield client
        finally:
            if group is not None:
                group.close()
            watch.close()
