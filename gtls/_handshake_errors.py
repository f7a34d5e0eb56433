"""``HandshakeError`` and ``PeerVerificationError``: the runtime half of ``gtls.errors`` (reachable from there).

A failed handshake is also a ``trio.BrokenResourceError``, the error trio's ``SSLStream.do_handshake`` raises: trio
code written for ``SSLStream`` (``except trio.BrokenResourceError`` around an explicit handshake, as hypercorn and
trio's own examples do) keeps working on gtls, and code written for gtls keeps its ``reason``. This module imports
trio, so it is loaded on first use, not by ``import gtls``.
"""

from __future__ import annotations

import trio

from ._printable import printable
from .errors import Reason, TLSError


class HandshakeError(TLSError, trio.BrokenResourceError):
    """A handshake failed. ``reason`` is one word of spec §10; ``peer`` is ``"host:port"`` when known. ``message``
    and ``subject`` quote what the peer sent (its certificates' names): their control characters are escaped."""

    def __init__(
        self,
        reason: Reason,
        message: str,
        *,
        peer: str | None = None,
        depth: int | None = None,
        subject: str | None = None,
        alert: str | None = None,
    ) -> None:
        self.reason: Reason = reason
        # A peer chooses the names in its certificate: a newline or terminal escape there must not reach a log line
        # or the terminal as one.
        self.message = message = printable(message)
        self.peer = peer
        self.depth = depth
        self.subject = printable(subject) if subject else subject
        self.alert = alert
        # Both positional arguments in args: pickle and copy rebuild the error from them (a worker process can
        # raise it to its parent); __str__ below gives the text.
        super().__init__(reason, message)

    def __str__(self) -> str:
        parts = [f"{self.reason}: {self.message}"]
        if self.depth is not None:
            parts.append(f"depth {self.depth}")
        if self.subject:
            parts.append(f"subject {self.subject}")
        if self.peer:
            parts.append(f"peer {self.peer}")
        return "; ".join(parts)


class PeerVerificationError(HandshakeError):
    """The peer's certificate was rejected (reasons ``untrusted`` … ``no-peer-certificate``)."""


# Named where users import them from (tracebacks, pickles): gtls.errors hands them out through its __getattr__.
HandshakeError.__module__ = PeerVerificationError.__module__ = "gtls.errors"
