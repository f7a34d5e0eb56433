"""The offline verifier: the handshake's policy (store, flags, CRLs, purpose, name rule) on a given chain (spec §9).

``verify_compiled`` judges a chain against an already compiled context: ``gtls.verify.verify_chain`` (the public
entry point, which compiles the settings) and ``gtls._verdicts`` (which re-runs it on the failure
path to learn the failing depth and subject; ``located_by_openssl`` when the refused chain holds a certificate
``cryptography`` cannot load) both call it. It takes the compiled context as given and imports ``gtls.context`` for
its type only, so the context can use it without an import cycle (design.md §2).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Final, NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import CRLEntryExtensionOID, ExtensionOID
from OpenSSL import SSL, crypto

from . import _binding
from . import errors as e
from ._printable import printable
from ._ssl_compat import subject_rfc4514
from .engine import der_of, loaded_by_cryptography, sent_certificates
from .errors import PeerVerificationError
from .pki import hostcheck, names, reasons
from .pki.certs import authority_key_id, self_signed, subject_key_id, subject_text
from .pki.strength import Weakness, weakness, weaknesses
from .resolve import Role

if TYPE_CHECKING:
    from .context import CompiledContext

CertLike = x509.Certificate | crypto.X509


def _as_crypto(cert: CertLike, position: int) -> x509.Certificate:
    """``cert`` as ``cryptography`` holds it. A pyOpenSSL certificate that ``cryptography`` cannot load (one OpenSSL
    accepts in a handshake: a version field of 3) raises the ``ValueError`` ``TLSStream.peer_chain`` raises for it;
    the verified path this returns is ``cryptography``'s, so there is no verdict to give without it."""
    if not isinstance(cert, crypto.X509):
        return cert
    return loaded_by_cryptography(der_of(cert), f"certificate {position} of the chain (0: the leaf)",
                                  "verify_chain cannot judge it; a handshake with the same settings can")


def openssl_peer_chain(conn: SSL.Connection, role: Role) -> list[crypto.X509]:
    """The certificates the peer sent, leaf first, as OpenSSL holds them (``engine.sent_certificates``).

    A server that refused the client's chain keeps none of what the client sent, but OpenSSL leaves the chain it
    was building in ``SSL_get0_verified_chain`` (leaf first, as far as it got, whatever the outcome), which names
    the certificate at fault just as well. Read on the failure path only."""
    sent = sent_certificates(conn)
    if not sent and role == "server":
        return list(conn.get_verified_chain() or [])
    return sent


def der_subject(der: bytes) -> str:
    """The subject of a certificate, as ``subject_text`` writes it; read from the DER by gtls's own reader when
    ``cryptography`` cannot load it (a version field of 3, a damaged date; a serial of 0 under warnings as errors).
    Not through pyOpenSSL's X509 name methods, which pyOpenSSL 26 deprecates."""
    try:
        return subject_text(x509.load_der_x509_certificate(der))
    except Exception:  # noqa: BLE001 - cryptography's parse error, or its warning raised as an error
        return printable(subject_rfc4514(der)) or "(empty subject)"


def _store(compiled: CompiledContext, flags: int, reference: str | None, at: dt.datetime | None) -> crypto.X509Store:
    """A store for one verification: pinned to its purpose, reference name and time, so never shared. Its CAs and
    CRLs are converted for OpenSSL once per compiled context and shared (a failed handshake re-verifies offline, and
    any peer can cause that); OpenSSL takes a reference to each, so no copy is made."""
    cas = compiled._verify_cas
    if cas is None:  # two threads may both convert: the same result
        cas = compiled._verify_cas = _anchors(compiled)
    store = crypto.X509Store()
    for ca in cas:
        store.add_cert(ca)
    if flags:
        if hostcheck.AVAILABLE:
            crls = compiled._verify_crls
            if crls is None:
                crls = compiled._verify_crls = _binding.openssl_crls(compiled.crls)
            _binding.store_add_crls(store, crls)
        else:
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


