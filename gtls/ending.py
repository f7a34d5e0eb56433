"""Words for how a connection ended after its handshake (a gtls decision; spec §10 covers handshakes only).

``classify_ending(exc)`` turns any exception raised by a ``TLSStream`` (or by a wait around one) into one short,
stable word, so services log and count connection ends the same way ``gtls serve`` does. It follows the chain of
causes to what actually happened (the engine's ``TransportFailed``, a ``HandshakeError``, OpenSSL's error) and
never raises. The words, from what OpenSSL 3.5 reports (each provoked for real in ``tests/test_hostile_peers.py``):

* ``truncated`` — the TCP connection ended without ``close_notify`` (``unexpected EOF``);
* ``reset`` — the connection was reset or the pipe broke (``ECONNRESET``, ``EPIPE``, …);
* ``peer-alert`` — the peer sent a fatal alert after the handshake (named in the detail and ``.alert``);
* ``renegotiation-refused`` — the peer tried to renegotiate (TLS 1.2), gtls refused (``OP_NO_RENEGOTIATION``
  answers with a ``no_renegotiation`` warning) and the peer gave up with ``handshake_failure``; never in TLS 1.3,
  which has no renegotiation (those alerts are ``peer-alert`` there);
* ``bad-record`` — records that do not decrypt or parse (``bad record mac``, ``bad record type``, an oversized
  record, …): garbage or tampering on the wire; or a message the peer may not send there (``unexpected message``:
  an unsolicited post-handshake CertificateRequest);
* ``idle-timeout`` — nothing moved in either direction within the idle limit (``trio.TooSlowError`` maps here
  too, so a service's own ``fail_after`` around its reads gets the same word);
* ``closed`` — this side had already closed the stream (``trio.ClosedResourceError``);
* ``error`` — anything else (the detail says what).

A ``HandshakeError`` keeps its spec §10 reason (``timeout``, ``peer-alert``, ``untrusted``, …): an implicit
handshake, or a TLS 1.3 server's rejection of our client certificate (its alert) that arrives with the first record,
is still a handshake failure (spec §9). Other record errors after the handshake are never handshake errors.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Final, Literal

import trio
from OpenSSL import SSL

from .engine import GONE_ERRNOS, TransportFailed
from .errors import MAX_CAUSE_CHAIN, HandshakeError, Reason, TLSError

TRUNCATED: Final = "truncated"
RESET: Final = "reset"
PEER_ALERT: Final = "peer-alert"
RENEGOTIATION_REFUSED: Final = "renegotiation-refused"
BAD_RECORD: Final = "bad-record"
IDLE_TIMEOUT: Final = "idle-timeout"
CLOSED: Final = "closed"
ERROR: Final = "error"

#: A connection-end word (``END_WORDS``); ``Ending.word`` is one of these or, for a failed handshake, a ``Reason``.
EndWord = Literal["truncated", "reset", "peer-alert", "renegotiation-refused", "bad-record", "idle-timeout",
                  "closed", "error"]

#: Every connection-end word, in the order above (handshake reasons of spec §10 come on top of these).
END_WORDS: Final[tuple[EndWord, ...]] = (TRUNCATED, RESET, PEER_ALERT, RENEGOTIATION_REFUSED, BAD_RECORD, IDLE_TIMEOUT,
                                         CLOSED, ERROR)

#: Errnos meaning the peer or the path went away: the engine's own list, plus what a memory-BIO transport sees.
_RESET_ERRNOS: Final = GONE_ERRNOS | {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETRESET}
#: Alerts a peer sends when its renegotiation was refused: gtls's warning echoed back, or OpenSSL's give-up alert.
#: After the handshake no other handshake runs in TLS 1.2, and gtls starts no TLS 1.3 post-handshake auth.
_RENEGOTIATION_ALERTS: Final = frozenset({"no_renegotiation", "handshake_failure"})


@dataclass(frozen=True, slots=True)
class Ending:
    """How a connection ended: ``word`` (stable, for logs and metric labels) and a human ``detail``."""

    word: EndWord | Reason
    detail: str
    #: The fatal alert the peer sent (``bad_record_mac``), when the ending was an alert.
    alert: str | None = None

    def __str__(self) -> str:
        return f"{self.word}: {self.detail}" if self.detail else self.word


def classify_ending(exc: BaseException) -> Ending:
    """The ending word for an exception from a ``TLSStream`` (``BrokenResourceError`` and its causes,
    ``ClosedResourceError``, ``HandshakeError``, ``TLSError``, ``TooSlowError``, an ``OSError``…)."""
    seen = 0
    version: str | None = None
    current: BaseException | None = exc
    while current is not None and seen < MAX_CAUSE_CHAIN:
        seen += 1
        if isinstance(current, HandshakeError):
            return Ending(current.reason, current.message, current.alert)
        if isinstance(current, TLSError) and current.tls_version is not None:
            version = current.tls_version  # the engine's error, wrapping OpenSSL's
        if isinstance(current, TransportFailed):
            return Ending(TRUNCATED if current.eof else RESET, str(current))
        if isinstance(current, SSL.Error):
            return _library_ending(current, version)
        if isinstance(current, OSError) and current.errno in _RESET_ERRNOS:
            return Ending(RESET, f"the connection was reset ({errno.errorcode.get(current.errno or 0, '?')})")
        if isinstance(current, trio.TooSlowError):
            return Ending(IDLE_TIMEOUT, str(current) or "no progress within the time limit")
        if isinstance(current, trio.ClosedResourceError) and current.__cause__ is None:
            return Ending(CLOSED, str(current) or "the stream was already closed")
        current = current.__cause__ or current.__context__
    return Ending(ERROR, _describe(exc))


def _library_ending(exc: BaseException, version: str | None = None) -> Ending:
    """An OpenSSL error after the handshake (on a connection of ``version``, when known): a received alert, or
    records that could not be read."""
    from .pki.failures import NO_REASON, error_texts, received_alert

    texts = error_texts(exc)
    alert = received_alert(texts)
    if alert in _RENEGOTIATION_ALERTS and version != "TLSv1.3":  # TLS 1.3 has no renegotiation to refuse
        return Ending(RENEGOTIATION_REFUSED,
                      f"the peer tried to renegotiate, which gtls refuses, and then sent the fatal alert {alert}",
                      alert)
    if alert is not None:
        return Ending(PEER_ALERT, f"the peer sent the fatal alert {alert}", alert)
    if any("no renegotiation" in text for text in texts):
        # OpenSSL's reason for a received no_renegotiation *warning*, which it ends the connection on (it assumes it
        # had asked). gtls never asks to renegotiate (its own refusals are sent, not received), so the peer sent it
        # unprompted: an alert from the peer, not a refusal.
        return Ending(PEER_ALERT, "the peer sent the alert no_renegotiation, unprompted (gtls never asks to "
                      "renegotiate); OpenSSL ends the connection on it", "no_renegotiation")
    if texts and not any(texts):
        # pyOpenSSL's error then reads [('SSL routines', '', '')]. OpenSSL has no text for a fatal-level close_notify
        # or an unknown alert number, for example.
        return Ending(BAD_RECORD, NO_REASON)
    # Everything else OpenSSL rejects after the handshake is about the records themselves (MAC, type, length,
    # version, decode): garbage or tampering on the wire.
    return Ending(BAD_RECORD, "; ".join(texts) or _describe(exc))


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return " ".join(text.split()) if text else type(exc).__name__


__all__ = [
    "BAD_RECORD",
    "CLOSED",
    "END_WORDS",
    "EndWord",
    "ERROR",
    "IDLE_TIMEOUT",
    "PEER_ALERT",
    "RENEGOTIATION_REFUSED",
    "RESET",
    "TRUNCATED",
    "Ending",
    "classify_ending",
]
