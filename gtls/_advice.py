"""The words around a failed handshake's reason: which side refused, and what to change (spec §10's messages).

gtls._verdicts builds the error (reason, depth, subject); this module rewrites its message for the operator who
reads it in ``gtls connect``'s error line, a ``gtls serve`` log line or ``str(exc)``: who refused whom, the fact
OpenSSL reported (its own words kept, they are what search engines know), and the option to change, with its
object and level when the settings come from a deployment file. Failure path only; never key material.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Final, NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from . import errors as e
from ._levels import Level
from .errors import HandshakeError, PeerVerificationError
from .pki import reasons
from .pki.certs import rfc4514_text, self_signed, subject_text
from .pki.strength import Weakness
from .pki.strength import describe as describe_weakness

if TYPE_CHECKING:
    from .context import CompiledContext

#: OpenSSL verify codes for an issuer found nowhere (X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT(_LOCALLY),
#: UNABLE_TO_VERIFY_LEAF_SIGNATURE) and for a self-signed certificate not among the trusted ones.
_NO_ISSUER: Final = frozenset({2, 20, 21})
_SELF_SIGNED: Final = frozenset({18, 19})
#: The security level's verify codes (EE_KEY_TOO_SMALL, CA_KEY_TOO_SMALL, CA_MD_TOO_WEAK): a weak key or signature.
_WEAK_KEY: Final = frozenset({reasons.EE_KEY_TOO_SMALL, reasons.CA_KEY_TOO_SMALL})
_WEAK: Final = _WEAK_KEY | {reasons.CA_MD_TOO_WEAK}
_CRL_REASONS: Final = frozenset({e.CRL_UNAVAILABLE, e.CRL_EXPIRED, e.CRL_NOT_YET_VALID, e.CRL_SIGNATURE})

#: What a fatal alert from the peer usually means, and what to change (RFC 8446 §6.2 names).
_ALERT_HINTS: Final[dict[str, str]] = {
    "unknown_ca": "it does not trust the CA that issued our certificate: add our root CA to its trusted CAs, or "
                  "send our intermediates with our certificate (the certificate option)",
    "bad_certificate": "it refused our certificate",
    "unsupported_certificate": "it refused our certificate's type or key",
    "certificate_unknown": "it refused our certificate",
    "certificate_expired": "it found our certificate (or one of its issuers) expired or not yet valid",
    "certificate_revoked": "it found our certificate revoked",
    "certificate_required": "it requires a client certificate: set certificate and certificate-key",
    "access_denied": "it refused us after checking our certificate",
    "unrecognized_name": "it serves no such name (SNI): dial a name it serves, or set tls-target-name",
    "handshake_failure": "often a server that requires a client certificate and got none (set certificate and "
                         "certificate-key), or no cipher suite both sides allow",
    "insufficient_security": "it wants stronger cipher suites than we offer (cipher-list)",
}


def located(compiled: CompiledContext, option: str) -> str:
    """``option``, and where to set it when the settings come from a deployment file (``_at``)."""
    return option + _at(compiled, option)


def _at(compiled: CompiledContext, option: str) -> str:
    """`` (level Host of applications.srv.ports.p)``: the level ``option``'s value came from, else the effective
    level (settings are level-atomic, spec §3), as configuration errors name levels; empty for direct settings."""
    resolved = compiled.resolved
    if resolved.object_path is None:
        return ""
    letter = resolved.sources.get(option)
    level = Level(letter) if letter in {item.value for item in Level} else resolved.level
    at = f"level {level.title} of " if level is not None else ""
    return f" ({at}{resolved.object_path})"


def _peer_role(compiled: CompiledContext) -> str:
    return "server" if compiled.role == "client" else "client"


class _Voice(NamedTuple):
    """How a verdict is said: of a chain a peer sent in a handshake, or of one ``verify_chain`` was given."""

    peer: str  # "server" or "client": whose chain it is
    sent: str  # where the chain's certificates were: "sent by the server", "in the chain"
    alone: str  # a leaf without its intermediates: "the server sent only its own certificate"
    clock: bool  # the time judged is this machine's clock (not verify_chain's ``at``)


def verdict(compiled: CompiledContext, error: PeerVerificationError, code: int,
            chain: list[x509.Certificate]) -> PeerVerificationError:
    """``error`` (our verification refused the peer) said as such: the refusal, OpenSSL's fact and the fix.
    ``chain``: the certificates the peer sent, leaf first, as far as they could be read."""
    peer = _peer_role(compiled)
    voice = _Voice(peer, f"sent by the {peer}", f"the {peer} sent only its own certificate", clock=True)
    return _said(compiled, error, code, chain, f"we refused the {peer}'s certificate", voice)


def offline_verdict(compiled: CompiledContext, error: PeerVerificationError, code: int,
                    chain: list[x509.Certificate], *, clock: bool) -> PeerVerificationError:
    """``verify_chain``'s refusal of ``chain`` (leaf first) with the same facts and fixes as ``verdict``: no peer
    refused anything yet, so it says the chain would be refused. ``clock``: judged at the current time."""
    peer = _peer_role(compiled)
    voice = _Voice(peer, "in the chain", f"the chain holds only the {peer}'s own certificate", clock)
    return _said(compiled, error, code, chain, f"the {peer}'s chain would be refused", voice)


def _said(compiled: CompiledContext, error: PeerVerificationError, code: int, chain: list[x509.Certificate],
          headline: str, voice: _Voice) -> PeerVerificationError:
    cert = _certificate(error.subject, chain, compiled)
    hint = _verdict_hint(compiled, error.reason, code, voice, cert, chain, error.depth)
    if error.reason == e.NAME_MISMATCH and "set tls-target-name" in error.message:
        hint = ""  # the name check's own message already said it (an IP address dialled)
    message = f"{headline}: {error.message}" + (f"; {hint}" if hint else "")
    return PeerVerificationError(error.reason, message, peer=error.peer, depth=error.depth, subject=error.subject,
                                 alert=error.alert)


def _certificate(subject: str | None, chain: list[x509.Certificate], compiled: CompiledContext
                 ) -> x509.Certificate | None:
    """The certificate at fault, by subject, among those sent and the trusted ones."""
    if subject is None:
        return None
    return next((c for c in (*chain, *compiled.trusted) if subject_text(c) == subject), None)


def _verdict_hint(compiled: CompiledContext, reason: e.Reason, code: int, voice: _Voice,
                  cert: x509.Certificate | None, chain: list[x509.Certificate], depth: int | None) -> str:
    peer = voice.peer
    trusted = _trust_source(compiled)
    crl = located(compiled, "tls-crl")  # each hint names the location once: later options are at the same level
    issuer = rfc4514_text(cert.issuer) if cert is not None else None
    if reason == e.UNTRUSTED and code in _NO_ISSUER and issuer:
        alone = (f"{voice.alone}, no intermediate; " if len(chain) == 1 and depth == 0
                 and not self_signed(chain[0]) else "")
        return (f"{alone}its issuer {issuer} is neither {voice.sent} nor in {trusted}: add that CA there if "
                f"you trust it, or have the {peer} send its intermediate certificates")
    if reason == e.UNTRUSTED and code in _SELF_SIGNED:
        return f"it is self-signed and not in {trusted}: add it there if you trust it"
    if reason == e.UNTRUSTED and code in _WEAK and cert is not None:
        return describe_weakness(cert, Weakness.KEY if code in _WEAK_KEY else Weakness.SIGNATURE)
    if reason == e.EXPIRED and cert is not None:
        fix = (f"replace it in {trusted}" if cert in compiled.trusted else f"the {peer} must renew it" if not depth
               else f"the {peer} must send this CA's renewed certificate")
        clock = " (or this machine's clock is wrong)" if voice.clock else ""
        return f"it was valid until {_when(cert.not_valid_after_utc)}: {fix}{clock}"
    if reason == e.NOT_YET_VALID and cert is not None:
        check = "check this machine's clock, or wait until then" if voice.clock else "wait until then"
        return f"it is valid only from {_when(cert.not_valid_before_utc)}: {check}"
    if reason == e.REVOKED:
        return f"a CRL in {crl} lists it as revoked: the {peer} needs a new certificate"
    if reason in _CRL_REASONS:
        return _crl_hint(compiled, reason, crl, issuer, depth, voice.clock)
    if reason == e.BAD_PURPOSE:
        usage = "TLS servers (serverAuth)" if peer == "server" else "TLS clients (clientAuth)"
        return f"its key usage or extended key usage does not allow {usage}: the {peer} needs a certificate for that"
    if reason == e.BAD_CA:
        return (f"it issued another certificate of the {peer}'s chain but is not a valid CA (CA:TRUE, keyCertSign when "
                "keyUsage is present, path lengths kept): the chain must come from a real CA")
    if reason == e.NAME_MISMATCH:
        return f"dial a name the certificate carries, or set {located(compiled, 'tls-target-name')} to one"
    return ""


def _trust_source(compiled: CompiledContext) -> str:
    """Where the trusted CAs came from. Profile windows without trusted-ca has the system trust store (spec §1.6):
    "add it to trusted-ca" there would replace that store, the endpoint then trusting that one CA alone."""
    resolved = compiled.resolved
    if resolved.profile == "windows" and not resolved.options.trusted_ca:
        return "the system trust store (profile windows without trusted-ca)"
    return located(compiled, "trusted-ca")


def _crl_hint(compiled: CompiledContext, reason: e.Reason, crl: str, issuer: str | None, depth: int | None,
              clock: bool) -> str:
    of = f"of {issuer}" if issuer else "of its issuer"
    whose = f"the CRL {of}"
    if reason == e.CRL_UNAVAILABLE:
        scope = (", or check the leaf only with tls-crl-scope=leaf"
                 if depth and compiled.resolved.options.tls_crl_scope == "chain" else "")
        return f"{crl} holds no CRL {of}: add that CA's current CRL to the file{scope}"
    if reason == e.CRL_EXPIRED:
        return (f"{whose} in {crl} is past its next update: put a current CRL in the file, or accept expired CRLs "
                "with tls-crl-expired=warn")
    if reason == e.CRL_NOT_YET_VALID:
        check = "check this machine's clock, or the CRL's dates" if clock else "check the CRL's dates"
        return f"{whose} in {crl} is not valid yet: {check}"
    return f"{whose} in {crl} does not verify with that CA's key: replace it with the CRL the CA signed"


def _when(moment: dt.datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def library(compiled: CompiledContext, error: HandshakeError) -> HandshakeError:
    """A failure OpenSSL's library reported (not our verdict on a certificate), said from our side."""
    hint = _library_hint(compiled, error)
    if not hint:
        return error
    cls = type(error)
    return cls(error.reason, hint, peer=error.peer, depth=error.depth, subject=error.subject, alert=error.alert)


