"""Reading a configured file with bounds: a regular file only, opened without blocking, at most ``limit`` bytes.

Shared by the PEM reader (credential files) and the deployment-file loader, which phrase the problem as their own
``ConfigError`` naming the option or the file. A wrong path (a FIFO, ``/dev/zero``, a disk image, a log file) must
give an error, never a hang or a read of gigabytes."""

from __future__ import annotations

import os
import select
import stat
import time
from pathlib import Path


class FileRefused(Exception):
    """Why a file was not read (``str()``: ``file not found``, ``is a directory, not a PEM file``, …); the caller
    adds the option and the file."""


#: How long a pipe may take to deliver everything (``pipes=True``).
PIPE_SECONDS = 10.0


def read_bounded(path: Path, *, limit: int, kind: str, pipes: bool = False) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes; else ``FileRefused``. ``kind`` names what
    the file should be (``a PEM file``), for the directory and FIFO messages. ``pipes``: a pipe or FIFO is read too
    (``--config <(envsubst < tmpl)``, ``/dev/stdin``), to its end within ``PIPE_SECONDS``; one that gives nothing
    (a FIFO nobody writes to reads as at its end at once) is refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # non-blocking: a FIFO never hangs us
    except FileNotFoundError:
        raise FileRefused("file not found") from None
    except IsADirectoryError:
        raise FileRefused(f"is a directory, not {kind}") from None
    except OSError as exc:
        raise FileRefused(f"cannot read file ({exc.strerror})") from None
    except UnicodeEncodeError as exc:  # from a Python caller: not a file name here
        raise FileRefused(f"the path holds {unencodable(exc)}") from None
    except ValueError:  # an embedded NUL
        raise FileRefused("the path contains a NUL character") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise FileRefused(f"is a directory, not {kind}")
        if pipes and stat.S_ISFIFO(info.st_mode):
            return _read_pipe(fd, limit)
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


def _read_pipe(fd: int, limit: int) -> bytes:
    """A pipe's bytes to its end, at most ``limit``, within ``PIPE_SECONDS`` (the caller closes ``fd``)."""
    deadline = time.monotonic() + PIPE_SECONDS
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    data = bytearray()
    while len(data) <= limit:
        try:
            chunk = os.read(fd, 1 << 20)  # first: a FIFO nobody opened for writing reads as ended, never as ready
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(left * 1000):
                raise FileRefused(f"is a pipe that did not reach its end within {PIPE_SECONDS:g} s") from None
            continue
        if not chunk:
            if not data:
                raise FileRefused("is a pipe that gave nothing (a FIFO with no writer reads as empty)")
            return bytes(data)
        data += chunk
    raise FileRefused(f"is a pipe that gave over gtls's limit of {mib(limit)}")


def mib(size: int) -> str:
    return f"{size // (1024 * 1024)} MiB"


def unencodable(exc: UnicodeEncodeError) -> str:
    """The character of a path ``os.fsencode`` refused, and why no file name here can hold it: a lone surrogate
    (U+D800-U+DFFF; a command line's undecodable bytes arrive as U+DC80-U+DCFF and do encode back), or a character
    outside this system's file-name encoding (ASCII under the C locale)."""
    char = exc.object[exc.start]
    if 0xD800 <= ord(char) <= 0xDFFF:
        return f"U+{ord(char):04X}, a lone surrogate that no file name can hold"
    return f"U+{ord(char):04X}, which this system's file-name encoding ({exc.encoding}) cannot hold"
