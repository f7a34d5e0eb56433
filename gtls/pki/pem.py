"""PEM reading: split files into labelled blocks, with errors that name the option and the file."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ..errors import ConfigError
from .where import Where

T = TypeVar("T")

_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)


@dataclass(frozen=True, slots=True)
class PemBlock:
    label: str  # e.g. "CERTIFICATE", "X509 CRL", "PRIVATE KEY"
    der: bytes
    pem: bytes  # the block's text, BEGIN to END line


def parse_blocks(data: bytes) -> list[PemBlock]:
    """Every well-formed PEM block of ``data``, in file order. Blocks whose base64 is corrupt are skipped."""
    blocks = []
    for match in _BLOCK.finditer(data):
        body = re.sub(rb"^[A-Za-z-]+:.*$", b"", match.group(2), flags=re.MULTILINE)  # RFC 1421 headers
        try:
            der = base64.b64decode(b"".join(body.split()), validate=True)
        except (binascii.Error, ValueError):
            continue
        blocks.append(PemBlock(match.group(1).decode("ascii"), der, match.group(0) + b"\n"))
    return blocks


def resolve_path(text: str, base_dir: Path, *, option: str, warnings: list[str]) -> Path:
    """An absolute path for ``text``; a relative one is taken from ``base_dir`` with a warning (spec §4.1 step 2)."""
    path = Path(text).expanduser()
    if not path.is_absolute():
        resolved = (base_dir / path).resolve()
        warnings.append(f"{option}: relative path {text!r} resolved against {base_dir} as {resolved}; use absolute")
        return resolved
    return path


def read_file(path: Path, *, option: str, where: Where, error: type[ConfigError]) -> bytes:
    """The bytes of ``path``; a missing or unreadable file raises ``error`` naming the option and file."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise where.error(error, "file not found", option=option, file=path) from None
    except IsADirectoryError:
        raise where.error(error, "is a directory, not a PEM file", option=option, file=path) from None
    except OSError as exc:
        raise where.error(error, f"cannot read file ({exc.strerror})", option=option, file=path) from None


def blocks_of(
    path: Path, files: Mapping[Path, bytes], *, option: str, where: Where, error: type[ConfigError], wanted: str
) -> list[PemBlock]:
    """The PEM blocks of an already-read file; DER or non-PEM content raises ``error``."""
    data = files[path]
    blocks = parse_blocks(data)
    if not blocks:
        kind = "DER (binary) data; convert it to PEM" if data[:1] == b"\x30" else "no PEM data"
        raise where.error(error, f"{kind}, expected PEM {wanted} blocks", option=option, file=path)
    return blocks


def load_blocks(
    path: Path,
    files: Mapping[Path, bytes],
    load: Callable[[bytes], T],
    *,
    label: str,
    what: str,
    option: str,
    where: Where,
    error: type[ConfigError],
    seen: set[bytes] | None = None,
) -> tuple[list[T], list[str]]:
    """``load(der)`` of every ``label`` block of an already-read file, in file order, skipping DER already in
    ``seen`` (which it extends); and the other block labels found. No such block, or one ``load`` rejects with
    ``ValueError`` (a malformed ``what``), raises ``error``."""
    blocks = blocks_of(path, files, option=option, where=where, error=error, wanted=label)
    wanted = [block for block in blocks if block.label == label]
    if not wanted:
        raise where.error(error, f"no PEM {label} block in file", option=option, file=path)
    seen = set() if seen is None else seen
    objects: list[T] = []
    for block in wanted:
        if block.der in seen:
            continue
        try:
            objects.append(load(block.der))
        except ValueError as exc:
            raise where.error(error, f"malformed {what} ({exc})", option=option, file=path) from None
        seen.add(block.der)
    return objects, sorted({block.label for block in blocks if block.label != label})
