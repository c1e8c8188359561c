"""``python -m triopipe``: the same program as the ``triopipe`` command."""

from __future__ import annotations

import sys

from ._cli import main

sys.exit(main())
