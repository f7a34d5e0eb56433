"""Reading a configured file with bounds: a regular file only, opened without blocking, at most ``limit`` bytes.

Shared by the PEM reader (credential files) and the deployment-file loader, which phrase the problem as their own
``ConfigError`` naming the option or the file. A wrong path (a FIFO, ``/dev/zero``, a disk image, a log file) must
give an error, never a hang or a read of gigabytes."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class FileRefused(Exception):
    """Why a file was not read (``str()``: ``file not found``, ``is a directory, not a PEM file``, …); the caller
    adds the option and the file."""


def read_bounded(path: Path, *, limit: int, kind: str) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes; else ``FileRefused``. ``kind`` names what
    the file should be (``a PEM file``), for the directory and FIFO messages."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # non-blocking: a FIFO never hangs us
    except FileNotFoundError:
        raise FileRefused("file not found") from None
    except IsADirectoryError:
        raise FileRefused(f"is a directory, not {kind}") from None
    except OSError as exc:
        raise FileRefused(f"cannot read file ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise FileRefused(f"is a directory, not {kind}")
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused(f"is not a regular file (a FIFO, device or socket); give {kind}")
        if info.st_size > limit:
            raise FileRefused(f"file is {info.st_size} bytes, over gtls's limit of {mib(limit)}")
        chunks: list[bytes] = []
        left = limit + 1  # bounded even if the file grows while we read it
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
    except OSError as exc:
        raise FileRefused(f"cannot read file ({exc.strerror})") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise FileRefused(f"file is over gtls's limit of {mib(limit)}")
    return data


def mib(size: int) -> str:
    return f"{size // (1024 * 1024)} MiB"
