"""``gtls bench``: gtls's server and client measured side by side with trio, openssl s_server and nginx.

The run is interleaved (A B C D, B C D A, …) so that the drift of a small shared machine hits every peer alike, and
every figure is reported as a median with its min–max and as a ratio to gtls. See ``benchmarks/README.md``.
"""

from __future__ import annotations


def main(argv: list[str]) -> int:
    """Run ``gtls bench`` with ``argv`` (the arguments after ``bench``); returns the exit status."""
    from .cli import main as run  # lazy: ``gtls`` start-up must not pay for the benchmark

    return run(argv)


__all__ = ["main"]