def _anchors(compiled: CompiledContext) -> tuple[crypto.X509, ...]:
    """The trusted CAs for OpenSSL: ``trusted-ca``'s, else, with profile windows, the system store's certificates the
    context's own store was given when it was compiled (gtls.pki.system_trust): the same anchors, no file read."""
    if compiled.trusted or compiled.resolved.profile != "windows":
        return tuple(crypto.X509.from_cryptography(ca) for ca in compiled.trusted)
    return compiled.system_anchors


class Verdict(PeerVerificationError):
    """The offline verifier's refusal, with the OpenSSL verify code behind it: ``gtls._advice`` chooses its hint by
    the code (no issuer found, self-signed, a weak key), which the reason word alone does not tell."""

    code: int = 0


def _failure(code: int, depth: int, cert: x509.Certificate | None, reference: str | None, chain: Sequence[
        x509.Certificate]) -> Verdict:
    reason = reasons.reason_for(code)
    if reason == e.NAME_MISMATCH and reference is not None:
        message = names.mismatch_message(chain[0], reference)
    else:
        message = hostcheck.verify_message(code)
    verdict = Verdict(reason, message, depth=depth, subject=subject_text(cert) if cert else None)
    verdict.code = code
    return verdict


def as_cryptography(chain: Sequence[CertLike]) -> list[x509.Certificate]:
    """``chain`` as ``cryptography`` holds it, leaf first (``_as_crypto``: a certificate it cannot load raises)."""
    return [_as_crypto(cert, position) for position, cert in enumerate(chain)]


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
    """Verify ``chain`` (leaf first) as a handshake on ``compiled`` would; the verified path, leaf first.

    A chain with several faults fails on the one the handshake reports: the first in OpenSSL's order (path, CA and
    purpose, security level, name, revocation, then signatures and dates from the trust anchor down; README,
    *Several faults in one peer chain*), the expired-CRL waiver included."""
    certs = as_cryptography(chain)
    if not certs:
        raise PeerVerificationError(e.NO_PEER_CERTIFICATE, "no certificate to verify")
    if weakness(certs[0]) is Weakness.KEY:  # OpenSSL checks the leaf's key before anything else
        raise _failure(reasons.EE_KEY_TOO_SMALL, 0, certs[0], reference, certs)
    outcome = _run(compiled, certs, compiled.verify_flags, reference, at)
    if isinstance(outcome, tuple):
        code, depth, cert = outcome
        if code in reasons.AFTER_AUTH_LEVEL:
            _check_auth_level(_presumed_path(compiled, certs, at), reference, certs)
        if not (code == reasons.CRL_HAS_EXPIRED and compiled.crl_expired_warn):
            raise _failure(code, depth, cert, reference, certs)
        return _past_expired_crl(compiled, certs, reference, at, depth)
    path = outcome
    _check_auth_level(path, reference, certs)
    if reference is not None and not hostcheck.AVAILABLE and not names.matches(path[0], reference):
        raise _failure(reasons.HOSTNAME_MISMATCH, 0, path[0], reference, certs)
    return path


def located_by_openssl(compiled: CompiledContext, chain: Sequence[crypto.X509], code: int, *, reference: str | None
                       ) -> PeerVerificationError | None:
    """A handshake's verify failure ``code`` located by OpenSSL alone, for a refused ``chain`` (leaf first) that
    ``cryptography`` cannot load: OpenSSL's verdict on it against the handshake's store, nothing converted, with the
    depth and subject of the certificate at fault. None when that verdict is not ``code`` (what only
    ``verify_compiled`` adds: the security level's checks, a waived expired CRL), or is a name mismatch (its message
    lists the leaf's names). The located error is returned, never raised (raised, it would hold this frame); other
    errors (a store that cannot be built, a DER gtls cannot read) propagate to the caller, which falls back to the
    reason word alone. Failure path only."""
    store = _store(compiled, compiled.verify_flags, reference, None)
    try:
        crypto.X509StoreContext(store, chain[0], list(chain[1:])).verify_certificate()
    except crypto.X509StoreContextError as exc:
        found, depth, cert = int(exc.errors[0]), int(exc.errors[1]), exc.certificate
    else:
        return None
    reason = reasons.reason_for(found)
    if found != code or reason == e.NAME_MISMATCH:
        return None
    return PeerVerificationError(reason, hostcheck.verify_message(found), depth=depth,
                                 subject=der_subject(der_of(cert)) if cert is not None else None)


