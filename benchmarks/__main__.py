"""``python -m benchmarks``: run the comparative benchmark suite (see :mod:`benchmarks.cli`).

``python -m benchmarks cluster`` runs the Redis Cluster benchmark instead
(see :mod:`benchmarks.cluster`).
"""

from __future__ import annotations

import sys

if sys.argv[1:2] == ["cluster"]:
    from .cluster import main as cluster_main

    cluster_main(sys.argv[2:])
    raise SystemExit(0)

from .cli import main

raise SystemExit(main())
