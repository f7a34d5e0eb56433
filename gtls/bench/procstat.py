"""CPU time and resident memory of a server's process tree, read from ``/proc`` (Linux only).

``utime + stime`` in ``/proc/PID/stat`` covers every thread of the process, including threads that already exited,
which ``/proc/PID/schedstat`` (main thread only) would miss. nginx is a master with a worker, so the whole tree counts.
"""

from __future__ import annotations

import os
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name sits in parentheses and may contain spaces: split after its closing parenthesis.
    return text[text.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree: list[int] = []
    todo = [root]
    while todo and len(tree) < 10_000:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds consumed so far by ``pids`` (all their threads)."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            # fields[11], fields[12] are utime and stime (stat fields 14 and 15).
            ticks += int(fields[11]) + int(fields[12])
    return ticks / _CLOCK_TICKS


def rss_bytes(pids: list[int]) -> int:
    """Resident set size of ``pids`` in bytes."""
    total = 0
    for pid in pids:
        try:
            resident = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        total += resident * _PAGE_SIZE
    return total