def _check_auth_level(path: Sequence[x509.Certificate], reference: str | None, certs: Sequence[x509.Certificate]
                      ) -> None:
    """What a handshake adds to a bare X509_STORE: OpenSSL's security level on the path (``check_auth_level``), in
    its order: each issuer's key, and each signature but the trust anchor's (``gtls.pki.strength``)."""
    last = len(path) - 1
    for depth, found in enumerate(weaknesses(path)):
        if found is Weakness.KEY and depth > 0:
            raise _failure(reasons.CA_KEY_TOO_SMALL, depth, path[depth], reference, certs)
        if found is Weakness.SIGNATURE and depth < last:
            raise _failure(reasons.CA_MD_TOO_WEAK, depth, path[depth], reference, certs)


_SHA256 = hashes.SHA256()
#: OpenSSL's default verify depth: a path longer than this fails before any check of ours matters.
_MAX_PATH = 101


def _presumed_path(compiled: CompiledContext, certs: Sequence[x509.Certificate], at: dt.datetime | None = None
                   ) -> list[x509.Certificate]:
    """The path of a chain OpenSSL built but then failed (it reports only the failing certificate): from the leaf,
    each issuer as OpenSSL's chain building picks it, a trusted CA first (OpenSSL's default), else one the peer sent
    (peers repeat certificates and send them in any order); see ``_issuer_among``.

    Any peer can make this run (a forged chain fails its signature check), so it is linear in what the peer sent:
    names are indexed once, and the walk stops at OpenSSL's verify depth (a server may send 100 KiB of certificates:
    comparing names step by step made that half a second of a client's event loop)."""
    when = at or dt.datetime.now(dt.UTC)
    trusted = _links(compiled.trusted)
    sent = _links(certs)
    path = [certs[0]]
    used = {certs[0].fingerprint(_SHA256)}  # a certificate sent twice is one link, as OpenSSL skips copies
    while len(path) < _MAX_PATH and not self_signed(path[-1]):
        wanted = path[-1].issuer
        issuer = (_issuer_among(path[-1], trusted.get(wanted, ()), used, when)
                  or _issuer_among(path[-1], sent.get(wanted, ()), used, when))
        if issuer is None:
            break
        used.add(issuer.fingerprint)
        path.append(issuer.cert)
    return path


class _Link(NamedTuple):
    """A possible issuer, with what picking one reads, read once."""

    cert: x509.Certificate
    fingerprint: bytes
    key_id: bytes | None
    key_type: type | None


def _links(certs: Iterable[x509.Certificate]) -> dict[x509.Name, list[_Link]]:
    # Keyed by the name objects, whose equality ignores string types as OpenSSL's name comparison does.
    links: dict[x509.Name, list[_Link]] = {}
    for cert in certs:
        links.setdefault(cert.subject, []).append(
            _Link(cert, cert.fingerprint(_SHA256), subject_key_id(cert), _key_type(cert)))
    return links


def _key_type(cert: x509.Certificate) -> type | None:
    try:
        key = cert.public_key()
    except Exception:  # noqa: BLE001 - a key type cryptography cannot load: OpenSSL's to judge
        return None
    return rsa.RSAPublicKey if isinstance(key, rsa.RSAPublicKey) else (
        ec.EllipticCurvePublicKey if isinstance(key, ec.EllipticCurvePublicKey) else None)


def _signer_type(cert: x509.Certificate) -> type | None:
    """The key type ``cert``'s signature algorithm needs (RSA or EC; None: another, or unknown)."""
    try:
        parameters = cert.signature_algorithm_parameters
    except Exception:  # noqa: BLE001 - an algorithm cryptography does not know
        return None
    if isinstance(parameters, padding.PKCS1v15 | padding.PSS):
        return rsa.RSAPublicKey
    return ec.EllipticCurvePublicKey if isinstance(parameters, ec.ECDSA) else None


