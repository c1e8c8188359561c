"""``python -m benchmarks``: run the comparative benchmark suite (see :mod:`benchmarks.cli`).

``python -m benchmarks cluster`` runs the Redis Cluster benchmark instead
(see :mod:`benchmarks.cluster`), and ``python -m benchmarks sync`` the
blocking facade's (see :mod:`benchmarks.sync`).
"""

from __future__ import annotations

import sys

if sys.argv[1:2] == ["cluster"]:
    from .cluster import main as cluster_main

    cluster_main(sys.argv[2:])
    raise SystemExit(0)
if sys.argv[1:2] == ["sync"]:
    from .sync import main as sync_main

    sync_main(sys.argv[2:])
    raise SystemExit(0)

from .cli import main

raise SystemExit(main())
