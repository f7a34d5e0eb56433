"""PEM reading: split files into labelled blocks, with errors that name the option and the file."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .._files import FileRefused, read_bounded
from ..errors import ConfigError
from ..options import expand_home
from .where import Where

T = TypeVar("T")

#: A PEM boundary line's marker. Found with one linear scan: a regex spanning BEGIN..END would rescan the rest of the
#: file for every BEGIN without its END (quadratic on hostile input such as thousands of lone BEGIN lines).
_BOUNDARY = re.compile(rb"-----(BEGIN|END) ([A-Z0-9 ]{1,64})-----")
#: RFC 1421 header lines (Proc-Type, DEK-Info) at the start of any line, whatever its line end: a file saved with
#: CR-only line ends (classic Mac OS) kept its headers, and an encrypted key was called "not valid base64".
_HEADER = re.compile(rb"(?:^|(?<=[\r\n]))[ \t]*[A-Za-z-]+:[^\r\n]*")
#: Older labels OpenSSL reads as the current one everywhere (PEM_STRING_X509_OLD): the same DER, so the same block.
_LABEL_ALIASES = {"X509 CERTIFICATE": "CERTIFICATE"}
#: Largest file gtls reads for any option (decided; the spec is silent). Far above any real certificate, key or CA
#: bundle and above the largest public CRLs (tens of MB as PEM); it bounds memory and time for a wrong path such as
#: a disk image or a log file. Only regular files are read: a FIFO or device (``/dev/zero``) could block or never end.
MAX_FILE_BYTES = 64 * 1024 * 1024
#: Damaged blocks remembered per file: the first one is reported, the rest only need to be bounded.
_MAX_DAMAGED = 100


@dataclass(frozen=True, slots=True)
class PemBlock:
    label: str  # e.g. "CERTIFICATE", "X509 CRL", "PRIVATE KEY"; "X509 CERTIFICATE" is read as "CERTIFICATE"
    der: bytes
    pem: bytes  # the block's text, BEGIN to END line
    position: int = 0  # 1-based among the file's BEGIN lines, as DamagedBlock's


@dataclass(frozen=True, slots=True)
class DamagedBlock:
    """A block that cannot be decoded: ``problem`` says why, never quoting the content (it may be a key)."""

    label: str
    position: int  # 1-based among the file's BEGIN lines
    problem: str


@dataclass(frozen=True, slots=True)
class PemScan:
    blocks: list[PemBlock]
    damaged: list[DamagedBlock]


def scan_pem(data: bytes) -> PemScan:
    """Every PEM block of ``data`` in file order, and the damaged ones: a BEGIN without its END (truncated, or
    followed by another BEGIN) or a body that is not valid base64. Linear in the size of ``data``."""
    blocks: list[PemBlock] = []
    damaged: list[DamagedBlock] = []
    opened: tuple[str, int, int, int] | None = None  # label, BEGIN offset, body offset, position
    position = 0
    for match in _BOUNDARY.finditer(data):
        kind, label = match.group(1), match.group(2).decode("ascii")
        if kind == b"BEGIN":
            if opened is not None and len(damaged) < _MAX_DAMAGED:
                damaged.append(DamagedBlock(_current(opened[0]), opened[3],
                                            f"BEGIN {opened[0]} without END before the next BEGIN line"))
            position += 1
            opened = (label, match.start(), match.end(), position)
            continue
        if opened is None or label != opened[0]:
            continue  # a stray END line: nothing to decode
        body = data[opened[2]:match.start()]
        if b":" in body:  # a header line has one, base64 never: the substitution was half of parsing a CA bundle
            body = _HEADER.sub(b"", body)
        try:
            der = base64.b64decode(b"".join(body.split()), validate=True)
        except (binascii.Error, ValueError):
            der = None
        name = _current(label)
        if der:
            blocks.append(PemBlock(name, der, data[opened[1]:match.end()] + b"\n", opened[3]))
        elif len(damaged) < _MAX_DAMAGED:
            problem = "its body is empty" if der is not None else "its body is not valid base64"
            damaged.append(DamagedBlock(name, opened[3], problem))
        opened = None
    if opened is not None:
        damaged.append(DamagedBlock(_current(opened[0]), opened[3], f"truncated: BEGIN {opened[0]} without END"))
    return PemScan(blocks, damaged)


def _current(label: str) -> str:
    return _LABEL_ALIASES.get(label, label)


def parse_blocks(data: bytes) -> list[PemBlock]:
    """Every well-formed PEM block of ``data``, in file order. Damaged blocks are left out (see ``scan_pem``)."""
    return scan_pem(data).blocks


def resolve_path(text: str, base_dir: Path, *, option: str, warnings: list[str]) -> Path:
    """An absolute path for ``text``; a relative one is taken from ``base_dir`` with a warning (spec §4.1 step 2)."""
    path = Path(expand_home(text))
    if not path.is_absolute():
        resolved = (base_dir / path).resolve()
        warnings.append(f"{option}: relative path {text!r} resolved against {base_dir} as {resolved}; use absolute")
        return resolved
    return path


def read_file(path: Path, *, option: str, where: Where, error: type[ConfigError]) -> bytes:
    """The bytes of ``path``: a regular file of at most ``MAX_FILE_BYTES``; anything else raises ``error`` naming the
    option and file. Opened without blocking, so a FIFO never hangs the caller."""
    try:
        return read_bounded(path, limit=MAX_FILE_BYTES, kind="a PEM file")
    except FileRefused as exc:
        raise where.error(error, str(exc), option=option, file=path) from None


# Longest first: UTF-32-LE's byte-order mark begins with UTF-16-LE's.
_WIDE_ENCODINGS = ("utf-32-le", "utf-32-be", "utf-16-le", "utf-16-be")
_WIDE_MARKS = tuple(
    (encoding[:6].upper(), "\ufeff".encode(encoding), "-----BEGIN".encode(encoding)) for encoding in _WIDE_ENCODINGS
)


def _wide_text(data: bytes) -> str | None:
    """``UTF-16`` or ``UTF-32`` for PEM saved in that encoding (a byte-order mark, or a BEGIN line with NUL bytes
    beside every letter), as Windows PowerShell's ``>`` and ``Out-File`` did before PowerShell 6; OpenSSL cannot
    read it either. None otherwise."""
    for name, bom, begin in _WIDE_MARKS:
        if data.startswith(bom) or begin in data:
            return name
    return None


class Unsupported(ValueError):
    """A loader's refusal of well-formed input that this installation cannot read (e.g. a key type too new for the
    installed ``cryptography``): said as "unsupported", not "malformed"."""


def blocks_of(
    path: Path,
    files: Mapping[Path, bytes],
    *,
    option: str,
    where: Where,
    error: type[ConfigError],
    wanted: str,
    labels: frozenset[str] | None = None,
) -> list[PemBlock]:
    """The PEM blocks of an already-read file. DER or non-PEM content, or a damaged block with one of ``labels``
    (default: ``wanted``), raises ``error``: fail closed rather than silently lose a certificate, CA or CRL.
    Damaged blocks of other labels are returned as blocks without DER, for the caller's "skipped" warning."""
    data = files[path]
    scan = scan_pem(data)
    labels = frozenset({wanted}) if labels is None else labels
    fatal = [d for d in scan.damaged if d.label in labels or not scan.blocks]
    if fatal:
        first = fatal[0]
        raise where.error(error, f"PEM {first.label} block {first.position} is damaged ({first.problem}); "
                          "fix or remove it", option=option, file=path)
    if not scan.blocks:
        wide = _wide_text(data)
        if wide is not None:
            kind = f"{wide} text (as Windows PowerShell saves it); save it as ASCII or UTF-8"
        elif _is_pkcs12(data):
            kind = ("PKCS#12 (binary) data; export PEM with openssl pkcs12 -in FILE -nodes (-nokeys for the "
                    "certificates, -nocerts for the key)")
        elif data[:1] == b"\x30":
            kind = "DER (binary) data; convert it to PEM"
        else:
            kind = "no PEM data"
        raise where.error(error, f"{kind}, expected PEM {wanted} blocks", option=option, file=path)
    return scan.blocks + [PemBlock(f"{d.label} (damaged, {d.problem})", b"", b"") for d in scan.damaged]


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
        found = sorted({block.label for block in blocks})
        # Certificates as TRUSTED CERTIFICATE (openssl x509 -trustout) or PKCS7 (openssl crl2pkcs7): naming what the
        # file holds, with the command that converts it, tells the user what to do.
        raise where.error(error, f"no PEM {label} block in file (it holds {', '.join(found)}){_convert_hint(found)}",
                          option=option, file=path)
    seen = set() if seen is None else seen
    objects: list[T] = []
    for block in wanted:
        if block.der in seen:
            continue
        try:
            objects.append(load(block.der))
        except ValueError as exc:
            kind = "unsupported" if isinstance(exc, Unsupported) else "malformed"
            # The block's number: in a bundle of hundreds, "malformed certificate" alone does not say which one.
            raise where.error(error, f"{kind} {what} in PEM block {block.position} ({exc})", option=option,
                              file=path) from None
        seen.add(block.der)
    return objects, sorted({block.label for block in blocks if block.label != label})


