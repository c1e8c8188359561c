"""triopipe's comparative benchmarks: ``python -m benchmarks`` (``nox -s bench``).

Every figure is a ratio taken side by side in one run on one machine, against
the clients users would otherwise pick (redis-py, redis.asyncio, coredis,
valkey-glide) and the raw ceiling (hiredis on a bare socket,
``redis-benchmark``, and B2's lean probe client). The workloads B1-B8 are
those of BENCHMARKS.md.

Modules:

- :mod:`benchmarks.plan`: the workloads as measurements and comparisons;
- :mod:`benchmarks.workloads`: the timed code, run in a child process;
- :mod:`benchmarks.round_trips`: B8's timed code (bulk and sequential work over a link);
- :mod:`benchmarks.probe`: the lean auto-pipelining client, B2's ceiling;
- :mod:`benchmarks.link`: B8's server behind a delay (netem, or a namespace and a proxy);
- :mod:`benchmarks.delay_proxy`: the delaying TCP proxy, run as its own process;
- :mod:`benchmarks.run_one`: the child's entry point;
- :mod:`benchmarks.runner`: servers, child processes, repeats, server memory;
- :mod:`benchmarks.report`: ratios, the table, ``latest.json`` and the chart;
- :mod:`benchmarks.cli`: the command line.

The benchmarks start their own throwaway servers and are never part of the
test suite.
"""
