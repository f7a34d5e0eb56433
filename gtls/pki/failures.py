"""OpenSSL library errors of a failed handshake (``SSL_R_…`` reasons and received alerts) to spec §10 reasons."""

from __future__ import annotations

from OpenSSL import SSL

from .. import errors as e

#: Substrings of OpenSSL's reason text (lower case) and the reason word they mean.
_LIBRARY_REASONS: tuple[tuple[str, e.Reason], ...] = (
    ("no shared cipher", e.NO_SHARED_CIPHER),
    ("no suitable signature algorithm", e.NO_SHARED_CIPHER),
    ("no shared signature algorithms", e.NO_SHARED_CIPHER),
    ("no suitable key share", e.NO_SHARED_CIPHER),
    ("no shared groups", e.NO_SHARED_CIPHER),
    ("unsupported protocol", e.PROTOCOL_VERSION),
    ("no protocols available", e.PROTOCOL_VERSION),
    ("version too low", e.PROTOCOL_VERSION),
    ("version too high", e.PROTOCOL_VERSION),
    ("wrong ssl version", e.PROTOCOL_VERSION),
    # A version the peer selected that neither side may use (a TLS 1.3 ServerHello's supported_versions naming TLS
    # 1.0 or an unknown number): as with its legacy version field (unsupported protocol), not bytes that are not TLS
    ("bad protocol version number", e.PROTOCOL_VERSION),
    ("wrong version number", e.NOT_TLS),
    ("http request", e.NOT_TLS),
    ("https proxy request", e.NOT_TLS),
    ("unknown protocol", e.NOT_TLS),
    ("packet length too long", e.NOT_TLS),
    ("record length mismatch", e.NOT_TLS),
    ("peer did not return a certificate", e.NO_PEER_CERTIFICATE),
    ("unexpected eof while reading", e.EOF_IN_HANDSHAKE),
)
# OpenSSL 3.0 says "sslv3 alert …"/"tlsv1 alert …"/"tlsv13 alert …"; 3.5 says "ssl/tls alert …", 4.0 "tls alert …".
_ALERT_PREFIXES = ("sslv3 alert ", "tlsv1 alert ", "tlsv13 alert ", "tls alert ", "ssl/tls alert ")
#: Received alerts 110-114 (RFC 6066) whose OpenSSL texts lack "alert" (SSL_R_TLSV1_UNRECOGNIZED_NAME, …), so no
#: prefix above finds them. unrecognized_name is common: an SNI-strict server (nginx ssl_reject_handshake).
_UNPREFIXED_ALERTS = {
    "tlsv1 unsupported extension": "unsupported_extension",
    "tlsv1 certificate unobtainable": "certificate_unobtainable",
    "tlsv1 unrecognized name": "unrecognized_name",
    "tlsv1 bad certificate status response": "bad_certificate_status_response",
    "tlsv1 bad certificate hash value": "bad_certificate_hash_value",
}


def error_texts(exc: BaseException) -> list[str]:
    """OpenSSL's reason strings carried by a pyOpenSSL ``SSL.Error``."""
    texts = []
    args = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
    for item in args:
        if isinstance(item, tuple) and item:
            texts.append(str(item[-1]).lower())
    if not texts and exc.args:
        texts.append(str(exc.args[0]).lower())
    return texts


def received_alert(texts: list[str]) -> str | None:
    """The name of a fatal alert the peer sent (``unknown_ca``), if the error says one arrived."""
    for text in texts:
        for prefix in _ALERT_PREFIXES:
            if text.startswith(prefix):
                return text[len(prefix) :].strip().replace(" ", "_")
        name = _UNPREFIXED_ALERTS.get(text.strip())
        if name is not None:
            return name
    return None


#: What a failure says when OpenSSL gave no reason text: pyOpenSSL's error then reads ``[('SSL routines', '', '')]``.
#: OpenSSL has no text for a fatal alert whose number it has no name for, or a close_notify sent at fatal level.
NO_REASON = ("OpenSSL gave no reason (as for a fatal alert it has no name for, such as a close_notify sent at fatal "
             "level)")

