"""The `tls-crl` file: one PEM file with one or more CRLs (spec §5)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

from cryptography import x509

from ..errors import CrlLoadError
from .certs import parse_crl, rfc4514_text
from .pem import load_blocks, skipped_blocks
from .where import Where

OPTION = "tls-crl"
#: A CRL due this soon gets a load-time warning.
DUE_SOON = dt.timedelta(days=1)


def load_crls(path: Path, files: Mapping[Path, bytes], *, where: Where, warnings: list[str]
              ) -> list[x509.CertificateRevocationList]:
    """The complete CRLs of ``path``. A delta CRL is left out with a warning (gtls decision; the spec knows complete
    CRLs only): OpenSSL would take a newer delta for the whole list, so an empty delta would hide every revocation
    of its base."""
    crls, others = load_blocks(path, files, parse_crl, label="X509 CRL", what="CRL", option=OPTION,
                               where=where, error=CrlLoadError)
    if others:
        # Genesys calls this file's contents "certificates defining the CRL", so its CA certificates may be put here
        # to be trusted or to check the CRLs' signatures: neither happens (gtls decision; spec §5 is silent).
        certificates_here = "CERTIFICATE" in others
        note = " (certificates here are not trusted; trusted-ca names the CA certificates)" if certificates_here else ""
        warnings.append(skipped_blocks(OPTION, others, path, note))
    complete = []
    for crl in crls:
        try:
            crl.extensions.get_extension_for_class(x509.DeltaCRLIndicator)
        except x509.ExtensionNotFound:
            complete.append(crl)
            continue
        warnings.append(f"{OPTION}: the delta CRL of {issuer_text(crl)} in {path} is not used: gtls checks "
                        "complete CRLs only (a delta read as complete would hide the revocations of its base)")
    return complete


def issuer_text(crl: x509.CertificateRevocationList) -> str:
    return rfc4514_text(crl.issuer, "(empty issuer)")


def freshness_warnings(
    crls: list[x509.CertificateRevocationList], now: dt.datetime, *, path: Path, expired_policy: str
) -> list[str]:
    """Warnings for CRLs past or within a day of their next update, and not yet valid ones."""
    out = []
    for crl in crls:
        next_update = crl.next_update_utc
        head = f"{OPTION}: CRL of {issuer_text(crl)} in {path}"
        if crl.last_update_utc > now:
            out.append(f"{head} is not valid before {crl.last_update_utc:%Y-%m-%d %H:%M} UTC")
        if next_update is None:
            continue
        if next_update < now:
            effect = (
                "handshakes continue with a warning (tls-crl-expired=warn)"
                if expired_policy == "warn"
                else "handshakes checking it fail with crl-expired"
            )
            out.append(f"{head} expired at {next_update:%Y-%m-%d %H:%M} UTC; {effect}")
        elif next_update - now < DUE_SOON:
            out.append(f"{head} is due for update at {next_update:%Y-%m-%d %H:%M} UTC")
    return out
