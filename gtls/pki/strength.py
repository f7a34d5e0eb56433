"""Certificate keys and signatures against OpenSSL's security level, judged by OpenSSL itself.

OpenSSL refuses a certificate whose key, or whose signature's hash, is weaker than its security level allows (level 2
since OpenSSL 3.2: RSA keys of at least 2048 bits, no SHA-1 signatures). It applies this to a server's own leaf when
the context is built, to the rest of its chain only when sending it (every handshake then ends in ``internal_error``),
and to the peer's path during verification; a bare ``X509_STORE`` (the offline verifier) applies none of it.

The binding exposes neither the level nor ``X509_VERIFY_PARAM_set_auth_level``, so gtls asks OpenSSL the question it
already answers for a server's own certificate: ``SSL_CTX_use_certificate`` on a scratch context of the same library,
with the same thresholds. No table of key sizes is kept here, so a new OpenSSL or a new key type cannot disagree.
One exception: from OpenSSL 4.0 that probe no longer judges signature hashes, so the hashes every level refuses
(SHA-1 and older) are named here (``_BROKEN_HASHES``).
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from enum import Enum

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from OpenSSL import SSL

from .. import _binding
from .certs import self_signed, subject_text


class Weakness(Enum):
    KEY = "key"
    SIGNATURE = "signature"


_scratch = threading.local()


def _scratch_context() -> SSL.Context:
    """This thread's scratch context (one costs ~85 µs to make; handshake failures come here to explain themselves)."""
    context: SSL.Context | None = getattr(_scratch, "context", None)
    if context is None:
        context = _scratch.context = SSL.Context(SSL.TLS_METHOD)
    return context


#: Signature hashes refused at every security level gtls can run at (1 and up: ``@SECLEVEL`` is refused in
#: cipher lists, so the library's default holds, 2 today). OpenSSL 4.0's ``SSL_CTX_use_certificate`` no longer
#: judges the signature's hash, while its verification still refuses these ("CA signature digest algorithm too
#: weak"): without this, a SHA-1-signed chain compiled and then failed every handshake.
_BROKEN_HASHES = frozenset({"md2", "md4", "md5", "sha1"})


def weakness(cert: x509.Certificate) -> Weakness | None:
    """What OpenSSL's security level refuses in ``cert``: its key, else its signature (never checked for a
    self-signed certificate, as OpenSSL does), else None."""
    context = _scratch_context()
    try:
        context.use_certificate(cert)
    except SSL.Error as exc:
        text = str(exc)
        if "key too small" in text:  # SSL_R_EE_KEY_TOO_SMALL / SSL_R_CA_KEY_TOO_SMALL
            return Weakness.KEY
        if "md too weak" in text:  # SSL_R_EE_MD_TOO_WEAK / SSL_R_CA_MD_TOO_WEAK
            return Weakness.SIGNATURE
        raise
    try:
        algorithm = cert.signature_hash_algorithm
    except Exception:  # noqa: BLE001 - an algorithm cryptography does not know
        # OpenSSL may know it (ML-DSA, SLH-DSA and SM2 with cryptography 46): then its verdict above stands. One it
        # does not know either, OpenSSL 3.x's probe refuses; OpenSSL 4.0's lets it through, and every peer's
        # verification then fails: a weak signature on both.
        unknown = _binding.OBJECT_NAMES and _binding.object_name(cert.signature_algorithm_oid.dotted_string) is None
        return Weakness.SIGNATURE if unknown and not self_signed(cert) else None
    if algorithm is not None and algorithm.name in _BROKEN_HASHES and not self_signed(cert):
        return Weakness.SIGNATURE
    return None


def weaknesses(certs: Sequence[x509.Certificate]) -> list[Weakness | None]:
    return [weakness(cert) for cert in certs]


def describe(cert: x509.Certificate, found: Weakness) -> str:
    """Why OpenSSL refuses ``cert``, and what to do about it."""
    if found is Weakness.KEY:
        return (f"{subject_text(cert)} has a {key_text(cert)} key, weaker than OpenSSL's security level allows "
                "(level 2: RSA of 2048 bits or more, or an EC key); reissue it with a stronger key")
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:  # an OID cryptography does not know, which OpenSSL called too weak: name the OID
        return (f"{subject_text(cert)} is signed with an unknown signature algorithm "
                f"({cert.signature_algorithm_oid.dotted_string}), which OpenSSL's security level refuses; have its "
                "issuer sign it with SHA-256 or stronger")
    digest = algorithm.name.upper() if algorithm is not None else "its algorithm"
    return (f"{subject_text(cert)} is signed with {digest}, weaker than OpenSSL's security level allows; have its "
            "issuer sign it with SHA-256 or stronger")


def key_text(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"{key.key_size}-bit RSA"
    if isinstance(key, dsa.DSAPublicKey):
        return f"{key.key_size}-bit DSA"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"{key.curve.name} EC"
    return type(key).__name__


__all__ = ["Weakness", "describe", "key_text", "weakness", "weaknesses"]