def _library_hint(compiled: CompiledContext, error: HandshakeError) -> str:
    peer = _peer_role(compiled)
    message = error.message
    if error.reason == e.PEER_ALERT and error.alert:
        why = _ALERT_HINTS.get(error.alert)
        return f"the {peer} refused the handshake with the alert {error.alert}" + (f": {why}" if why else "")
    if error.reason == e.PROTOCOL_VERSION and "downgrade" not in message:
        allowed = {"TLSv12": "TLS 1.2 only", "TLSv13": "TLS 1.3 only"}.get(
            compiled.resolved.options.sec_protocol or "", "TLS 1.2 and 1.3")
        said = f"the {peer} refused the handshake (protocol_version alert)" if error.alert else (
            f"we refused the handshake ({message})")
        return f"{said}: no TLS version both sides allow; we allow {allowed}, by {located(compiled, 'sec-protocol')}"
    if error.reason == e.NO_SHARED_CIPHER and "Diffie-Hellman" not in message:
        return (f"we refused the handshake ({message}): the {peer} offered no cipher suite we allow; ours come from "
                f"{located(compiled, 'cipher-list')} and sec-protocol{_curve_note(compiled)}")
    if error.reason == e.NO_PEER_CERTIFICATE:
        mutual = f"tls-mutual=1{_at(compiled, 'tls-mutual')}"
        return (f"we refused the client ({message}): it sent no certificate, and {mutual} requires one; the client "
                "must set its certificate and certificate-key")
    if error.reason == e.EOF_IN_HANDSHAKE:
        return f"the {peer} closed the connection during the handshake ({message})"
    if error.reason == e.NOT_TLS and not message.startswith("invalid TLS"):
        http = "http" in message
        what = "an HTTP request (plain HTTP to a TLS port?)" if http else "bytes that are not TLS (a plaintext " \
            "or other protocol on this port?)"
        return f"the {peer} sent {what} ({message})"
    return ""