def _issuer_among(cert: x509.Certificate, links: Iterable[_Link], used: set[bytes], when: dt.datetime
                  ) -> _Link | None:
    """OpenSSL's pick among the certificates of the wanted name (``find_issuer``, ``X509_STORE_CTX_get1_issuer``):
    one that may have issued ``cert`` (key identifiers and key type agree: ``check_issued``; several CAs of one name
    are common: a renewed or cross-signed CA, another CA given the same name), valid at ``when`` first, else the one
    expiring last; never one already on the path."""
    authority = authority_key_id(cert)
    signer = _signer_type(cert)
    best: _Link | None = None
    for link in links:
        if (link.fingerprint in used or (authority and link.key_id and authority != link.key_id)
                or (signer and link.key_type and signer is not link.key_type)):
            continue
        if link.cert.not_valid_before_utc <= when <= link.cert.not_valid_after_utc:
            return link
        if best is None or link.cert.not_valid_after_utc > best.cert.not_valid_after_utc:
            best = link
    return best


def _past_expired_crl(compiled: CompiledContext, certs: list[x509.Certificate], reference: str | None,
                      at: dt.datetime | None, expired_depth: int) -> list[x509.Certificate]:
    """``tls-crl-expired=warn`` offline. A handshake's callback waives CRL_HAS_EXPIRED and OpenSSL goes on; a bare
    X509_STORE_CTX cannot take that callback in this binding, so: every check but revocation by OpenSSL, then the
    revocation of the certificates from the expired CRL's depth on by the same rules in Python (depths below it
    already passed OpenSSL's CRL checks)."""
    outcome = _run(compiled, certs, 0, reference, at)
    if isinstance(outcome, tuple):
        # OpenSSL's order: a fault it finds after revocation (a bad signature, an expired certificate) loses to a
        # revoked certificate, as in the handshake, whose callback goes on past the expiry into the revocation check.
        # (The security level was checked by the caller, before the expired CRL.)
        code, depth, cert = outcome
        if code in reasons.AFTER_REVOCATION:
            _check_revocation(compiled, _presumed_path(compiled, certs, at), reference, certs, at, expired_depth)
        raise _failure(code, depth, cert, reference, certs)
    path = outcome
    _check_auth_level(path, reference, certs)
    _check_revocation(compiled, path, reference, certs, at, expired_depth)
    return path


def _check_revocation(compiled: CompiledContext, path: list[x509.Certificate], reference: str | None,
                      certs: list[x509.Certificate], at: dt.datetime | None, expired_depth: int) -> None:
    """The revocation of ``path`` from the expired CRL's depth on, by OpenSSL's rules, in Python (raises)."""
    when = at or dt.datetime.now(dt.UTC)
    last = len(path) - 1 if compiled.verify_flags & crypto.X509StoreFlags.CRL_CHECK_ALL else 0
    if not ANCHOR_CRL_CHECKED:
        last = min(last, len(path) - 2)
    for depth in range(expired_depth, last + 1):  # with the trust anchor where OpenSSL checks it (check_revocation)
        code = _crl_verdict(compiled, path, depth, when)
        if code:
            raise _failure(code, depth, path[depth], reference, certs)


def _crl_verdict(compiled: CompiledContext, path: Sequence[x509.Certificate], depth: int, when: dt.datetime) -> int:
    """The X509_V_ERR code OpenSSL gives the revocation check of ``path[depth]`` (0: fine), expiry waived.

    The CRL is the one OpenSSL picks (``get_crl_sk``, ``get_crl_score``) among those naming the certificate's issuer
    whose issuer is on the path (``_crl_issuer``; another CRL is never used, even a current one of a CA of the same
    name): one without an unhandled critical extension first, then a current one, then one from the certificate's
    own issuer, then the newest; the first in the file among equals. It is then checked in OpenSSL's order
    (``check_crl``, ``cert_crl``) against that issuer."""
    cert = path[depth]
    best: tuple[int, x509.CertificateRevocationList, x509.Certificate] | None = None
    for crl in compiled.crls:
        if crl.issuer.public_bytes() != cert.issuer.public_bytes():
            continue
        found = _crl_issuer(crl, path, depth)
        if found is None:
            continue
        issuer, own = found
        next_update = crl.next_update_utc
        current = crl.last_update_utc <= when and (next_update is None or when < next_update)
        score = (0 if _unhandled(compiled, crl) else 4) + (2 if current else 0) + (1 if own else 0)
        if best is None or score > best[0] or (score == best[0] and crl.last_update_utc > best[1].last_update_utc):
            best = (score, crl, issuer)
    if best is None:
        return 3  # UNABLE_TO_GET_CRL
    _, crl, issuer = best
    try:
        usage = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.crl_sign:
        return 35  # KEYUSAGE_NO_CRL_SIGN
    if crl.last_update_utc > when:
        return 11  # CRL_NOT_YET_VALID
    try:
        if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
            return 8  # CRL_SIGNATURE_FAILURE
    except (InvalidSignature, TypeError, ValueError):
        return 8
    if _unhandled(compiled, crl):
        return 36  # UNHANDLED_CRITICAL_CRL_EXTENSION
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    if entry is not None and _reason(entry) is not x509.ReasonFlags.remove_from_crl:  # OpenSSL passes those
        return 23  # CERT_REVOKED
    return 0


