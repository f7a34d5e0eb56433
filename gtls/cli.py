"""The ``gtls`` command (design §6). Subcommands are filled in by the CLI work."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("gtls: no command implemented yet", file=sys.stderr)
    return 2