def skipped_blocks(option: str, others: list[str], path: Path, note: str = "") -> str:
    """The warning for the PEM blocks of ``path`` that ``option`` does not read (``load_blocks``'s others)."""
    return f"{option}: skipped PEM blocks {', '.join(others)} in {path}{note}{_convert_hint(others)}"


def _convert_hint(labels: list[str]) -> str:
    """How to turn blocks that hold certificates in a form gtls does not read into CERTIFICATE blocks.

    OpenSSL's readers take a TRUSTED CERTIFICATE (``openssl x509 -trustout``) as a leaf or a trusted CA and apply
    the trust settings it carries (purposes it is trusted or rejected for); gtls's certificate parser drops them, so
    it does not read the block rather than trust it more widely than OpenSSL would (gtls decision)."""
    hints = []
    if "TRUSTED CERTIFICATE" in labels:
        hints.append("TRUSTED CERTIFICATE blocks (openssl x509 -trustout) are not read: convert each with "
                     "openssl x509 -in FILE -out NEW.pem, which drops its OpenSSL trust settings")
    if "PKCS7" in labels:
        hints.append("PKCS7 blocks are not read: openssl pkcs7 -in FILE -print_certs writes their certificates and "
                     "CRLs as PEM")
    return "".join(f"; {hint}" for hint in hints)


def _is_pkcs12(data: bytes) -> bool:
    """``data`` starts as a PKCS#12 file does: a DER SEQUENCE whose first element is INTEGER 3 (PFX version)."""
    if data[:1] != b"\x30" or len(data) < 8:
        return False
    length = data[1]
    start = 2 + (length & 0x7F if length & 0x80 else 0)
    return data[start:start + 3] == b"\x02\x01\x03"
