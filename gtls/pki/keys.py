"""Private keys: exactly one unencrypted key per file, and never one other users can read."""

from __future__ import annotations

import re
import stat
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from ..errors import CredentialLoadError
from .pem import blocks_of, skipped_blocks
from .where import Where

#: Key types OpenSSL can use for a TLS certificate through pyOpenSSL.
TLSKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey | (
    dsa.DSAPrivateKey
)
#: The DER of the RSASSA-PSS algorithm identifier's OID (1.2.840.113549.1.1.10), as a PKCS#8 key names its type.
_RSASSA_PSS_OID = bytes.fromhex("06092a864886f70d01010a")
#: The RFC 1421 header of an encrypted traditional key (openssl ec/rsa -aes128), spaces allowed as readers do.
_ENCRYPTED_HEADER = re.compile(rb"Proc-Type:[ \t]*4[ \t]*,[ \t]*ENCRYPTED")
KEY_LABELS = frozenset({"PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY", "DSA PRIVATE KEY", "ENCRYPTED PRIVATE KEY"})


def check_key_permissions(path: Path, *, option: str, where: Where, warnings: list[str]) -> None:
    """Refuse a key file any user can read; warn when the file's group can (decided for the spec's "refuse
    world-readable private keys with a clear warning": world is an error, group a warning, as ssh does for keys)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # reading already succeeded; a vanished file is reported by the reader
    if mode & stat.S_IROTH:
        raise where.error(
            CredentialLoadError,
            f"private key file is readable by all users (mode {stat.S_IMODE(mode):o}); refusing it: run chmod 600",
            option=option,
            file=path,
        )
    if mode & stat.S_IRGRP:
        warnings.append(
            f"{option}: private key file {path} is readable by its group (mode {stat.S_IMODE(mode):o}); "
            "consider chmod 600"
        )


def load_private_key(
    path: Path, files: Mapping[Path, bytes], *, option: str, where: Where, warnings: list[str]
) -> TLSKey:
    """The one unencrypted private key in ``path``, else ``CredentialLoadError`` naming the option and file."""
    blocks = blocks_of(path, files, option=option, where=where, error=CredentialLoadError, wanted="PRIVATE KEY",
                       labels=KEY_LABELS)
    keys = [b for b in blocks if b.label in KEY_LABELS]
    damaged = [b.label for b in blocks if not b.der]
    if damaged:  # other blocks belong here (EC PARAMETERS, a combined file's chain); a damaged one is still named
        warnings.append(skipped_blocks(option, damaged, path))
    if not keys:
        raise where.error(CredentialLoadError, "no PEM private key in file", option=option, file=path)
    if len(keys) > 1:
        raise where.error(
            CredentialLoadError, f"{len(keys)} private keys in file; exactly one is allowed", option=option, file=path
        )
    block = keys[0]
    encrypted = where.error(CredentialLoadError, "private key is encrypted; gtls needs an unencrypted key (there is "
                            "no passphrase option)", option=option, file=path)
    if block.label == "ENCRYPTED PRIVATE KEY" or _ENCRYPTED_HEADER.search(block.pem):
        raise encrypted
    if block.label == "PRIVATE KEY" and _RSASSA_PSS_OID in block.der[:24]:
        # cryptography reads it as a plain RSA key and pyOpenSSL hands OpenSSL that, which then pairs it with no
        # certificate (the certificate's key is RSA-PSS): every handshake would fail. Refused here in plain words.
        raise where.error(
            CredentialLoadError,
            "RSA-PSS private keys (openssl genpkey -algorithm RSA-PSS) are not supported; use an RSA key "
            "(openssl genpkey -algorithm RSA): its certificate may still be signed with RSA-PSS",
            option=option,
            file=path,
        )
    try:
        # From the DER gtls's PEM reader decoded, as for every other file: cryptography's PEM parser refused header
        # lines not followed by a blank line, with a message quoting a byte offset (audit 69).
        key = serialization.load_der_private_key(block.der, password=None)
    except TypeError:
        raise encrypted from None
    except (ValueError, Exception) as exc:  # noqa: B014 - cryptography raises several types for bad keys
        raise where.error(CredentialLoadError, f"cannot load private key ({exc})", option=option, file=path) from None
    if not isinstance(key, TLSKey):
        raise where.error(
            CredentialLoadError, f"unsupported private key type {type(key).__name__}", option=option, file=path
        )
    check_key_permissions(path, option=option, where=where, warnings=warnings)
    limit = signing_limit(key)
    if limit is not None:
        warnings.append(f"{option}: the key in {path} {limit}")
    return key


#: Curves TLS signs with everywhere (TLS 1.3's ECDSA schemes; what TLS 1.2 peers offer by default).
_TLS_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})
#: RFC 8734's TLS 1.3 schemes; OpenSSL 3.2 and later only.
_BRAINPOOL = frozenset({"brainpoolP256r1", "brainpoolP384r1", "brainpoolP512r1"})


def signing_limit(key: TLSKey) -> str | None:
    """Why few or no peers accept handshakes this key signs, else None (a warning: OpenSSL loads such keys, and
    the handshake fails later with a word about ciphers or versions, which points away from the key)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        curve = key.curve.name
        if curve in _TLS_CURVES:
            return None
        if curve in _BRAINPOOL:
            return (f"is on {curve}: only TLS 1.3 peers on OpenSSL 3.2 or later accept its signatures; others fail "
                    "the handshake (no-shared-cipher or protocol-version); use P-256, P-384 or P-521")
        return (f"is on {curve}, a curve TLS peers do not sign with: handshakes fail (no-shared-cipher); use P-256, "
                "P-384 or P-521")
    if isinstance(key, dsa.DSAPrivateKey):
        return ("is a DSA key: it signs only TLS 1.2 handshakes with DHE-DSS cipher suites, which peers no longer "
                "offer by default; use an EC or RSA key")
    return None