#: How a ``not-tls`` message begins when the peer did speak TLS and one of its messages was refused (a chain over
#: OpenSSL's 100 KiB limit, a decode error), as opposed to plaintext or HTTP: such a peer reads our alert.
INVALID_TLS = "invalid TLS from the peer:"
#: OpenSSL's reason (3.2 and later) when its record layer fails with an alert to send, and only then: bytes that do
#: not look like TLS at all (the first record of plaintext or HTTP) get no alert, so not this reason either.
_RECORD_LAYER_ALERT = "record layer failure"


def library_failure(exc: BaseException) -> tuple[e.Reason, str, str | None]:
    """(reason, message, alert) for a handshake failure that is not a local verification verdict."""
    if isinstance(exc, SSL.ZeroReturnError | SSL.SysCallError | EOFError | ConnectionError):
        # The cause's own words; gtls._advice says who closed (the role is the context's, not known here).
        return e.EOF_IN_HANDSHAKE, str(exc.args[-1]) if exc.args else type(exc).__name__, None
    texts = error_texts(exc)
    alert = received_alert(texts)
    if alert is not None:
        if alert == "protocol_version":
            return e.PROTOCOL_VERSION, "the peer allows no protocol version we allow (protocol_version alert)", alert
        return e.PEER_ALERT, f"the peer aborted the handshake with the alert {alert}", alert
    # Never the error's repr: with no reason text it was the raw queue, "Error([('SSL routines', '', '')])".
    joined = "; ".join(text for text in texts if text) or NO_REASON
    if any("inappropriate fallback" in text for text in texts):
        # OpenSSL's one reason for both downgrade checks: a client's TLS_FALLBACK_SCSV below our best version (RFC
        # 7507), or a TLS 1.2 ServerHello carrying the TLS 1.3 downgrade sentinel (RFC 8446 §4.1.3). A version
        # failure, not bytes that are not TLS: not-tls would hide a man in the middle among port scanners.
        return e.PROTOCOL_VERSION, (
            "version downgrade refused: the peer offered or chose a lower TLS version than both sides support "
            "(TLS_FALLBACK_SCSV from a client, or the TLS 1.3 downgrade sentinel from a server): a client's retry "
            f"at a lower version, or a man in the middle ({joined})"), None
    if any("dh key too small" in text for text in texts):
        # A TLS 1.2 server's DHE group below the security level's 2048 bits (an old server's 1024-bit default). The
        # peer speaks TLS; what it offers is a key exchange we refuse: the closest word of spec §10 is
        # no-shared-cipher (gtls decision; a server meets it never, TLS 1.3's groups are 2048 bits or more).
        return e.NO_SHARED_CIPHER, (
            "the server's Diffie-Hellman group is smaller than OpenSSL's security level 2 allows (2048 bits): no key "
            "exchange both sides accept; the server should offer ECDHE or a 2048-bit group (for example ffdhe2048) "
            f"({joined})"), None
    for needle, reason in _LIBRARY_REASONS:
        if any(needle in text for text in texts):
            if needle == "wrong version number" and _RECORD_LAYER_ALERT in texts:
                # OpenSSL's record layer sent the peer an alert: it took the peer for a TLS peer, whose later record
                # was broken (a record's version changed mid-handshake), not for plaintext (no alert then). Only for
                # this reason: OpenSSL 3.5.2 adds "record layer failure" to a plaintext first record's "packet
                # length too long" too.
                return reason, f"{INVALID_TLS} {joined}", None
            return reason, f"{joined}", None
    # Anything else (decode errors, unexpected messages, bad record MACs): the peer's bytes did not form a TLS
    # handshake we could accept. spec §10 has no catch-all word for this; not-tls is the closest (gtls decision).
    return e.NOT_TLS, f"{INVALID_TLS} {joined}", None

