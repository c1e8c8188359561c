"""B8's link: a server behind real round trips, by the best means this machine has.

In order of preference:

1. ``netem`` on a veth pair into a network namespace holding the server (the
   kernel adds the delay; nothing in user space is charged for it);
2. the server in a network namespace, reached over a veth pair through
   :mod:`benchmarks.delay_proxy` (a user-space proxy holding each chunk for
   the delay; its CPU time is reported with each run);
3. the same proxy in front of a loopback server, where namespaces cannot be
   made (no root, no ``ip``).

:func:`link_kind` probes once which of these works; :func:`open_link` gives a
running server behind the chosen link for one run. With no delay, clients
connect to the server directly (over the veth pair where there is one).
Every namespace, veth pair and process made here is removed on exit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from triopipe.testing import redis_server_process

from ._raw import RawConnection

__all__ = ["Link", "LinkKind", "describe", "link_kind", "open_link"]

LinkKind = Literal["netem", "namespace+proxy", "loopback+proxy"]

_DESCRIPTIONS: dict[LinkKind, str] = {
    "netem": "netem delay on a veth pair, server in a network namespace",
    "namespace+proxy": (
        "server in a network namespace over a veth pair; delay added by "
        "benchmarks/delay_proxy.py (netem is not available in this kernel)"
    ),
    "loopback+proxy": (
        "server on loopback; delay added by benchmarks/delay_proxy.py "
        "(no root or no `ip`: no network namespace)"
    ),
}

_SERVER_PORT = 6379  # alone in its namespace: no other process can hold it
_READY_TIMEOUT = 10.0


@dataclasses.dataclass
class Link:
    """A running server behind a link, for one run.

    Attributes:
        client_url: where the measured client connects (the proxy, if any).
        server_url: the server itself, for loading data and sampling memory.
        kind: which means adds the delay.
        delay_us: the one-way delay added, in microseconds.
        rtt_us: the median round trip of a PING through the link, measured
            as it opened (the delay added, the hops and the machine's load).
        proxy: after exit, the proxy's report (``cpu_seconds``, ``chunks``),
            or None when no proxy ran.
    """

    client_url: str
    server_url: str
    kind: LinkKind
    delay_us: int
    rtt_us: float = 0.0
    proxy: dict[str, float] | None = None


def describe(kind: LinkKind) -> str:
    """How ``kind`` adds the delay, in a sentence for the output."""
    return _DESCRIPTIONS[kind]


def _ip(*args: str, namespace: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    subprocess.run([*prefix, "ip", *args], check=True, capture_output=True, timeout=30)


@dataclasses.dataclass(frozen=True)
class _Namespace:
    name: str
    host_device: str
    server_device: str
    host_address: str
    server_address: str


_namespace_serial = 0


@contextlib.contextmanager
def _namespace() -> Iterator[_Namespace]:
    """A network namespace joined to this one by a veth pair with a /30 of its own."""
    global _namespace_serial
    _namespace_serial += 1
    # A subnet of 10.217.0.0/16 from our pid and a serial, so that concurrent
    # suites (on a shared machine) pick different names and addresses.
    slot = (os.getpid() * 16 + _namespace_serial) % 16384
    third, fourth = divmod(slot, 64)
    base = f"10.217.{third}"
    names = _Namespace(
        name=f"tpbench{os.getpid()}-{_namespace_serial}",
        host_device=f"tpb{slot}h",
        server_device=f"tpb{slot}s",
        host_address=f"{base}.{fourth * 4 + 1}",
        server_address=f"{base}.{fourth * 4 + 2}",
    )
    peer = names.server_device
    _ip("netns", "add", names.name)
    try:
        _ip("link", "add", names.host_device, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", names.name)
        _ip("addr", "add", f"{names.host_address}/30", "dev", names.host_device)
        _ip("link", "set", names.host_device, "up")
        _ip("addr", "add", f"{names.server_address}/30", "dev", peer, namespace=names.name)
        _ip("link", "set", peer, "up", namespace=names.name)
        _ip("link", "set", "lo", "up", namespace=names.name)
        yield names
    finally:
        # Deleting the namespace destroys its end of the pair, and so the pair.
        subprocess.run(["ip", "netns", "del", names.name], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", names.host_device], check=False, capture_output=True)


def _server_binary() -> str:
    binary = os.environ.get("TRIOPIPE_REDIS_SERVER") or shutil.which("redis-server")
    if not binary:
        raise RuntimeError("no redis-server binary (set TRIOPIPE_REDIS_SERVER)")
    return binary


@contextlib.contextmanager
def _namespaced_server(names: _Namespace) -> Iterator[str]:
    """A throwaway server inside the namespace; yields its URL."""
    directory = Path(tempfile.mkdtemp(prefix="triopipe-bench-ns-"))
    argv = ["ip", "netns", "exec", names.name, _server_binary()]
    argv += ["--bind", names.server_address, "--port", str(_SERVER_PORT)]
    argv += ["--protected-mode", "no", "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(directory)]
    with (directory / "output.log").open("wb") as output:
        process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + _READY_TIMEOUT
        while True:
            try:
                with RawConnection(names.server_address, _SERVER_PORT, timeout=1.0) as probe:
                    if probe.execute("PING") == b"PONG":
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (directory / "output.log").read_text(errors="replace")[-2000:]
                    message = f"redis-server in {names.name} did not start:\n{log}"
                    raise RuntimeError(message) from None
                time.sleep(0.05)
        yield f"redis://{names.server_address}:{_SERVER_PORT}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(directory, ignore_errors=True)


def _netem_works(device: str) -> bool:
    result = subprocess.run(
        ["tc", "qdisc", "add", "dev", device, "root", "netem", "delay", "1us"],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def _netem(device: str, delay_us: int, namespace: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    argv = [*prefix, "tc", "qdisc", "add", "dev", device, "root", "netem"]
    subprocess.run([*argv, "delay", f"{delay_us}us"], check=True, capture_output=True)


@functools.cache
def link_kind() -> LinkKind:
    """Which link this machine can make (probed once: a namespace is made and removed)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return "loopback+proxy"
    try:
        with _namespace() as names:
            if shutil.which("tc") is not None and _netem_works(names.host_device):
                return "netem"
    except (OSError, subprocess.SubprocessError):
        return "loopback+proxy"
    return "namespace+proxy"


@contextlib.contextmanager
def _delay_proxy(server_url: str, delay_us: int, report: Link) -> Iterator[str]:
    """The delaying proxy in front of ``server_url``; yields its URL, fills ``report.proxy``."""
    host, port = server_url.removeprefix("redis://").rsplit(":", 1)
    argv = [sys.executable, "-m", "benchmarks.delay_proxy", host, port, str(delay_us)]
    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen(
        argv, cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        listening = process.stdout.readline().strip()
        if not listening.isdigit():
            raise RuntimeError(f"the delay proxy did not start (it said {listening!r})")
        yield f"redis://127.0.0.1:{listening}"
    finally:
        process.stdin.close()  # the proxy's signal to stop and report
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        lines = process.stdout.read().strip().splitlines()
        process.stdout.close()
        if lines:
            report.proxy = json.loads(lines[-1])


def _round_trip_us(url: str, count: int = 21) -> float:
    with RawConnection.from_url(url) as connection:
        connection.execute("PING")
        times = []
        for _ in range(count):
            start = time.perf_counter()
            connection.execute("PING")
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


@contextlib.contextmanager
def open_link(delay_us: int) -> Iterator[Link]:
    """A fresh server behind a link with ``delay_us`` of one-way delay, for one run."""
    kind = link_kind()
    with contextlib.ExitStack() as stack:
        if kind == "loopback+proxy":
            server_url = stack.enter_context(redis_server_process()).url
        else:
            names = stack.enter_context(_namespace())
            if kind == "netem" and delay_us:
                # The delay on each end's egress: one way each, as the proxy does.
                _netem(names.host_device, delay_us)
                _netem(names.server_device, delay_us, namespace=names.name)
            server_url = stack.enter_context(_namespaced_server(names))
        link = Link(server_url, server_url, kind, delay_us)
        if delay_us and kind != "netem":
            link.client_url = stack.enter_context(_delay_proxy(server_url, delay_us, link))
        link.rtt_us = _round_trip_us(link.client_url)
        yield link
