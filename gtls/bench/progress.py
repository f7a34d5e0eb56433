"""Progress on stderr: one rewritten status line on a terminal, plain lines otherwise (logs, CI)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = max(1, total)
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()

    def step(self, text: str) -> None:
        """Announce the next measurement."""
        self.done += 1
        elapsed = time.monotonic() - self.started
        line = f"[{self.done}/{self.total} {elapsed:5.0f}s] {text}"
        if self.tty:
            self.stream.write("\r\033[K" + line[:150])
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        """A message that must stay visible (a skipped peer, a failure)."""
        self.stream.write(("\r\033[K" if self.tty else "") + text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(f"done in {time.monotonic() - self.started:.0f} s\n")
        self.stream.flush()
