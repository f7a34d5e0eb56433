#!/usr/bin/env python3
"""Bulk echo throughput on one stream with 16 KiB and 64 KiB writes: MB/s and server CPU per KiB.

    python benchmarks/bulk.py             # 256 MiB per measurement, 3 rounds: about 1 minute
    python benchmarks/bulk.py --quick     # 64 MiB, 2 rounds, 16 KiB writes only: under 30 s
    python benchmarks/bulk.py --bulk-mib 1024
"""

import sys

from _group import run_group

if __name__ == "__main__":
    sys.exit(run_group(("bulk-16k", "bulk-64k"), ("bulk-16k",)))
