"""Thumbprint `certificate` values and the `certificate-store` that resolves them (spec §4.4)."""

from __future__ import annotations

import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from ..errors import ConfigError, CredentialLoadError
from .certs import matches_key, sha1_thumbprint, subject_text
from .chain import LoadedCert, load_certificates, select_leaf
from .keys import TLSKey, load_private_key
from .where import Where

_INVISIBLE = re.compile(r"[\s\u200e\u200f]")
_HEX40 = re.compile(r"[0-9A-Fa-f]{40}")


def thumbprint(value: str) -> str | None:
    """The upper-case thumbprint when ``value`` is one (no ``/``, ``\\`` or ``.``; 40 hex digits once whitespace and
    U+200E/U+200F are removed), else ``None``."""
    if any(ch in value for ch in "/\\."):
        return None
    compact = _INVISIBLE.sub("", value)
    return compact.upper() if _HEX40.fullmatch(compact) else None


@dataclass(frozen=True, slots=True)
class Identity:
    file: Path
    key: TLSKey
    certificates: list[LoadedCert]


def store_files(paths: list[Path]) -> tuple[list[Path], bool]:
    """The files a store consists of, and whether they came from a directory (skip-and-warn) or a list (strict)."""
    if len(paths) == 1 and _is_dir(paths[0]):
        return sorted(p for p in paths[0].glob("*.pem") if p.is_file()), True
    return paths, False


def _is_dir(path: Path) -> bool:
    """``path`` is a directory. ``Path.is_dir`` raises for a name too long (ENAMETOOLONG) or a folder on the way
    that may not be searched (EACCES): a traceback from ``gtls serve``. Such a path is then read as a file, whose
    reader names the problem as a ``CredentialLoadError``."""
    try:
        return stat.S_ISDIR(path.stat().st_mode)
    except (OSError, ValueError):
        return False


def load_store(
    files_list: list[Path], from_dir: bool, files: Mapping[Path, bytes], *, where: Where, warnings: list[str]
) -> dict[str, Identity]:
    """Index every identity file by the SHA-1 thumbprint of the certificate it serves (matching its key)."""
    option = "certificate-store"
    index: dict[str, Identity] = {}
    for path in files_list:
        try:
            identity = _load_identity(path, files, where=where, warnings=warnings)
        except ConfigError as exc:
            if not from_dir:
                raise
            warnings.append(f"{option}: skipped {path}: {exc.message}")
            continue
        # The certificate the identity serves (spec §4.2: a non-CA one matching the key first), so the thumbprint
        # names what the handshake sends, even when a CA certificate with the same key comes first in the file.
        fingerprint = sha1_thumbprint(_served(identity, where))
        if fingerprint in index:
            raise where.error(
                CredentialLoadError,
                f"two files hold the identity with thumbprint {fingerprint}: {index[fingerprint].file} and {path}",
                option=option,
                file=path,
            )
        index[fingerprint] = Identity(path, identity.key, identity.certificates)
    return index


def lookup(index: Mapping[str, Identity], print_: str, *, where: Where) -> Identity:
    """The identity for ``print_``, else ``CredentialLoadError`` listing what the store holds."""
    found = index.get(print_)
    if found is not None:
        return found
    known = "; ".join(f"{fp} ({subject_text(_served(ident, where))})" for fp, ident in sorted(index.items()))
    raise where.error(
        CredentialLoadError,
        f"thumbprint {print_} not found in certificate-store; it holds: {known or 'nothing'}",
        option="certificate",
    )


def _served(identity: Identity, where: Where) -> x509.Certificate:
    """The certificate ``identity`` serves, the one its thumbprint names (spec §4.2; it loaded, so it exists)."""
    return select_leaf(identity.certificates, identity.key, option="certificate-store", key_file=identity.file,
                       where=where).cert


def _load_identity(path: Path, files: Mapping[Path, bytes], *, where: Where, warnings: list[str]) -> Identity:
    option = "certificate-store"
    key = load_private_key(path, files, option=option, where=where, warnings=warnings)
    ignored: list[str] = []  # the key block is expected here, so the "skipped blocks" warning is not wanted
    certs = load_certificates([path], files, option=option, where=where, warnings=ignored)
    if not any(matches_key(item.cert, key) for item in certs):
        raise where.error(CredentialLoadError, "no certificate in the file matches its private key", option=option,
                          file=path)
    return Identity(path, key, certs)
