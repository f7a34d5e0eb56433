"""A server's session resumption policy: how long a session lives, and which sessions a context may resume.

A resumed connection is not verified again, so on a port that verifies clients (``tls-mutual=1``) the session
lifetime is how long a client certificate revoked or expired since its last full handshake can go on being
accepted. OpenSSL bounds each session by its own start time, but in TLS 1.3 every resumption hands the client new
tickets whose start time is the resumption's: a client that comes back within the lifetime each time would never
meet the certificate check again.

Such ports therefore live in epochs of ``SESSION_LIFETIME``: a session resumes only on a connection of the epoch it
was made in (its session ID context names the epoch, and OpenSSL resumes only a session of the connection's own
context, in TLS 1.2 and 1.3 alike). A chain of resumptions thus ends at most ``SESSION_LIFETIME`` after the full
handshake that started it; a session made late in an epoch lives less (half the lifetime on average). Ports that do
not verify clients keep one context: resuming there skips no check of the client.

The check costs one clock read per new connection; the change of epoch, one ``SSL_CTX_set_session_id_context``.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from typing import Final

from OpenSSL import SSL

from . import _binding

#: Seconds a server's TLS 1.2 session or TLS 1.3 ticket can be resumed (nginx's default; OpenSSL's is 2 hours), and
#: on ports that verify clients, the longest a chain of resumptions lasts after its full handshake.
SESSION_LIFETIME: Final = 300
#: The epochs' clock (a module attribute, so a test can move time on).
clock: Callable[[], float] = time.monotonic


def session_id_context(identity: bytes) -> bytes:
    """The 32-byte session ID context for settings described by ``identity``."""
    return hashlib.sha256(identity).digest()


def enable_resumption(ctx: SSL.Context, identity: bytes, *, verifies_clients: bool) -> SessionEpochs | None:
    """Server-side session cache and tickets for ``ctx``, limited to settings equal to ``identity`` (its options,
    chain and the contents of every file it read) and to ``SESSION_LIFETIME``; where clients are verified, the
    epochs that bound a chain of resumptions (call their ``check`` before each new connection)."""
    ctx.set_session_id(session_id_context(identity))
    ctx.set_timeout(SESSION_LIFETIME)  # tickets carry it as their lifetime hint
    if verifies_clients and not _binding.SESSIONS:
        # Without a way to change epochs, no resumption at all: no server cache, and TLS 1.3 tickets then refer to
        # a cache that keeps nothing (OP_NO_TICKET makes them stateful), so every client is verified every time.
        ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
        ctx.set_options(SSL.OP_NO_TICKET)
        return None
    ctx.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
    return SessionEpochs(ctx, identity) if verifies_clients else None


class SessionEpochs:
    """The epochs of one context that verifies clients (see the module's docstring)."""

    __slots__ = ("_ctx", "_identity", "_ends", "_lock")

    def __init__(self, ctx: SSL.Context, identity: bytes) -> None:
        self._ctx = ctx
        self._identity = identity
        self._lock = threading.Lock()
        self._ends = 0.0
        self._begin(clock())

    def _begin(self, now: float) -> None:
        # A fresh random part: an epoch's sessions never match another's, whatever the clock did in between.
        _binding.set_session_id_context(self._ctx, session_id_context(self._identity + os.urandom(16)))
        self._ends = now + SESSION_LIFETIME

    def check(self) -> None:
        """Called before each new connection of the context (the connection copies the current epoch)."""
        if clock() >= self._ends:
            with self._lock:  # one new epoch, whichever thread sees the end first
                now = clock()
                if now >= self._ends:
                    self._begin(now)
