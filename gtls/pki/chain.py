"""The `certificate` option: load a PEM file list, pick the leaf for the key, and order the chain (spec §4.1–§4.3)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from ..errors import CredentialLoadError, KeyMismatch
from .certs import (
    allows_role,
    is_ca,
    matches_key,
    parse_certificate,
    rfc4514_text,
    self_issued,
    self_signed,
    signed_by,
    subject_text,
    validity_problem,
)
from .keys import KEY_LABELS
from .pem import load_blocks, skipped_blocks
from .where import Where

#: Dropped certificates named one warning each; the rest are counted in one more (a bundle of thousands must not
#: flood ``gtls check`` or the log; decided, the spec only says each is named).
MAX_NAMED_DROPPED = 20


@dataclass(frozen=True, slots=True)
class LoadedCert:
    cert: x509.Certificate
    source: Path


def split_list(value: str, *, option: str, where: Where) -> list[str]:
    """Comma-separated elements, trimmed; an empty element raises ``CredentialLoadError`` (spec §4.1 step 1)."""
    items = [item.strip() for item in value.split(",")]
    if any(not item for item in items):
        raise where.error(CredentialLoadError, f"empty element in the file list {value!r}", option=option)
    return items


def load_certificates(
    paths: Sequence[Path],
    files: Mapping[Path, bytes],
    *,
    option: str,
    where: Where,
    warnings: list[str],
    key_file: Path | None = None,
) -> list[LoadedCert]:
    """Certificates of every file, files in list order and blocks in file order; exact DER duplicates dropped.

    Other blocks are named in a warning as skipped (spec §4.1 step 5), except the key blocks of ``key_file``: a
    key in a certificate file is used when `certificate-key` names that file (a combined key-and-chain file given
    as both options), so calling it skipped would be wrong (gtls decision, the spec names no warning for it)."""
    loaded: list[LoadedCert] = []
    seen: set[bytes] = set()
    for path in paths:
        certs, others = load_blocks(path, files, parse_certificate, label="CERTIFICATE",
                                    what="certificate", option=option, where=where, error=CredentialLoadError,
                                    seen=seen)
        if key_file is not None and path == key_file:
            others = [label for label in others if label not in KEY_LABELS]
        if others:
            warnings.append(skipped_blocks(option, others, path))
        loaded.extend(LoadedCert(cert, path) for cert in certs)
    return loaded


def select_leaf(
    loaded: Sequence[LoadedCert], key: PrivateKeyTypes, *, option: str, key_file: Path | None, where: Where
) -> LoadedCert:
    """The certificate matching the key: a non-CA one first, then load order (spec §4.2)."""
    matching = [item for item in loaded if matches_key(item.cert, key)]
    if not matching:
        names = "; ".join(subject_text(item.cert) for item in loaded)
        raise where.error(
            KeyMismatch,
            f"no loaded certificate matches the private key {key_file} (certificates: {names})",
            option=option,
            file=key_file,
        )
    return next((item for item in matching if not is_ca(item.cert)), matching[0])


def assemble(
    loaded: Sequence[LoadedCert], leaf: LoadedCert, *, option: str, warnings: list[str]
) -> list[x509.Certificate]:
    """Leaf, intermediates in issuer order, then the root if supplied (spec §4.3); the rest dropped with warnings."""
    unused = [item for item in loaded if item is not leaf]
    chain = [leaf.cert]
    cur = leaf.cert
    while not self_issued(cur) and unused:  # bounded: each step consumes one certificate
        candidates = [item for item in unused if signed_by(cur, item.cert)]
        if not candidates:
            break
        winner = next((item for item in candidates if is_ca(item.cert)), candidates[0])
        unused.remove(winner)
        chain.append(winner.cert)
        cur = winner.cert
    for item in unused[:MAX_NAMED_DROPPED]:
        warnings.append(
            f"{option}: certificate {subject_text(item.cert)} from {item.source} is not in the chain; dropped"
        )
    if len(unused) > MAX_NAMED_DROPPED:
        files = sorted({str(item.source) for item in unused[MAX_NAMED_DROPPED:]})
        warnings.append(f"{option}: {len(unused) - MAX_NAMED_DROPPED} more certificates are not in the chain; "
                        f"dropped (from {', '.join(files[:5])}{', ...' if len(files) > 5 else ''})")
    if not self_signed(chain[-1]):
        warnings.append(open_top_warning(chain, option))
    _issuer_validity_warnings(chain, unused, option=option, warnings=warnings)
    return chain


def open_top_warning(chain: Sequence[x509.Certificate], option: str) -> str:
    """Name the issuer the peer must hold: a leaf sent alone (its intermediate forgotten) fails every peer that
    trusts only the root, and said only "the missing CA" it read like the usual chain without its root."""
    top = chain[-1]
    issuer = rfc4514_text(top.issuer)
    text = (f"{option}: chain ends at {subject_text(top)}, which is not self-signed; "
            f"the peer must hold its issuer {issuer}")
    if len(chain) == 1:
        text += f" (the leaf is sent alone: add {issuer}'s certificate to {option} unless every peer holds it)"
    return text


def _issuer_validity_warnings(chain: Sequence[x509.Certificate], dropped: Sequence[LoadedCert], *, option: str,
                              warnings: list[str]) -> None:
    """Name an issuer in the chain that is outside its validity period: peers refuse the chain. Step 1 of §4.3
    picks among equal candidates by load order, so an expired intermediate listed before its renewed copy (same
    name and key) is sent and the copy dropped; the warning says which copy to list first (gtls)."""
    now = dt.datetime.now(dt.UTC)
    for depth, cert in enumerate(chain[1:], start=1):
        problem = validity_problem(cert, now)
        if problem is None:
            continue
        key = cert.public_key()
        renewed = next((item for item in dropped if item.cert.subject == cert.subject
                        and item.cert.public_key() == key and validity_problem(item.cert, now) is None), None)
        if renewed is not None:
            hint = f"; a valid copy from {renewed.source} was dropped: list it before this one, or remove this one"
        elif depth == len(chain) - 1 and not self_signed(cert):
            # The top, not a root: an expired cross-signature (Let's Encrypt's long chain) is ignored by a peer that
            # trusts a root of the same name and key, and refused by any other; an expired intermediate is refused
            # by all (none trusts it as a root). Which peers are which, gtls cannot know.
            hint = ("; it is the top of the chain: peers refuse the chain unless they trust a root of its name and "
                    "key (then they ignore it)")
        else:
            hint = "; peers will refuse the chain"
        warnings.append(f"{option}: chain certificate {subject_text(cert)} (depth {depth}) {problem}{hint}")


def leaf_validity_warnings(leaf: x509.Certificate, now: dt.datetime, *, option: str, warnings: list[str]) -> None:
    """Warn about a leaf outside its validity period (what ``gtls chain`` can say without a role)."""
    problem = validity_problem(leaf, now)
    if problem:
        warnings.append(f"{option}: certificate {subject_text(leaf)} {problem}")


def leaf_warnings(leaf: x509.Certificate, role: str, now: dt.datetime, *, option: str, warnings: list[str]) -> None:
    """Warn about a leaf outside its validity period or whose extendedKeyUsage lacks the role's purpose."""
    leaf_validity_warnings(leaf, now, option=option, warnings=warnings)
    if not allows_role(leaf, role):
        purpose = "serverAuth" if role == "server" else "clientAuth"
        warnings.append(
            f"{option}: certificate {subject_text(leaf)} has an extendedKeyUsage without {purpose}; "
            f"peers will reject it for a {role}"
        )
