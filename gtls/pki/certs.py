"""Small facts about X.509 certificates shared by the PKI modules."""

from __future__ import annotations

import datetime as dt
from typing import Final

import cryptography
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID
from OpenSSL import crypto

from .._der import elements, only
from .._redact import escape_controls
from .pem import Unsupported


def parse_certificate(der: bytes) -> x509.Certificate:
    """A certificate from DER, with every part gtls or OpenSSL reads later parsed now. cryptography parses names,
    extensions and the public key lazily, so a damaged certificate (a flipped bit, an unknown name tag, a curve
    OID changed) loaded fine and failed later with a ``ValueError``, ``KeyError`` or ``UnsupportedAlgorithm`` far
    from the file: a traceback instead of a ``CredentialLoadError``. Any such fault raises ``ValueError``."""
    try:
        cert = x509.load_der_x509_certificate(der)
        cert.subject  # noqa: B018 - each access parses: the names, every extension's value
        cert.issuer  # noqa: B018
        cert.extensions  # noqa: B018
        openssl = crypto.load_certificate(crypto.FILETYPE_ASN1, der)  # OpenSSL reads it too (context, strength)
        try:
            cert.public_key()
        except (ValueError, UnsupportedAlgorithm) as exc:
            openssl.get_pubkey()  # crypto.Error when OpenSSL cannot read the key either: malformed, below
            # A key OpenSSL reads and this cryptography does not: a type too new (ML-DSA before cryptography 47), or
            # one it refuses (EC with explicit curve parameters).
            newer = "; a newer cryptography may" if str(exc).startswith("Unknown key type") else ""
            raise Unsupported(f"cryptography {cryptography.__version__} cannot read its key: {exc}{newer}") from None
    except ValueError:
        raise
    except _PARSE_FAILURES as exc:
        raise ValueError(_parse_problem(exc)) from None
    return cert


#: How cryptography and OpenSSL refuse a part of the DER besides ``ValueError``, when it is first read.
_PARSE_FAILURES: Final = (KeyError, UnsupportedAlgorithm, x509.InvalidVersion, x509.DuplicateExtension,
                          x509.UnsupportedGeneralNameType, TypeError, crypto.Error)


def _parse_problem(exc: Exception) -> str:
    """Words for a parse failure that are not a ``ValueError``'s own (a ``KeyError`` says only ``165``)."""
    if isinstance(exc, KeyError):
        return f"unknown ASN.1 string type {exc.args[0] if exc.args else '?'} in a name"
    if isinstance(exc, crypto.Error):
        reasons = [entry[2] for entry in exc.args[0] if isinstance(entry, tuple) and len(entry) == 3] if (
            exc.args and isinstance(exc.args[0], list)) else []
        return "OpenSSL cannot parse it" + (f": {', '.join(reasons)}" if reasons else "")
    return str(exc) or type(exc).__name__


def parse_crl(der: bytes) -> x509.CertificateRevocationList:
    """A CRL from DER, every part gtls or OpenSSL reads later parsed now (see ``parse_certificate``)."""
    try:
        crl = x509.load_der_x509_crl(der)
        crl.issuer.rfc4514_string()
        for extension in crl.extensions:
            extension.value  # noqa: B018
        for revoked in crl:
            for extension in revoked.extensions:
                extension.value  # noqa: B018
        crypto.X509Store().add_crl(crl)  # OpenSSL's own parse, as the context's store does
    except ValueError:
        raise
    except _PARSE_FAILURES as exc:
        raise ValueError(_parse_problem(exc)) from None
    return crl


def subject_text(cert: x509.Certificate) -> str:
    """RFC 4514 text of the subject, control characters escaped (a peer's certificate is quoted in logs)."""
    return escape_controls(cert.subject.rfc4514_string()) or "(empty subject)"


def sha1_thumbprint(cert: x509.Certificate) -> str:
    """The SHA-1 fingerprint of the DER form in upper-case hex, as Windows shows it."""
    return cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - identification, not security


def spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def matches_key(cert: x509.Certificate, key: PrivateKeyTypes) -> bool:
    return spki(cert.public_key()) == spki(key.public_key())


