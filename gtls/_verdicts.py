"""What a failed handshake becomes: the ``HandshakeError`` of a connection of a ``CompiledContext``.

Our own verification verdict comes first, located by re-verifying the refused chain offline (the depth and subject of
the certificate at fault, gtls._offline); else OpenSSL's library reason (gtls.pki.failures). Also the TLS 1.3 case
where a server refuses the client's certificate after the client's handshake: the alert arrives with the first read
(spec §9). Failure path only: nothing here runs for a handshake that succeeds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from cryptography import x509
from OpenSSL import SSL, crypto

from . import _advice
from . import errors as e
from .errors import HandshakeError, PeerVerificationError
from .pki import hostcheck, names, reasons
from .pki.certs import subject_text
from .pki.failures import error_texts, library_failure, received_alert

if TYPE_CHECKING:
    from .context import CompiledContext

#: Alerts a server sends about the client's certificate (RFC 8446 §6.2).
_CERTIFICATE_ALERTS: Final = frozenset({
    "bad_certificate", "unsupported_certificate", "certificate_revoked", "certificate_expired", "certificate_unknown",
    "unknown_ca", "access_denied", "certificate_required", "handshake_failure",
})

#: The longest peer chain re-verified offline for the depth and subject of a failure. Real chains hold 2 to 5
#: certificates; re-verifying a hostile 100-certificate chain doubled what the refusal cost (any peer can send one),
#: so a longer chain's failure carries its reason without them, unless the path OpenSSL built from it is short.
_REVERIFIED_CHAIN: Final = 10


def handshake_failure(compiled: CompiledContext, conn: SSL.Connection, exc: BaseException, peer: str | None = None
                      ) -> HandshakeError:
    """The ``HandshakeError`` / ``PeerVerificationError`` for a failed handshake on a connection of ``compiled``:
    our own verification verdict first (reason, depth, subject), else OpenSSL's library reason."""
    code = hostcheck.verify_result(conn) if compiled.verifies_peer else 0
    if code != 0 and not (code == reasons.CRL_HAS_EXPIRED and compiled.crl_expired_warn):
        return _explained(compiled, conn, _verify_failure(compiled, conn, code, peer), code)
    reason, message, alert = library_failure(exc)
    cls = PeerVerificationError if reason in e.CERTIFICATE_REASONS else HandshakeError
    error = cls(reason, message, peer=peer, alert=alert)
    try:
        return _advice.library(compiled, error)
    except Exception:  # noqa: BLE001 - a diagnostic must never turn a refusal into a crash
        return error


def late_rejection(compiled: CompiledContext, conn: SSL.Connection, exc: SSL.Error, peer: str | None = None
                   ) -> HandshakeError | None:
    """A TLS 1.3 client's first read failed: the server's late rejection of the handshake if ``exc`` is an alert it
    received (spec §9), else None (any other failure there is the peer's protocol error)."""
    alert = received_alert(error_texts(exc))
    if alert is None:
        return None
    error = handshake_failure(compiled, conn, exc, peer)
    if error.reason != e.PEER_ALERT:
        return error
    # Our handshake was complete: "aborted the handshake" misled when the peer refused a record of ours instead (one
    # corrupted on the way reads bad_record_mac). Say what is known, and what a certificate alert means.
    why = (" (a TLS 1.3 server refuses a client's certificate this way, after the client's handshake)"
           if alert in _CERTIFICATE_ALERTS else "")
    return HandshakeError(e.PEER_ALERT, f"the peer sent the alert {alert} before any data, after our side of the "
                          f"handshake{why}", peer=peer, alert=alert)


