"""triopipe's comparative benchmarks: ``python -m benchmarks`` (``nox -s bench``).

Every figure is a ratio taken side by side in one run on one machine, against
the clients users would otherwise pick (redis-py, redis.asyncio, coredis,
valkey-glide) and the raw ceiling (hiredis on a bare socket,
``redis-benchmark``). The workloads B1-B7 are those of BENCHMARKS.md.

Modules:

- :mod:`benchmarks.plan`: the workloads as measurements and comparisons;
- :mod:`benchmarks.workloads`: the timed code, run in a child process;
- :mod:`benchmarks.run_one`: the child's entry point;
- :mod:`benchmarks.runner`: servers, child processes, repeats, server memory;
- :mod:`benchmarks.report`: ratios, the table, ``latest.json`` and the chart;
- :mod:`benchmarks.cli`: the command line.

The benchmarks start their own throwaway servers and are never part of the
test suite.
"""
