"""Shared by the benchmark scripts: run ``gtls bench`` on one group of scenarios."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def run_group(default: Sequence[str], quick: Sequence[str]) -> int:
    """Run ``default`` (or ``quick`` with ``--quick``) plus any scenario named on the command line.

    Every other argument (``--json FILE``, ``--rounds N``, ``--peers …``) goes to ``gtls bench`` unchanged.
    """
    from gtls.bench import main

    argv = sys.argv[1:]
    named = any(not arg.startswith("-") for arg in argv)  # a scenario given: run exactly what was asked
    chosen = [] if named else list(quick if "--quick" in argv else default)
    return main([*chosen, *argv])
