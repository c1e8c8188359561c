"""The retry policies as tables: every error kind x attempt x ``at_least_once`` -> what happens.

A delay is one of three classes: give up (None), retry now (0.0), or retry
after a capped, jittered exponential backoff, ``min(cap, base * 2**attempt)``
times a factor in ``[0.5, 1)``. The rule (DESIGN.md, "Failures"): retry only
what the server provably did not execute, unless ``at_least_once``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from triopipe import _retry
from triopipe._exceptions import (
    AskError,
    AuthenticationError,
    BusyLoadingError,
    ClusterDownError,
    ConnectError,
    ConnectionLostError,
    CrossSlotError,
    ExecAbortError,
    MaxClientsError,
    MovedError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ProtocolError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
    WatchError,
    WrongTypeError,
    error_from_reply,
)
from triopipe._retry import ClusterRetryPolicy, RetryPolicy

NOW, BACKOFF, NEVER = "now", "backoff", "give up"

# error, then what the node policy does without and with at_least_once, then
# what the cluster policy does without and with it.
TABLE: list[tuple[str, Callable[[], BaseException], str, str, str, str]] = [
    ("lost-unsent", lambda: ConnectionLostError("x", sent=False), NOW, NOW, BACKOFF, BACKOFF),
    ("lost-sent", lambda: ConnectionLostError("x", sent=True), NEVER, NOW, NEVER, NOW),
    ("connect", lambda: ConnectError("refused"), NOW, NOW, BACKOFF, BACKOFF),
    (
        "loading",
        lambda: error_from_reply("LOADING loading dataset"),
        BACKOFF,
        BACKOFF,
        BACKOFF,
        BACKOFF,
    ),
    (
        "max-clients",
        lambda: error_from_reply("ERR max number of clients reached"),
        BACKOFF,
        BACKOFF,
        NEVER,
        NEVER,
    ),
    ("moved", lambda: error_from_reply("MOVED 3999 127.0.0.1:6381"), NEVER, NEVER, NOW, NOW),
    ("ask", lambda: error_from_reply("ASK 3999 127.0.0.1:6381"), NEVER, NEVER, NOW, NOW),
    ("tryagain", lambda: error_from_reply("TRYAGAIN multi-key"), NEVER, NEVER, BACKOFF, BACKOFF),
    ("clusterdown", lambda: error_from_reply("CLUSTERDOWN down"), NEVER, NEVER, BACKOFF, BACKOFF),
    ("readonly", lambda: error_from_reply("READONLY replica"), NEVER, NEVER, NEVER, NEVER),
    ("wrongtype", lambda: error_from_reply("WRONGTYPE wrong kind"), NEVER, NEVER, NEVER, NEVER),
    ("err", lambda: error_from_reply("ERR syntax error"), NEVER, NEVER, NEVER, NEVER),
    ("oom", lambda: error_from_reply("OOM maxmemory"), NEVER, NEVER, NEVER, NEVER),
    ("noscript", lambda: error_from_reply("NOSCRIPT no script"), NEVER, NEVER, NEVER, NEVER),
    ("execabort", lambda: error_from_reply("EXECABORT aborted"), NEVER, NEVER, NEVER, NEVER),
    ("crossslot", lambda: error_from_reply("CROSSSLOT slots"), NEVER, NEVER, NEVER, NEVER),
    ("noperm", lambda: error_from_reply("NOPERM user"), NEVER, NEVER, NEVER, NEVER),
    ("wrongpass", lambda: error_from_reply("WRONGPASS invalid"), NEVER, NEVER, NEVER, NEVER),
    ("watch", WatchError, NEVER, NEVER, NEVER, NEVER),
    ("protocol", lambda: ProtocolError("bad byte"), NEVER, NEVER, NEVER, NEVER),
    ("timeout", TimeoutError, NEVER, NEVER, NEVER, NEVER),
    ("os-error", lambda: OSError("reset"), NEVER, NEVER, NEVER, NEVER),
    ("runtime", lambda: RuntimeError("bug"), NEVER, NEVER, NEVER, NEVER),
]


def delay_class(delay: float | None, attempt: int) -> str:
    """Name a delay's class, checking a backoff against its bounds for ``attempt``."""
    if delay is None:
        return NEVER
    if delay == 0.0:
        return NOW
    ceiling = min(_retry._REFUSAL_BACKOFF_CAP, _retry._REFUSAL_BACKOFF_BASE * 2.0**attempt)
    assert 0.5 * ceiling <= delay <= ceiling, (delay, attempt)
    return BACKOFF