def is_ca(cert: x509.Certificate) -> bool:
    """basicConstraints CA:TRUE (absent or CA:FALSE means an end-entity certificate)."""
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def self_issued(cert: x509.Certificate) -> bool:
    return cert.subject.public_bytes() == cert.issuer.public_bytes()


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Subject/issuer names equal (DER), key identifiers equal when both exist, and the signature verifies."""
    if cert.issuer.public_bytes() != issuer.subject.public_bytes():
        return False
    aki = authority_key_id(cert)
    ski = subject_key_id(issuer)
    if aki is not None and ski is not None and aki != ski:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except ValueError:
        # cryptography refuses to check SHA-1 and MD5 signatures ("Unsupported signature algorithm") while
        # OpenSSL still reads them: whether they are acceptable is the strength check's question, not this one.
        return _legacy_signature_verifies(cert, issuer.public_key())
    except (InvalidSignature, TypeError):
        return False
    return True


#: Legacy signature algorithms cryptography will not check, with the key type each needs (the hash is read from the
#: certificate). Only these are checked directly: any other refusal stays a refusal.
_LEGACY_SIGNATURES: dict[str, type] = {
    "1.2.840.113549.1.1.4": rsa.RSAPublicKey,  # md5WithRSAEncryption
    "1.2.840.113549.1.1.5": rsa.RSAPublicKey,  # sha1WithRSAEncryption
    "1.2.840.10045.4.1": ec.EllipticCurvePublicKey,  # ecdsa-with-SHA1
    "1.2.840.10040.4.3": dsa.DSAPublicKey,  # dsa-with-sha1
}


def _legacy_signature_verifies(cert: x509.Certificate, key: PublicKeyTypes) -> bool:
    """The signature of ``cert`` checked with ``key`` directly, for the legacy algorithms above only, with the key
    type the algorithm names and the same algorithm inside and outside the signed part, as OpenSSL requires: the
    hash primitives still verify what the certificate API will not (a SHA-1-signed root of the system bundle must
    still be seen as self-signed)."""
    oid = cert.signature_algorithm_oid.dotted_string
    wanted = _LEGACY_SIGNATURES.get(oid)
    if wanted is None or not isinstance(key, wanted) or not _same_inner_algorithm(cert):
        return False
    try:
        algorithm = cert.signature_hash_algorithm
        if algorithm is None:
            return False
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
        else:
            assert isinstance(key, dsa.DSAPublicKey)
            key.verify(cert.signature, cert.tbs_certificate_bytes, algorithm)
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def _same_inner_algorithm(cert: x509.Certificate) -> bool:
    """The signature algorithm inside the signed part equals the one outside it (DER), as OpenSSL checks."""
    try:
        signed, outer, _ = elements(only(cert.public_bytes(serialization.Encoding.DER))[1])
        fields = elements(signed[1])
        inner = fields[2] if fields[0][0] == 0xA0 else fields[1]  # after the optional [0] version and the serial
    except (ValueError, IndexError):
        return False
    return inner == outer


def self_signed(cert: x509.Certificate) -> bool:
    return self_issued(cert) and signed_by(cert, cert)


#: What reading a certificate's extensions raises when ``cryptography`` refuses one OpenSSL takes (a subjectAltName
#: with an x400Address or a byte that is not UTF-8): the key identifiers are then unknown, as if absent, and issuers
#: are matched by name (such a peer certificate failed ``verify_chain`` with this error instead of its verdict).
_UNREADABLE_EXTENSIONS: Final = (ValueError, x509.UnsupportedGeneralNameType)


def authority_key_id(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except (x509.ExtensionNotFound, *_UNREADABLE_EXTENSIONS):
        return None


def subject_key_id(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except (x509.ExtensionNotFound, *_UNREADABLE_EXTENSIONS):
        return None


def validity_problem(cert: x509.Certificate, now: dt.datetime) -> str | None:
    """"expired on …" / "not valid before …" when ``now`` is outside the certificate's validity period."""
    if now > cert.not_valid_after_utc:
        return f"expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    if now < cert.not_valid_before_utc:
        return f"not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
    return None


def allows_role(cert: x509.Certificate, role: str) -> bool:
    """extendedKeyUsage absent, or it lists serverAuth (server) / clientAuth (client) or anyExtendedKeyUsage."""
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    wanted = ExtendedKeyUsageOID.SERVER_AUTH if role == "server" else ExtendedKeyUsageOID.CLIENT_AUTH
    return wanted in usages or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usages
