"""Offline verification: the handshake's policy (store, flags, CRLs, purpose, name rule) on a given chain (spec §9).

``verify_chain`` is the public entry point; ``verify_compiled`` is shared with ``CompiledContext.handshake_failure``,
which re-runs it on the failure path to learn the failing depth and subject.
"""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from OpenSSL import SSL, crypto

from . import errors as e
from .context import CompiledContext, compile_settings
from .errors import InvalidOptionValue, PeerVerificationError
from .options import TLSOptions
from .pki import hostcheck, names, reasons
from .pki.certs import self_signed, subject_text
from .resolve import Resolved, Role

CertLike = x509.Certificate | crypto.X509


def _as_crypto(cert: CertLike) -> x509.Certificate:
    return cert.to_cryptography() if isinstance(cert, crypto.X509) else cert


def peer_chain(conn: SSL.Connection, role: Role) -> list[x509.Certificate]:
    """The certificates the peer sent, leaf first (a server's OpenSSL list omits the client's leaf)."""
    sent = conn.get_peer_cert_chain(as_cryptography=True) or []
    if role == "server":
        leaf = conn.get_peer_certificate(as_cryptography=True)
        if leaf is not None and (not sent or sent[0] != leaf):
            sent = [leaf, *sent]
    return list(sent)


def _store(compiled: CompiledContext, flags: int, reference: str | None, at: dt.datetime | None) -> crypto.X509Store:
    store = crypto.X509Store()
    for ca in compiled.trusted:
        store.add_cert(crypto.X509.from_cryptography(ca))
    if not compiled.trusted and compiled.resolved.profile == "windows":
        paths = ssl.get_default_verify_paths()
        if paths.cafile or paths.capath:
            store.load_locations(paths.cafile, paths.capath)
    if flags:
        for crl in compiled.crls:
            store.add_crl(crl)
        store.set_flags(flags)
    purpose = "ssl_server" if compiled.role == "client" else "ssl_client"
    if hostcheck.AVAILABLE:
        openssl_name = names.openssl_reference(reference) if reference is not None else None
        hostcheck.pin_store(store, purpose=purpose, reference=openssl_name, at=at)
    elif at is not None:
        store.set_time(at)
    return store


def _failure(code: int, depth: int, cert: x509.Certificate | None, reference: str | None, chain: Sequence[
        x509.Certificate]) -> PeerVerificationError:
    reason = reasons.reason_for(code)
    text = hostcheck.error_text(code)
    if reason == e.NAME_MISMATCH and reference is not None:
        message = names.mismatch_message(chain[0], reference)
    elif reasons.is_known(code):
        message = text
    else:
        message = f"OpenSSL verify error {code}: {text}"
    return PeerVerificationError(reason, message, depth=depth, subject=subject_text(cert) if cert else None)


def _run(compiled: CompiledContext, chain: Sequence[x509.Certificate], flags: int, reference: str | None,
         at: dt.datetime | None) -> list[x509.Certificate] | tuple[int, int, x509.Certificate | None]:
    """OpenSSL's verdict: the verified path, or (code, depth, failing certificate)."""
    store = _store(compiled, flags, reference, at)
    leaf = crypto.X509.from_cryptography(chain[0])
    untrusted = [crypto.X509.from_cryptography(c) for c in chain[1:]]
    try:
        path = crypto.X509StoreContext(store, leaf, untrusted).get_verified_chain()
    except crypto.X509StoreContextError as exc:
        code, depth = int(exc.errors[0]), int(exc.errors[1])
        return code, depth, exc.certificate.to_cryptography() if exc.certificate is not None else None
    return [c.to_cryptography() for c in path]


