"""``gtls bench``: the handshake benchmark lives in ``gtls.bench`` (another module); this only hands over."""

from __future__ import annotations

import importlib

from ._common import EXIT_FAILURE, Subcommands, stderr_line


def register(commands: Subcommands) -> None:
    commands.add_parser(
        "bench",
        help="run the handshake benchmark (gtls.bench; see 'gtls bench --help')",
        description="Run the handshake benchmark. Arguments are passed to gtls.bench.",
        add_help=False,
    )


def run_bench(argv: list[str]) -> int:
    try:
        bench = importlib.import_module("gtls.bench")
    except ModuleNotFoundError as exc:
        if exc.name not in ("gtls.bench", "gtls"):
            raise
        stderr_line("gtls: bench: the benchmark module gtls.bench is not installed in this build")
        return EXIT_FAILURE
    entry = getattr(bench, "main", None)
    if not callable(entry):
        stderr_line("gtls: bench: gtls.bench has no main(argv) entry point")
        return EXIT_FAILURE
    result = entry(list(argv))
    return int(result) if isinstance(result, int) else 0

