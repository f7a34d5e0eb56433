#!/usr/bin/env python3
"""Server memory per idle connection: RSS growth while 1,000 handshaken connections stay open.

    python benchmarks/idle_memory.py              # 1,000 connections, 3 rounds, a fresh server each time
    python benchmarks/idle_memory.py --quick      # 300 connections, 2 rounds: under 1 minute
    python benchmarks/idle_memory.py --idle-count 5000
"""

import sys

from _group import run_group

if __name__ == "__main__":
    sys.exit(run_group(("idle-memory",), ("idle-memory",)))