def test_the_table_builds_the_errors_it_names() -> None:
    """Each row's error is of the class the reply maps to (the table tests what it says)."""
    kinds = {name: make() for name, make, *_ in TABLE}
    expected = {
        "loading": BusyLoadingError,
        "max-clients": MaxClientsError,
        "moved": MovedError,
        "ask": AskError,
        "tryagain": TryAgainError,
        "clusterdown": ClusterDownError,
        "readonly": ReadOnlyError,
        "wrongtype": WrongTypeError,
        "oom": OutOfMemoryError,
        "noscript": NoScriptError,
        "execabort": ExecAbortError,
        "crossslot": CrossSlotError,
        "noperm": NoPermissionError,
        "wrongpass": AuthenticationError,
    }
    for name, cls in expected.items():
        assert type(kinds[name]) is cls, name
    assert type(kinds["err"]) is ResponseError


def node(at_least_once: bool) -> RetryPolicy:
    return RetryPolicy(attempts=3, at_least_once=at_least_once)


def cluster(at_least_once: bool) -> RetryPolicy:
    # ``attempts`` is the node clients' business: the cluster counts ``redirects``.
    return ClusterRetryPolicy(attempts=1, redirects=16, at_least_once=at_least_once)


# policy, its column in TABLE, retries it still makes, retries past its limit
POLICIES = [
    ("node", node, 0, [0, 1, 2], [3, 4, 50]),
    ("cluster", cluster, 2, [0, 1, 5, 15], [16, 17, 100]),
]


def cases(within: bool) -> list[Any]:
    """Every policy x error x ``at_least_once`` x attempt, with the class expected."""
    params = []
    for policy_name, policy, column, retried, exhausted in POLICIES:
        for name, make, *classes in TABLE:
            for at_least_once in (False, True):
                expected = classes[column + at_least_once] if within else NEVER
                mode = "at-least-once" if at_least_once else "at-most-once"
                params += [
                    pytest.param(
                        policy(at_least_once),
                        make,
                        attempt,
                        expected,
                        id=f"{policy_name}-{name}-{mode}-{attempt}",
                    )
                    for attempt in (retried if within else exhausted)
                ]
    return params


@pytest.mark.parametrize(("policy", "make", "attempt", "expected"), cases(within=True))
def test_policy_within_its_limit_follows_the_table(
    policy: RetryPolicy, make: Callable[[], BaseException], attempt: int, expected: str
) -> None:
    """Node policy, retries 1 to 3; cluster policy, retries 1 to 16: as the table says."""
    assert delay_class(policy.delay(make(), attempt), attempt) == expected


@pytest.mark.parametrize(
    ("policy", "make", "attempt"),
    [pytest.param(*case.values[:3], id=case.id) for case in cases(within=False)],
)
def test_policy_past_its_limit_gives_up(
    policy: RetryPolicy, make: Callable[[], BaseException], attempt: int
) -> None:
    """Past ``attempts`` (node) or ``redirects`` (cluster: a redirect loop ends), never retry."""
    assert policy.delay(make(), attempt) is None


@pytest.mark.parametrize("make", [make for _, make, *_ in TABLE])
@pytest.mark.parametrize("at_least_once", [False, True])
def test_node_policy_without_attempts_never_retries(
    make: Callable[[], BaseException], at_least_once: bool
) -> None:
    """``attempts=0`` disables retrying, even of what was never sent."""
    assert RetryPolicy(attempts=0, at_least_once=at_least_once).delay(make(), 0) is None


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(0, 0.05), (1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (12, 1.0)],
)
@pytest.mark.parametrize("factor", [0.5, 0.75, 1.0])
def test_backoff_doubles_from_50ms_to_a_1s_cap_times_the_jitter(
    monkeypatch: pytest.MonkeyPatch, attempt: int, ceiling: float, factor: float
) -> None:
    """The backoff is ``min(1 s, 50 ms * 2**attempt)`` times the jitter drawn in [0.5, 1)."""
    draws: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        draws.append((low, high))
        return factor

    monkeypatch.setattr(_retry.random, "uniform", uniform)
    loading = error_from_reply("LOADING loading")
    assert RetryPolicy(attempts=20).delay(loading, attempt) == pytest.approx(ceiling * factor)
    assert ClusterRetryPolicy().delay(loading, attempt) == pytest.approx(ceiling * factor)
    assert draws == [(0.5, 1.0), (0.5, 1.0)]


@given(attempt=st.integers(0, 15), kind=st.sampled_from(["loading", "tryagain", "connect"]))
def test_cluster_backoff_stays_within_bounds_with_real_jitter(attempt: int, kind: str) -> None:
    """Unpatched jitter: every backoff lies in [ceiling / 2, ceiling]."""
    make = {name: make for name, make, *_ in TABLE}[kind]
    delay = ClusterRetryPolicy().delay(make(), attempt)
    assert delay_class(delay, attempt) == BACKOFF
