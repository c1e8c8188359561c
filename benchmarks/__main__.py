"""``python -m benchmarks``: run the comparative benchmark suite (see :mod:`benchmarks.cli`)."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
