#!/usr/bin/env python3
"""Plot server CPU per handshake by scenario and implementation from a ``gtls bench --json`` file.

    python benchmarks/plot.py                                  # benchmarks/results.json -> cpu_per_handshake.png
    python benchmarks/plot.py results.json --output out.png

Needs matplotlib (``pip install -e '.[bench]'``). Bars are medians over rounds, whiskers the min–max.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
IMPLS = ("gtls", "trio", "openssl", "nginx")
COLOURS = {"gtls": "#2b7bba", "trio": "#8c8c8c", "openssl": "#e08a2c", "nginx": "#3a9e4f"}
METRIC = "server_cpu_ms_per_handshake"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", default=str(HERE / "results.json"))
    parser.add_argument("--output", default=str(HERE / "cpu_per_handshake.png"))
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    document = json.loads(Path(args.results).read_text())
    rows = [s for s in document["summary"] if s["metric"] == METRIC]
    scenarios = list(dict.fromkeys(s["scenario"] for s in rows))
    impls = [impl for impl in IMPLS if any(s["impl"] == impl for s in rows)]
    cell = {(s["scenario"], s["impl"]): s for s in rows}
    width = 0.8 / max(1, len(impls))
    fig, ax = plt.subplots(figsize=(max(7.0, 1.3 * len(scenarios)), 4.5))
    for index, impl in enumerate(impls):
        xs, medians, lows, highs = [], [], [], []
        for position, scenario in enumerate(scenarios):
            s = cell.get((scenario, impl))
            if s is None:
                continue
            xs.append(position + (index - (len(impls) - 1) / 2) * width)
            medians.append(s["median"])
            lows.append(s["median"] - s["low"])
            highs.append(s["high"] - s["median"])
        ax.bar(xs, medians, width, yerr=[lows, highs], capsize=2, label=impl, color=COLOURS.get(impl))
    ax.set_xticks(range(len(scenarios)))
    ax.set_xticklabels(scenarios, rotation=25, ha="right")
    ax.set_ylabel("server CPU per handshake (ms)")
    ax.set_title(f"Server CPU per completed handshake — {document['date']}, {document['machine']['nproc']} CPUs")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
