"""Commands an input may not hold, decided before anything of theirs is sent.

Two rules, checked as commands are read (:class:`CommandCheck`):

- **Pipelines hold shared commands only.** Blocking commands (``BLPOP``),
  subscriptions, commands that change the connection's state (``SELECT``,
  ``MULTI``...) and ``WAIT``/``WAITAOF`` are refused, by their class in
  triopipe's command table.
- **With a checkpoint, commands must be idempotent** (unless the user accepts
  at-least-once delivery): a rerun from a checkpoint repeats the commands of
  unknown outcome, so only commands whose second application changes nothing
  are allowed: :data:`IDEMPOTENT`, a documented list (Redis's command table
  has no flag for this). ``ZADD`` counts only without its ``INCR`` option.

Verdicts are cached by the command name's spelling in :attr:`CommandCheck.by_name`
when the name alone decides, so the reader pays one dict look-up per command
(or per block of commands).
"""

from __future__ import annotations

from collections.abc import Sequence

from .._routing import CommandClass, command_class
from ._exits import ExitStatus

__all__ = ["IDEMPOTENT", "CommandCheck", "Verdict"]

#: A refusal: why, and the exit status it calls for; None when allowed.
Verdict = tuple[str, ExitStatus] | None

_IDEMPOTENT_NAMES = (
    "SET SETEX PSETEX SETNX MSET MSETNX GETSET SETRANGE SETBIT "
    "HSET HMSET HSETNX HDEL SADD SREM SMOVE ZADD ZREM ZREMRANGEBYSCORE ZREMRANGEBYRANK "
    "ZREMRANGEBYLEX DEL UNLINK EXPIRE PEXPIRE EXPIREAT PEXPIREAT PERSIST "
    "PFADD GEOADD RESTORE JSON.SET JSON.DEL "
    "GET MGET EXISTS TYPE TTL PTTL STRLEN HGET HGETALL SISMEMBER ZSCORE PING ECHO"
)
#: Commands applied twice with the same effect as once (see the module's docstring).
IDEMPOTENT = frozenset(name.encode() for name in _IDEMPOTENT_NAMES.split(" "))

_REFUSED_IN_PIPELINES = {
    CommandClass.BLOCKING: "a blocking command cannot be pumped",
    CommandClass.SUBSCRIPTION: "a subscription command cannot be pumped",
    CommandClass.CONNECTION_STATE: "a command changing the connection's state cannot be pumped",
    CommandClass.PINNED: "WAIT and WAITAOF cannot be pumped (see --wait-replicas)",
}
# Whose class or idempotency depends on more than the name: never cached.
_BY_ARGUMENTS = {b"XREAD", b"XREADGROUP", b"CLIENT", b"CONFIG", b"OBJECT", b"CLUSTER", b"ZADD"}
# Names cached at most (an input of random names must not grow memory).
_CACHE_LIMIT = 10_000


class CommandCheck:
    """Refuses commands a pipeline may not hold, and with ``idempotent`` non-idempotent ones."""

    def __init__(self, *, idempotent: bool = False) -> None:
        self._idempotent = idempotent
        #: Verdicts decided by the name alone, by its spelling (b"set", b"SET").
        self.by_name: dict[bytes, Verdict] = {}

    def __call__(self, command: Sequence[bytes]) -> Verdict:
        name = command[0]
        verdict = self.by_name.get(name, ())
        if verdict != ():
            return verdict  # type: ignore[return-value]
        kind = command_class(command)
        verdict = self._judge(command, kind)
        upper = name.upper()
        if (
            kind is not CommandClass.UNKNOWN
            and upper not in _BY_ARGUMENTS
            and len(self.by_name) < _CACHE_LIMIT
        ):
            self.by_name[name] = verdict
        return verdict

    def _judge(self, command: Sequence[bytes], kind: CommandClass) -> Verdict:
        refusal = _REFUSED_IN_PIPELINES.get(kind)
        name = command[0].decode("utf-8", "replace")[:40]
        if refusal is not None:
            return (f"{refusal}: {name}", ExitStatus.BAD_INPUT)
        if self._idempotent and not _idempotent(command):
            return (
                f"{name} is not idempotent: a rerun from the checkpoint may apply it twice; "
                "pass --at-least-once to accept that",
                ExitStatus.REFUSED,
            )
        return None


def _idempotent(command: Sequence[bytes]) -> bool:
    name = command[0].upper()
    if name == b"ZADD":
        return not any(argument.upper() == b"INCR" for argument in command[2:])
    return name in IDEMPOTENT