def _crl_issuer(crl: x509.CertificateRevocationList, path: Sequence[x509.Certificate], depth: int
                ) -> tuple[x509.Certificate, bool] | None:
    """OpenSSL's ``crl_akid_check``: the CRL's issuer on the path, and whether it is the certificate's own issuer
    (the next certificate; the trust anchor's own for itself), else a certificate of that name further up. None:
    no such certificate, and OpenSSL does not use the CRL (without extended CRL support, which gtls leaves off)."""
    own = min(depth + 1, len(path) - 1)
    if _issued_by(crl, path[own]):
        return path[own], True
    for higher in path[own + 1:]:
        if higher.subject.public_bytes() == crl.issuer.public_bytes() and _issued_by(crl, higher):
            return higher, False
    return None


#: Critical extensions OpenSSL handles: on the CRL, and on its entries (others make it refuse the whole CRL).
#: Whether the linked OpenSSL checks the trust anchor itself against the CRLs under ``tls-crl-scope=chain``: 3.x
#: does (an anchor listed in its own CRL is ``revoked``), 4.0 no longer does. The waiver's re-check follows it, so
#: that ``verify_chain`` keeps agreeing with the handshake whichever OpenSSL the cryptography wheel carries.
ANCHOR_CRL_CHECKED: Final = SSL.OPENSSL_VERSION_NUMBER < 0x40000000

_HANDLED_CRL_EXTENSIONS: Final = frozenset({
    ExtensionOID.ISSUING_DISTRIBUTION_POINT, ExtensionOID.AUTHORITY_KEY_IDENTIFIER, ExtensionOID.DELTA_CRL_INDICATOR,
})
_HANDLED_ENTRY_EXTENSIONS: Final = frozenset({CRLEntryExtensionOID.CERTIFICATE_ISSUER})


def _unhandled(compiled: CompiledContext, crl: x509.CertificateRevocationList) -> bool:
    """``_unhandled_critical`` of one of ``compiled``'s CRLs, judged once per compiled context: it reads every entry
    (50,000 of them took 60 ms, on each refused client of a port that reads such a CRL)."""
    verdicts = compiled._crl_unhandled
    if verdicts is None:  # two threads may both judge: the same result
        verdicts = compiled._crl_unhandled = tuple(_unhandled_critical(c) for c in compiled.crls)
    return next(verdict for known, verdict in zip(compiled.crls, verdicts, strict=True) if known is crl)


def _unhandled_critical(crl: x509.CertificateRevocationList) -> bool:
    """Whether ``crl`` carries a critical extension OpenSSL does not handle, on itself or an entry (its
    ``EXFLAG_CRITICAL``): OpenSSL then refuses the CRL (X509_V_ERR_UNHANDLED_CRITICAL_CRL_EXTENSION)."""
    if any(ext.critical and ext.oid not in _HANDLED_CRL_EXTENSIONS for ext in crl.extensions):
        return True
    return any(ext.critical and ext.oid not in _HANDLED_ENTRY_EXTENSIONS for entry in crl for ext in entry.extensions)


def _reason(entry: x509.RevokedCertificate) -> x509.ReasonFlags | None:
    try:
        return entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        return None


def _issued_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    """Whether the CRL's authority key identifier (when it and the issuer's subject key identifier are both present)
    names the issuer's key, as OpenSSL's ``X509_check_akid`` decides."""
    try:
        akid = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
        skid = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return True
    return akid is None or akid == skid
