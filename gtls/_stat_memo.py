"""Knowing that the files behind a compiled context are unchanged without reading them again.

``compile_context`` reads every file its settings name and compares contents (SHA-256) to find a cached context:
about 13 µs per call for a client with one CA file, paid on every connection by callers that pass settings rather
than a ``CompiledContext``. A file's stamp — device, inode, size, mode, and modification and change times in
nanoseconds — tells the same for one ``stat`` each, with two guards:

* a replaced file (a new inode, as an atomic rename gives), a rewrite (new times), a ``chmod`` (new mode and
  change time) or a ``touch -d`` to an old date (the change time still moves) all change the stamp;
* file systems keep times in ticks of a few milliseconds, so a file rewritten in the same tick as the stamp was
  taken could keep its stamp. As git does for its index ("racy git"), a file changed less than ``SETTLE``
  seconds before the stamp is taken is not trusted: such settings are read and compared in full every time, until
  the files have been quiet for that long.

A file's stamp is taken just *before* it is read, never after: the bytes read are then at least as new as the stamp,
so a change in between only costs one more read. Taken after, a file swapped while its settings were being compiled
(a symlink or folder swapped to a file written earlier, as Kubernetes secret volumes and ``ln -sfn`` rotations do,
which moves no time of the file itself) got the new file's stamp beside the old file's context, and that context
was served until the file changed again. It is taken again after the read, and a file whose stamp moved meanwhile
gets none (the caller's ``None``): the first stamp may not be the bytes', and a switch back would match it again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Final

#: How long a file must have been unchanged before its stamp stands in for its contents.
SETTLE: Final = 2.0

Stamp = tuple[int, int, int, int, int, int]
Stamps = tuple[tuple[str, Stamp], ...]
#: The stamp of a path that does not exist, for sources whose absence is normal (the system CA file and folder of
#: profile windows): its appearance must change the stamps as a rewrite would.
ABSENT: Final[Stamp] = (0, 0, 0, 0, 0, 0)


def _stamp(path: str) -> Stamp:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mode, st.st_mtime_ns, st.st_ctime_ns)


def stamp(path: Path) -> Stamp | None:
    """``path``'s stamp now (None: it cannot be taken). Take it before reading the file."""
    try:
        return _stamp(str(path))
    except OSError:
        return None


def presence(path: Path | str) -> Stamp | None:
    """``stamp``, but ``ABSENT`` for a path that does not exist (a folder's stamp changes when entries come or go)."""
    try:
        return _stamp(str(path))
    except (FileNotFoundError, NotADirectoryError):
        return ABSENT
    except OSError:
        return None


def settled(stamps: Iterable[tuple[Path, Stamp | None]]) -> Stamps | None:
    """The stamps taken before the files were read, or None when one of them is missing or too fresh to trust."""
    settled_before = time.time_ns() - int(SETTLE * 1e9)
    out = []
    for path, found in stamps:
        if found is None or found[4] > settled_before or found[5] > settled_before:
            return None
        out.append((str(path), found))
    return tuple(out)


def unchanged(stamps: Stamps) -> bool:
    """Whether every file still has its stamp (one ``stat`` each; a path that cannot be stat'ed has none)."""
    return all(presence(path) == stamp for path, stamp in stamps)