def verify_compiled(compiled: CompiledContext, chain: Sequence[CertLike], *, reference: str | None,
                    at: dt.datetime | None = None) -> list[x509.Certificate]:
    """Verify ``chain`` (leaf first) as a handshake on ``compiled`` would; the verified path, leaf first."""
    certs = [_as_crypto(c) for c in chain]
    if not certs:
        raise PeerVerificationError(e.NO_PEER_CERTIFICATE, "no certificate to verify")
    outcome = _run(compiled, certs, compiled.verify_flags, reference, at)
    if isinstance(outcome, tuple):
        code, depth, cert = outcome
        if not (code == reasons.CRL_HAS_EXPIRED and compiled.crl_expired_warn):
            raise _failure(code, depth, cert, reference, certs)
        return _past_expired_crl(compiled, certs, reference, at, depth)
    path = outcome
    if reference is not None and not hostcheck.AVAILABLE and not names.matches(path[0], reference):
        raise PeerVerificationError(e.NAME_MISMATCH, names.mismatch_message(path[0], reference), depth=0,
                                    subject=subject_text(path[0]))
    return path


def _past_expired_crl(compiled: CompiledContext, certs: list[x509.Certificate], reference: str | None,
                      at: dt.datetime | None, expired_depth: int) -> list[x509.Certificate]:
    """``tls-crl-expired=warn`` offline. A handshake's callback waives CRL_HAS_EXPIRED and OpenSSL goes on; a bare
    X509_STORE_CTX cannot take that callback in this binding, so: every check but revocation by OpenSSL, then the
    revocation of the certificates from the expired CRL's depth on by the same rules in Python (depths below it
    already passed OpenSSL's CRL checks)."""
    outcome = _run(compiled, certs, 0, reference, at)
    if isinstance(outcome, tuple):
        code, depth, cert = outcome
        raise _failure(code, depth, cert, reference, certs)
    path = outcome
    when = at or dt.datetime.now(dt.UTC)
    last = len(path) - 1 if compiled.verify_flags & crypto.X509StoreFlags.CRL_CHECK_ALL else 0
    for depth in range(expired_depth, last + 1):
        cert = path[depth]
        issuer = path[depth + 1] if depth + 1 < len(path) else cert
        if depth == len(path) - 1 and self_signed(cert):
            continue  # OpenSSL does not check the trust anchor's own revocation
        code = _crl_verdict(compiled.crls, cert, issuer, when)
        if code:
            raise _failure(code, depth, cert, reference, certs)
    return path


def _crl_verdict(crls: Sequence[x509.CertificateRevocationList], cert: x509.Certificate, issuer: x509.Certificate,
                 when: dt.datetime) -> int:
    """The X509_V_ERR code OpenSSL gives one certificate's revocation check (0: fine), expiry waived."""
    candidates = [c for c in crls if c.issuer.public_bytes() == cert.issuer.public_bytes()]
    if not candidates:
        return 3  # UNABLE_TO_GET_CRL
    crl = candidates[0]
    try:
        if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
            return 8  # CRL_SIGNATURE_FAILURE
    except (InvalidSignature, TypeError, ValueError):
        return 8
    if crl.last_update_utc > when:
        return 11  # CRL_NOT_YET_VALID
    if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
        return 23  # CERT_REVOKED
    return 0


def verify_chain(
    chain: Sequence[CertLike],
    settings: Resolved | TLSOptions | CompiledContext,
    role: Role,
    target_name: str | None = None,
    at: dt.datetime | None = None,
) -> list[x509.Certificate]:
    """Verify a peer's ``chain`` (leaf first) offline with the policy a handshake of ``role`` would apply.

    ``role`` is the local side: ``"client"`` judges a server certificate (purpose ssl_server, name check when
    ``tls-target-name-check=host``, reference ``tls-target-name`` else ``target_name``); ``"server"`` judges a client
    certificate (ssl_client; CRLs only with ``tls-mutual=1``, as in a handshake). ``at`` pins the validation time.
    Returns the verified path, leaf first, or raises ``PeerVerificationError`` with reason, depth and subject."""
    compiled = compile_settings(settings, role)
    reference = None
    if compiled.name_check:
        reference = compiled.reference_name(target_name)
        if reference is None:
            raise InvalidOptionValue(
                "tls-target-name-check=host needs a reference name: pass target_name or set tls-target-name",
                option="tls-target-name-check",
            )
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    return verify_compiled(compiled, chain, reference=reference, at=at)
