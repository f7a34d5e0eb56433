"""Shared by the benchmark scripts: run ``gtls bench`` on one group of scenarios."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def run_group(default: Sequence[str], quick: Sequence[str]) -> int:
    """Run ``default`` (or ``quick`` with ``--quick``) plus any scenario named on the command line.

    Every other argument (``--json FILE``, ``--rounds N``, ``--peers …``) goes to ``gtls bench`` unchanged.
    """
    from gtls.bench import main
    from gtls.bench.cli import parser

    argv = sys.argv[1:]
    asked = parser().parse_args(argv)  # exits on a usage error, with gtls bench's help
    # Scenarios given on the command line: run exactly those.
    chosen = [] if asked.scenario else list(quick if asked.quick else default)
    return main([*chosen, *argv])