def _verify_failure(compiled: CompiledContext, conn: SSL.Connection, code: int, peer: str | None
                    ) -> PeerVerificationError:
    # No local may hold the located error: its traceback leads back to this frame, and such a cycle would keep the
    # connection for the garbage collector (tests/test_reference_cycles.py).
    reason = reasons.reason_for(code)
    try:
        return _located_failure(compiled, conn, reason, peer) or _plain_failure(code, reason, peer)
    except Exception:  # noqa: BLE001 - a diagnostic must never turn a refusal into a crash: cryptography cannot
        pass  # load a certificate OpenSSL took (a version field of 3, serial 0 under warnings as errors)
    try:  # outside the handler: no error made here may hold the one above (nor its frames)
        return _located_by_openssl(compiled, conn, code, peer) or _plain_failure(code, reason, peer)
    except Exception:  # noqa: BLE001 - as above
        return _plain_failure(code, reason, peer)


def _explained(compiled: CompiledContext, conn: SSL.Connection, error: PeerVerificationError, code: int
               ) -> PeerVerificationError:
    """Our verdict in the operator's words (gtls._advice): who refused whom, and what to change."""
    try:
        return _advice.verdict(compiled, error, code, _readable_chain(compiled, conn))
    except Exception:  # noqa: BLE001 - a diagnostic must never turn a refusal into a crash
        return error


def _readable_chain(compiled: CompiledContext, conn: SSL.Connection) -> list[x509.Certificate]:
    """The peer's certificates cryptography can read, leaf first, from a chain of at most _REVERIFIED_CHAIN."""
    chain = _refused_chain(compiled, conn)
    readable = []
    for cert in chain[:_REVERIFIED_CHAIN]:
        try:
            readable.append(cert.to_cryptography())
        except Exception:  # noqa: BLE001, S112 - a certificate OpenSSL took that cryptography cannot read
            continue
    return readable


def _refused_chain(compiled: CompiledContext, conn: SSL.Connection) -> list[crypto.X509]:
    """The refused chain to re-verify offline, leaf first, as OpenSSL holds it (nothing converted)."""
    from ._offline import openssl_peer_chain

    chain = openssl_peer_chain(conn, compiled.role)
    if len(chain) > _REVERIFIED_CHAIN and compiled.role == "client":
        # More than any real chain: a bundle pasted after the server's own, or a hostile server. What failed is the
        # path OpenSSL built (as far as it got): re-verify that when it is short. Counted before anything is
        # converted (a server's chain is that path already).
        built = conn.get_verified_chain() or []
        if 0 < len(built) <= _REVERIFIED_CHAIN:
            chain = built
    return chain


def _located_failure(compiled: CompiledContext, conn: SSL.Connection, reason: e.Reason, peer: str | None
                     ) -> PeerVerificationError | None:
    """The failure re-verified offline, with the depth and subject of the certificate at fault (None: not found)."""
    from ._offline import verify_compiled

    chain = _refused_chain(compiled, conn)
    reference = compiled._references.get(conn)
    if 0 < len(chain) <= _REVERIFIED_CHAIN:
        try:
            verify_compiled(compiled, chain, reference=reference)
        except PeerVerificationError as offline:
            if offline.reason == reason:
                offline.peer = peer
                return offline
    if reason == e.NAME_MISMATCH and chain and reference is not None:
        leaf = chain[0].to_cryptography()
        return PeerVerificationError(reason, names.mismatch_message(leaf, reference), peer=peer, depth=0,
                                     subject=subject_text(leaf))
    return None


def _located_by_openssl(compiled: CompiledContext, conn: SSL.Connection, code: int, peer: str | None
                        ) -> PeerVerificationError | None:
    """``_located_failure`` for a refused chain ``cryptography`` cannot load: OpenSSL's own verdict re-run offline,
    the subject read from the DER. As bounded."""
    from ._offline import located_by_openssl

    chain = _refused_chain(compiled, conn)
    if not 0 < len(chain) <= _REVERIFIED_CHAIN:
        return None
    located = located_by_openssl(compiled, chain, code, reference=compiled._references.get(conn))
    if located is not None:
        located.peer = peer
    return located


def _plain_failure(code: int, reason: e.Reason, peer: str | None) -> PeerVerificationError:
    """A verification failure with OpenSSL's words only (no depth or subject)."""
    return PeerVerificationError(reason, hostcheck.verify_message(code), peer=peer)
