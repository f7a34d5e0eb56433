"""The `trusted-ca` file: one PEM file with one or more CA certificates (spec §6)."""

from __future__ import annotations

import datetime as dt
import re
import string
from collections.abc import Mapping
from pathlib import Path

from cryptography import x509

from ..errors import CredentialLoadError
from .certs import is_ca, parse_certificate, rfc4514_text, self_signed, spki, subject_text, validity_problem
from .pem import load_blocks, skipped_blocks
from .where import Where

OPTION = "trusted-ca"


def load_trusted_cas(
    path: Path, files: Mapping[Path, bytes], *, where: Where, warnings: list[str], now: dt.datetime
) -> list[x509.Certificate]:
    cas, others = load_blocks(path, files, parse_certificate, label="CERTIFICATE", what="certificate",
                              option=OPTION, where=where, error=CredentialLoadError)
    if others:
        # Say why a CRL here is not used only where there is one: the note beside a lone key block read as nonsense.
        note = " (CRLs here are not used; tls-crl names the CRL file)" if "X509 CRL" in others else ""
        warnings.append(skipped_blocks(OPTION, others, path, note))
    is_root = [self_signed(ca) for ca in cas]  # a signature check each: once
    subjects = {_canonical(ca.subject) for ca in cas}
    # A CA with the name and key of a root of the file is a cross-signed copy of that root: paths end at the root.
    roots = {(_canonical(ca.subject), spki(ca.public_key())) for ca, root in zip(cas, is_root, strict=True) if root}
    for ca, root in zip(cas, is_root, strict=True):
        problem = validity_problem(ca, now)
        if problem:
            warnings.append(f"{OPTION}: CA {subject_text(ca)} in {path} {problem}; paths through it will fail")
        if not is_ca(ca) and not root:
            # A self-signed non-CA certificate is a peer trusted as itself (a pinned self-signed server); this one
            # can vouch for nothing: no issuer accepts it, and gtls does not trust a partial chain.
            warnings.append(f"{OPTION}: {subject_text(ca)} in {path} is neither a CA nor self-signed: it makes no "
                            "certificate trusted, not even itself")
        elif not root and _canonical(ca.issuer) not in subjects and (
                (_canonical(ca.subject), spki(ca.public_key())) not in roots):
            # Verification must end at a root of this file (no partial chains, spec §6): an intermediate whose
            # issuer is missing here helps no chain to verify (gtls decision to say so; the spec is silent).
            warnings.append(f"{OPTION}: CA {subject_text(ca)} in {path} is not a root and its issuer "
                            f"{rfc4514_text(ca.issuer, '(empty name)')} is not in the file: chains through it "
                            "fail (untrusted); add the root it chains to")
    unnumbered = [ca for ca in cas if ca.serial_number <= 0]
    if unnumbered:
        # OpenSSL takes them (a few roots of the system bundles have serial 0); cryptography warns that it will not.
        # One line per file: the user can do nothing about each of them.
        warnings.append(f"{OPTION}: {len(unnumbered)} certificate(s) in {path} have a serial number of 0 or below, "
                        f"which RFC 5280 forbids (first: {subject_text(unnumbered[0])}); OpenSSL accepts them, but "
                        "a future cryptography release will refuse this file")
    return cas


#: OpenSSL's canonical name form folds case and spaces in ASCII only (``asn1_string_canon``).
_ASCII_SPACES = re.compile(r"[ \t\n\v\f\r]+")
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _canonical(name: x509.Name) -> tuple[frozenset[tuple[str, str | bytes]], ...]:
    """A name as OpenSSL matches issuers to subjects (``x509_name_canon``): RDN by RDN, each a set (OpenSSL sorts a
    multi-valued RDN after folding), each string value in UTF-8 whatever its string type, ASCII spaces trimmed and
    collapsed, ASCII letters lower-cased; other values as they are."""
    def value(attribute: x509.NameAttribute[str | bytes]) -> str | bytes:
        raw = attribute.value
        if isinstance(raw, bytes):
            return raw
        return _ASCII_SPACES.sub(" ", raw).strip(" ").translate(_ASCII_LOWER)

    return tuple(frozenset((attribute.oid.dotted_string, value(attribute)) for attribute in rdn) for rdn in name.rdns)


def missing_file_hint(value: str, option: str = "trusted-ca") -> str:
    """Extra text for a missing trusted-ca (spec §6) or tls-crl (§5) file whose name holds a comma: each option takes
    one file, but ``certificate`` beside it takes a list, so a list is what the user likely meant."""
    return f" ({option} takes exactly one file; a comma is part of the file name)" if "," in value else ""
