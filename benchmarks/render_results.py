#!/usr/bin/env python3
"""Write the results section of benchmarks/README.md from a ``gtls bench --json`` file.

    python benchmarks/render_results.py                 # benchmarks/results.json into benchmarks/README.md
    python benchmarks/render_results.py other.json --print

The section sits between the ``results:start`` and ``results:end`` markers; the rest of the README is kept.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gtls.bench.report import markdown_report

HERE = Path(__file__).resolve().parent
START, END = "<!-- results:start -->", "<!-- results:end -->"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", default=str(HERE / "results.json"))
    parser.add_argument("--readme", default=str(HERE / "README.md"))
    parser.add_argument("--print", action="store_true", help="print the section instead of editing the README")
    args = parser.parse_args()
    section = markdown_report(json.loads(Path(args.results).read_text()))
    if args.print:
        print(section)
        return 0
    readme = Path(args.readme)
    text = readme.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{section}{END}{tail}")
    print(f"updated {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
