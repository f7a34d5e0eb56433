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

Session tickets are encrypted under a key OpenSSL makes with each SSL context and never changes. A TLS 1.2 ticket
holds the session's master secret and crosses the wire in the clear, so whoever reads that key from the server's
memory later (root, a core dump, swap) decrypts every TLS 1.2 connection recorded with its ticket: forward secrecy
would last as long as the process. pyOpenSSL's binding cannot set or rotate the key, so a server context that may
issue TLS 1.2 tickets is built anew every ``TICKET_KEY_LIFETIME`` (``ContextSlot``), from the settings and file
contents it was compiled from, which gives it a fresh key; connections already open keep the context they were made
on. The serving loop renews it on time (``serve_tls_over_tcp``, ``gtls serve``), and so does the first new
connection after the lifetime elsewhere (a listener accepting by itself); a connection of an event loop hands the
build to a worker thread (``CompiledContext``), so no event loop waits for it. Sessions and tickets of the context
before no longer resume (one full handshake per returning client, once per renewal). TLS 1.3 resumption keeps
forward secrecy ((EC)DHE always), so a TLS 1.3-only context keeps its key.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Final, TypeAlias

from OpenSSL import SSL

from . import _binding

#: Seconds a server's TLS 1.2 session or TLS 1.3 ticket can be resumed (nginx's default; OpenSSL's is 2 hours), and
#: on ports that verify clients, the longest a chain of resumptions lasts after its full handshake.
SESSION_LIFETIME: Final = 300
#: Seconds a server context's session-ticket key is used before the context is built anew with a fresh one (hourly,
#: as large deployments rotate theirs): the bound on how long a TLS 1.2 connection stays decryptable by the key.
TICKET_KEY_LIFETIME: Final = 3600
#: The epochs' and ticket keys' clock (a module attribute, so a test can move time on). Linux's boot-time clock
#: counts time suspended, as the monotonic clock does not: a suspended VM's or laptop's key and epochs still end on
#: time when it wakes (the serving loop looks at least once a minute, so a quiet port is renewed then too).
clock: Callable[[], float] = (
    functools.partial(time.clock_gettime, time.CLOCK_BOOTTIME) if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic
)


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


#: An SSL context and, where clients are verified, its session epochs.
Current: TypeAlias = tuple[SSL.Context, "SessionEpochs | None"]
#: What a renewal gives: the new context, and the warnings its build found that the first build did not (a
#: certificate that expired meanwhile), for the caller to log located at each endpoint sharing the context.
Renewed: TypeAlias = tuple[Current, tuple[str, ...]]
#: Starts a taken renewal's build elsewhere and says so (``ContextSlot.renew_if_due``).
HandOff: TypeAlias = Callable[[Callable[[], tuple[str, ...]]], bool]

logger = logging.getLogger("gtls.server")


class ContextSlot:
    """The SSL context a compiled context's new connections are made on. Shared by every endpoint that shares the
    compiled context; a server context that issues TLS 1.2 tickets is built anew by ``renew`` every
    ``TICKET_KEY_LIFETIME`` (see the module's docstring)."""

    __slots__ = ("current", "_renew", "_ends", "_lock")

    def __init__(self, ctx: SSL.Context, epochs: SessionEpochs | None = None,
                 renew: Callable[[], Renewed] | None = None) -> None:
        #: One attribute, so a thread reading it never pairs a context with another's epochs.
        self.current: Current = (ctx, epochs)
        self._renew = renew
        self._ends = clock() + TICKET_KEY_LIFETIME if renew is not None else 0.0
        self._lock = threading.Lock()

    @property
    def context(self) -> SSL.Context:
        return self.current[0]

    @property
    def renews(self) -> bool:
        return self._renew is not None

    def for_connection(self) -> SSL.Context:
        """The context for a new connection, in its current session epoch (``renew_if_due`` first)."""
        ctx, epochs = self.current
        if epochs is not None:
            epochs.check()
        return ctx

    def due(self) -> bool:
        """Whether the ticket key is due for renewal (never for contexts that keep theirs)."""
        return self._renew is not None and clock() >= self._ends

    def renew_if_due(self, hand_off: HandOff | None = None) -> tuple[str, ...]:
        """Renew the context when its ticket key is due; the new warnings of a renewal made now (else none).

        ``hand_off(build)``, called once this caller has taken the due renewal, may run ``build`` elsewhere (for a
        connection of an event loop: in a worker thread) and return True; whoever runs ``build`` logs its news."""
        if self._renew is not None and clock() >= self._ends:  # due(), inline: every new connection asks
            if not self._claim():
                return ()
            try:
                if hand_off is not None and hand_off(self._build):
                    return ()
            except BaseException:
                self._lock.release()  # the build will not run: the next connection after the lifetime tries again
                raise
            return self._build()
        return ()

    def due_in(self) -> float:
        """Seconds until the ticket key is due (the serving loop renews it then, so a quiet port's key ages too)."""
        return max(0.0, self._ends - clock())

    def _claim(self) -> bool:
        """Take the due renewal: its lock, held until ``_build`` ends (in whichever thread runs it). One renewal,
        whichever thread sees the end first; the others do not wait for its build (up to ~0.1 s with a large CA
        bundle or CRL): their connections take the current key until the new context is in place."""
        if not self._lock.acquire(blocking=False):
            return False
        now = clock()
        if now < self._ends:
            self._lock.release()
            return False
        self._ends = now + TICKET_KEY_LIFETIME
        return True

    def _build(self) -> tuple[str, ...]:
        """Build the renewal ``_claim`` took, and release it."""
        renew = self._renew
        assert renew is not None
        try:
            self.current, news = renew()
        except Exception as exc:  # noqa: BLE001 - a renewal must never cost a connection: the old key serves on
            logger.warning("session-ticket key not renewed: building the context again failed (%s); the "
                           "current key stays in use for another %g s", exc, TICKET_KEY_LIFETIME)
            return ()
        finally:
            self._lock.release()
        return news