def _curve_note(compiled: CompiledContext) -> str:
    """A TLS 1.2 client must also list our ECDSA certificate's curve among its supported groups (RFC 8422 §5.1):
    OpenSSL skips every ECDSA suite otherwise and reports no shared cipher, although the suites match (a Go client
    with CurvePreferences P-384 only, against a P-256 certificate)."""
    if compiled.role != "server" or not compiled.chain or compiled.resolved.options.sec_protocol == "TLSv13":
        return ""
    key = compiled.chain[0].public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return ""
    curve = _CURVES.get(key.curve.name, key.curve.name)
    return f"; or, in TLS 1.2, the client's supported groups leave out {curve}, the curve of our ECDSA certificate"


#: NIST curve names as TLS stacks' settings say them (Go's CurvePreferences, OpenSSL's -groups).
_CURVES: Final = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


def timed_out(seconds: float, peer: str, setting: str = "handshake_timeout") -> str:
    """A ``timeout`` message: the limit in force and the setting that sets it (the API's parameter, or a command's
    flag). ``peer``: "server", "client" or "peer"."""
    return (f"the handshake did not complete within {seconds:g} s ({setting}={seconds:g}): raise {setting} if the "
            f"{peer} or the network is that slow")


def slot_timed_out(seconds: float, cap: int, waited: float, admitted: bool, *, setting: str = "handshake_timeout",
                   cap_setting: str = "max_handshakes") -> str:
    """A ``timeout`` message for a handshake under a cap on handshakes in flight, which waited ``waited`` seconds for
    its slot (``admitted``: and then had one): the wait counts toward the deadline, so a client that spent its
    deadline mostly waiting was held up by the cap, not slow. ``setting``/``cap_setting`` as for ``timed_out``."""
    if admitted and waited < seconds / 2:
        return timed_out(seconds, "client", setting)
    held = ("its deadline ran out while it waited for one of the " if not admitted else
            f"it waited {waited:.2g} s of that for one of the ")
    return (f"the handshake did not complete within {seconds:g} s ({setting}={seconds:g}, the wait for a "
            f"handshake slot included): {held}{cap_setting}={cap} handshake slots, all "
            f"held by other handshakes (a client that stalls mid-handshake holds its slot until its own deadline); "
            f"raise {cap_setting}, or lower {setting} so that stalled handshakes give their slots up sooner")


__all__ = ["library", "located", "offline_verdict", "slot_timed_out", "timed_out", "verdict"]
