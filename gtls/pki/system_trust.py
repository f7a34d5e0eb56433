"""The system trust store of profile windows without ``trusted-ca`` (spec §1.6), read whole when a context compiles.

OpenSSL's ``set_default_verify_paths`` reads the CA file at once but adds the CA folder as a lookup searched by name
hash during each verification: a handshake then read files, and a root added to the folder counted without a
rebuild (spec §1.1). gtls reads both here instead, from the same places that call used (``sources``), and hands the
certificates to the context's store and to the offline verifier (``gtls._offline``): one set of anchors for both.

Of the folder only the entries OpenSSL's lookup opens are read: ``<hash>.<n>``, eight hex digits of the subject hash
and a number, as ``openssl rehash`` names them. Other files there (Debian's ``*.pem``, the same roots the hashed
links point to) were never consulted; reading them would trust a certificate merely copied into the folder. Cost,
measured on Debian's store (146 roots in ``ca-certificates.crt`` and 144 hashed links to the same roots, each parsed
once): a compile takes ~8 ms instead of ~3 ms (~1.7 ms reading 145 files, ~5.5 ms splitting PEM and parsing), once
per settings, not per handshake; a cache hit stays at ~15 µs (stat calls for the CA file and folder only,
``gtls.context._read_system_store``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from OpenSSL import crypto

from .. import _binding
from .._files import FileRefused, read_bounded
from .pem import MAX_FILE_BYTES, scan_pem

#: The certificate entries of a hashed CA folder (``X509_LOOKUP_hash_dir``; ``.rN`` entries are CRLs, unused here:
#: profile windows checks no CRL).
HASHED_ENTRY: Final = re.compile(r"[0-9a-f]{8}\.[0-9]+")
#: Entries read per folder at most (a system folder holds a few hundred); the rest are skipped, with a warning.
MAX_ENTRIES: Final = 10_000
#: Warnings about the system store start so (not "system trust store", the phrase of the E8 warnings).
PREFIX: Final = "system CA certificates"


@dataclass(frozen=True, slots=True)
class Sources:
    """Where the system store is read from: CA files, then CA folders, as ``set_default_verify_paths`` takes them."""

    files: tuple[Path, ...]
    folders: tuple[Path, ...]


def sources() -> Sources:
    """``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` (a ``:``-separated list, as OpenSSL splits it) when either is set,
    else the OpenSSL defaults, plus pyOpenSSL's system paths on cryptography's wheels (``_binding``). Costs a few
    ``stat`` calls (the wheel paths' existence), so compile_context can key its cache on the result each time."""
    env_file, env_dir = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    default_file, default_dir = _binding.default_ca_locations()
    files = [env_file if env_file is not None else default_file]
    folders = (env_dir if env_dir is not None else default_dir).split(os.pathsep)
    if env_file is None and env_dir is None:
        wheel_files, wheel_dirs = _binding.wheel_fallback_locations()
        files += [next((p for p in wheel_files if os.path.isfile(p)), "")]
        folders += [next((p for p in wheel_dirs if os.path.isdir(p)), "")]
    return Sources(tuple(dict.fromkeys(Path(p) for p in files if p)),
                   tuple(dict.fromkeys(Path(p) for p in folders if p)))


def entries(folder: Path, problems: list[str]) -> list[Path]:
    """The hashed certificate entries of ``folder``, in name order (none when it cannot be listed)."""
    try:
        names = sorted(name for name in os.listdir(folder) if HASHED_ENTRY.fullmatch(name))
    except OSError:
        return []
    if len(names) > MAX_ENTRIES:
        problems.append(f"{folder}: only the first {MAX_ENTRIES} of {len(names)} hashed entries read")
    return [folder / name for name in names[:MAX_ENTRIES]]


def read(path: Path, problems: list[str]) -> bytes | None:
    """``path``'s bytes, or None (a missing CA file is normal: OpenSSL's default one rarely exists)."""
    try:
        return read_bounded(path, limit=MAX_FILE_BYTES, kind="a PEM file")
    except FileRefused as exc:
        if str(exc) != "file not found":
            problems.append(f"{path}: {exc}")
        return None


def anchors(paths: Iterable[Path], files: Mapping[Path, bytes], problems: Iterable[str] = ()
            ) -> tuple[tuple[crypto.X509, ...], str | None]:
    """The certificates of ``paths`` (read into ``files``) for OpenSSL's store, and at most one warning summing up
    what was skipped. Parsed by OpenSSL, as ``set_default_verify_paths`` did: a few roots of the system bundles have
    serial 0, which cryptography warns about. ``TRUSTED CERTIFICATE`` blocks (OpenSSL trust settings, which may
    reject a purpose) are skipped rather than trusted without their settings: that fails closed. CRLs and keys are
    ignored, as OpenSSL's store does when CRLs are not checked."""
    skipped = list(problems)
    seen: set[bytes] = set()
    out: list[crypto.X509] = []
    for path in paths:
        data = files.get(path)
        if data is None:
            continue
        scan = scan_pem(data)
        skipped += [f"{path}: damaged {block.label} block {block.position}" for block in scan.damaged]
        certs = [block for block in scan.blocks if block.label == "CERTIFICATE"]
        skipped += [f"{path}: TRUSTED CERTIFICATE block {block.position} (trust settings gtls does not read)"
                    for block in scan.blocks if block.label == "TRUSTED CERTIFICATE"]
        if not scan.blocks and not scan.damaged:
            skipped.append(f"{path}: no PEM certificate")
        for block in certs:
            if block.der in seen:
                continue  # the CA file and the folder hold the same roots: parsed once
            seen.add(block.der)
            try:
                out.append(crypto.load_certificate(crypto.FILETYPE_ASN1, block.der))
            except crypto.Error:
                skipped.append(f"{path}: certificate block {block.position} OpenSSL cannot read")
    if not skipped:
        return tuple(out), None
    return tuple(out), f"{PREFIX}: skipped {len(skipped)} item(s) (first: {skipped[0]}); {len(out)} read"
