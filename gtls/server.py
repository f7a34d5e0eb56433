"""Secure listening ports: ``open_tls_over_tcp_listeners``, ``serve_tls_over_tcp`` and ``TLSListener``.

Same shape as trio's ssl-over-tcp helpers, with resolved settings in place of an ``ssl.SSLContext``. The settings
are compiled once per call (files read, context built) before any socket is opened, so a configuration error never
leaves a half-open port. ``accept()`` never performs the handshake; ``serve_tls_over_tcp`` runs each handshake in
the connection's own task under ``handshake_timeout`` and, optionally, a cap on handshakes in flight. A failed
handshake is logged once (logger ``gtls.server``) and never reaches the handler; every outcome can also be observed
through ``on_handshake(HandshakeEvent)``. The accept loop, like trio's ``serve_listeners``, survives
EMFILE/ENFILE by pausing accepts (``gtls._serve``).
"""

from __future__ import annotations

import copy
import functools
import inspect
import logging
import math
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

import trio

from ._advice import slot_timed_out
from ._serve import TaskStarter, log_peer, serve_listeners, stdlib_socket_of
from .context import CompiledContext
from .errors import EOF_IN_HANDSHAKE, MAX_CAUSE_CHAIN, HandshakeError, PeerVerificationError, Reason, TLSVersionName
from .options import TLSOptions, log_warnings
from .pki.certs import subject_text
from .resolve import Resolved
from .stream import TLSStream, check_handshake_timeout, compile_settings

if TYPE_CHECKING:
    from ._poller import Poller

logger = logging.getLogger("gtls.server")

Handler = Callable[[TLSStream], Awaitable[object]]
HandshakeHook = Callable[["HandshakeEvent"], object]
_ASYNC_HOOK = ("on_handshake must be a plain function: it is called on the handshake path, which does not await it "
               "(an async hook would never run); hand the event to a task, e.g. with a memory channel's send_nowait")


@dataclass(frozen=True, slots=True)
class HandshakeEvent:
    """The outcome of one server-side handshake (for metrics and per-connection log lines)."""

    peer: str | None
    ok: bool
    #: The spec §10 reason word on failure, None on success.
    reason: Reason | None
    tls_version: TLSVersionName | None
    cipher: str | None
    #: Subject of the client certificate (mutual TLS), also when it was refused (then read from the chain OpenSSL was
    #: building; the certificate at fault, which may be an issuer, is the error's ``depth``/``subject``).
    subject: str | None
    server_name: str | None
    session_reused: bool
    #: Seconds from the start of the handshake to its outcome.
    duration: float
    #: The failure, without the frames it was raised through (keeping an event keeps no connection alive).
    error: HandshakeError | None = None
    warnings: tuple[str, ...] = ()

    def describe(self) -> str:
        """One log line: ``peer TLSv1.3 TLS_AES_256_GCM_SHA384`` or ``peer failed: reason: message``."""
        peer = self.peer or "unknown"
        if self.ok:
            extra = " resumed" if self.session_reused else ""
            who = f" client {self.subject}" if self.subject else ""
            return f"{peer} {self.tls_version} {self.cipher}{extra}{who}"
        detail = self.error.message if self.error is not None else ""
        subject = f" (subject {self.subject})" if self.subject else ""
        return f"{peer} handshake failed: {self.reason}: {detail}{subject}"


def _refused_client(stream: TLSStream, error: HandshakeError) -> str | None:
    """The subject of the client certificate a server refused: its leaf, whichever certificate was at fault (the
    error's ``depth``/``subject``), read from the chain OpenSSL was building. Failure path only."""
    if not isinstance(error, PeerVerificationError) or error.depth == 0 or not stream.server_side:
        return error.subject
    from ._offline import der_subject, openssl_peer_chain
    from .engine import der_of

    try:
        chain = openssl_peer_chain(stream._engine.conn, "server")
        return der_subject(der_of(chain[0])) if chain else error.subject
    except Exception:  # noqa: BLE001 - a diagnostic never stops the server; and error.subject names another
        return None  # certificate than the client's own


def _subject_of(stream: TLSStream) -> str | None:
    """The subject of the peer's certificate for a successful handshake's event. OpenSSL accepts and verifies some
    certificates ``cryptography`` refuses to read (an X.509 version field of 3, a serial of 0 under warnings as
    errors): their subject then comes from OpenSSL's own copy, and a diagnostic never stops the server (it escaped
    the serving loop and ended it, for one client certificate from a trusted CA)."""
    try:
        cert = stream.peer_certificate
        return subject_text(cert) if cert is not None else None
    except Exception:  # noqa: BLE001 - cryptography's parse error, or its warning raised as an error
        pass
    from ._offline import der_subject

    try:
        der = stream._engine.peer_certificate_der
        return None if der is None else der_subject(der)
    except Exception:  # noqa: BLE001 - as above
        return None


class SlotWait:
    """When one handshake asked for a slot under ``max_handshakes``, and when it got one (trio's clock)."""

    __slots__ = ("asked", "given")

    def __init__(self) -> None:
        self.asked: float | None = None
        self.given: float | None = None


class Handshaker:
    """The handshake policy shared by one set of listeners: deadline, cap on handshakes in flight, reporting."""

    __slots__ = ("timeout", "limiter", "on_handshake")

    def __init__(
        self,
        *,
        timeout: float | None = 10.0,
        max_handshakes: int | None = None,
        on_handshake: HandshakeHook | None = None,
    ) -> None:
        check_handshake_timeout(timeout)
        if max_handshakes is not None and max_handshakes < 1:
            raise ValueError("max_handshakes must be >= 1 or None")
        if on_handshake is not None and inspect.iscoroutinefunction(on_handshake):
            raise TypeError(_ASYNC_HOOK)
        self.timeout = timeout
        self.limiter = trio.CapacityLimiter(max_handshakes) if max_handshakes is not None else None
        self.on_handshake = on_handshake

    async def run(self, stream: TLSStream, started: float | None = None) -> bool:
        """Handshake ``stream``; True on success. Failures are logged once and reported, never raised. ``started``:
        when the handshake began, if before this call (the serving loop advances it before the task starts)."""
        if started is None:
            started = trio.current_time() if self.on_handshake is not None else 0.0  # durations only go into events
        try:
            if self.limiter is None:
                await stream._accepted_handshake()
            else:
                # The deadline covers the wait for a slot too: a flood must not park connections forever.
                wait = SlotWait()
                with trio.move_on_after(self.timeout if self.timeout is not None else math.inf) as scope:
                    await self._admitted(stream, stream.do_handshake, wait)
                if scope.cancelled_caught:
                    seconds = self.timeout or 0.0
                    raise stream.handshake_timed_out(seconds, self._explain(wait, seconds))
        except HandshakeError as exc:
            self._failed(stream, exc, started)
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            failure = HandshakeError(EOF_IN_HANDSHAKE, str(exc) or "the transport failed", peer=stream.peer_address)
            self._failed(stream, failure, started)
            return False
        self._succeeded(stream, started)
        return True

    async def first_use(self, stream: TLSStream) -> None:
        """The handshake of a stream from ``TLSListener.accept()``, run by whoever uses it first: under the
        listener's cap and deadline, logged and reported like the serving loop's, its error still raised to the
        caller (the event gets a copy without frames). Cancelled, it reports nothing and runs again on next use."""
        started = trio.current_time()
        run: Callable[[], Awaitable[None]] = stream._run_handshake
        explain = None
        if self.limiter is not None:
            wait = SlotWait()
            run = functools.partial(self._admitted, stream, stream._run_handshake, wait)
            explain = functools.partial(self._explain, wait)
        try:
            await stream._handshake_within_deadline(run, explain)
        except HandshakeError as exc:
            stream._handshaker = None
            self._failed(stream, exc, started, raised=True)
            raise
        stream._handshaker = None
        self._succeeded(stream, started)

    async def _admitted(self, stream: TLSStream, handshake: Callable[[], Awaitable[None]], wait: SlotWait) -> None:
        """``handshake()`` holding one of the cap's slots, taken once the client has sent something: a flood of
        connections that say nothing then cannot hold every slot and starve the clients behind it. ``wait``
        records when the slot was asked for and given, for the message of a timeout."""
        assert self.limiter is not None
        sock = stream._sock
        if sock is not None:
            await trio.lowlevel.wait_readable(sock)
        wait.asked = trio.current_time()
        async with self.limiter:
            wait.given = trio.current_time()
            await handshake()

    def _explain(self, wait: SlotWait, seconds: float) -> str | None:
        """The message of a timeout under the cap that names the wait for a slot, when the handshake spent its
        deadline mostly waiting for one (then raising handshake_timeout is the wrong advice); else None."""
        if self.limiter is None or wait.asked is None:
            return None  # no cap, or a client that never said anything: the usual message
        given = wait.given
        waited = (given if given is not None else trio.current_time()) - wait.asked
        return slot_timed_out(seconds, int(self.limiter.total_tokens), waited, given is not None)

    def _succeeded(self, stream: TLSStream, started: float) -> None:
        hook = self.on_handshake
        if hook is not None or logger.isEnabledFor(logging.DEBUG):
            event = HandshakeEvent(
                peer=stream.peer_address,
                ok=True,
                reason=None,
                tls_version=stream.tls_version,
                cipher=stream.cipher,
                subject=_subject_of(stream),
                server_name=stream.server_name,
                session_reused=stream.session_reused,
                duration=trio.current_time() - started if hook is not None else 0.0,
                warnings=tuple(stream.handshake_warnings),
            )
            log_peer(logger.debug, "%s", event.describe())
            if hook is not None:
                self._report(event)
        for warning in stream.handshake_warnings:
            log_peer(logger.warning, "%s", warning)

    def _failed(self, stream: TLSStream, error: HandshakeError, started: float, *, raised: bool = False) -> None:
        """Log the failure once; report it to ``on_handshake`` (which is when ``started`` was taken). ``raised``:
        the error goes on to a caller, who keeps its traceback; the event gets a copy without one."""
        peer = error.peer or stream.peer_address
        client = _refused_client(stream, error)
        subject = f" subject={client}" if client else ""
        culprit = f" (depth {error.depth}: {error.subject})" if error.subject and error.subject != client else ""
        log_peer(logger.warning, "handshake failed: %s peer=%s%s: %s%s", error.reason, peer or "unknown", subject,
                 error.message, culprit)
        if self.on_handshake is not None:
            if raised:
                error = _record_of(error)
            else:
                _drop_frames(error)
            self._report(
                HandshakeEvent(
                    peer=peer,
                    ok=False,
                    reason=error.reason,
                    tls_version=None,
                    cipher=None,
                    subject=client,
                    server_name=stream.server_name,
                    session_reused=False,
                    duration=trio.current_time() - started,
                    error=error,
                )
            )

    def _report(self, event: HandshakeEvent) -> None:
        """Give ``event`` to the hook. A hook that raises is a bug in metrics code: it is logged with its traceback
        and the connection and the server go on (gtls decision), rather than a counter taking the port down."""
        assert self.on_handshake is not None
        try:
            returned = self.on_handshake(event)
            if inspect.isawaitable(returned):  # an async __call__ or a lambda around a coroutine function
                if inspect.iscoroutine(returned):
                    returned.close()  # never run: no "never awaited" warning on top of this error
                raise TypeError(_ASYNC_HOOK)
        except Exception:
            log_peer(logger.exception, "on_handshake raised on the event %s; the connection and the server go on",
                     event.describe())


def _record_of(error: HandshakeError) -> HandshakeError:
    """A copy of ``error`` for an event: same class and attributes, no traceback and no causes (an exception's
    copy is rebuilt from its arguments and attributes)."""
    return copy.copy(error)


def _drop_frames(error: BaseException) -> None:
    """Forget the frames ``error`` and its causes were raised through. An event is a record: one that a metrics hook
    keeps must not keep those frames alive, and with them the stream, its OpenSSL state and, through the serving
    task's frame, the hook itself (a cycle only the garbage collector could free). Handshake failures never reach a
    handler, so no caller loses a traceback it was given; the reason word and message say what happened."""
    current: BaseException | None = error
    for _ in range(MAX_CAUSE_CHAIN):
        if current is None:
            return
        current.__traceback__ = None
        current = current.__cause__ if current.__cause__ is not None else current.__context__


class TLSListener(trio.abc.Listener[TLSStream]):
    """Wraps a listener; ``accept()`` returns a ``TLSStream`` whose handshake has not started.

    The stream carries the listener's handshake deadline, so even a handler that lets the first receive do the
    handshake cannot be held up forever. Like ``trio.SSLListener`` it takes any ``trio.abc.Listener`` (one that
    counts connections, reads a PROXY header, …): stream sockets (TCP, Unix) get the socket-bound driver, other
    streams memory BIOs.
    """

    def __init__(
        self,
        transport_listener: trio.abc.Listener[trio.abc.Stream],
        settings: Resolved | TLSOptions | CompiledContext,
        *,
        handshake_timeout: float | None = 10.0,
        max_handshakes: int | None = None,
        on_handshake: HandshakeHook | None = None,
        https_compatible: bool = False,
        alpn_protocols: Iterable[str] | None = None,
        handshaker: Handshaker | None = None,
    ) -> None:
        """``handshake_timeout``, ``max_handshakes`` and ``on_handshake`` as for ``serve_tls_over_tcp``; a
        ``handshaker`` (what ``open_tls_over_tcp_listeners`` shares between its listeners) replaces all three."""
        self.transport_listener = transport_listener
        self.context = compile_settings(settings, "server", alpn=alpn_protocols)
        if self.context is not settings:  # compiled here: its load-time warnings are logged (once each)
            log_warnings(self.context.located_warnings)
        self.handshaker = handshaker if handshaker is not None else Handshaker(
            timeout=handshake_timeout, max_handshakes=max_handshakes, on_handshake=on_handshake)
        self._https_compatible = https_compatible
        #: The listening stdlib socket, for batched accepts in serve_tls_over_tcp (None: use accept()).
        listening = getattr(transport_listener, "socket", None)
        self.raw_socket = stdlib_socket_of(listening) if isinstance(listening, trio.socket.SocketType) else None

    async def accept(self) -> TLSStream:
        stream = await self._accept_unmanaged()
        stream.handshake_timeout = self.handshaker.timeout
        stream._handshaker = self.handshaker  # the cap and the hook hold whoever runs the handshake
        return stream

    async def _accept_unmanaged(self) -> TLSStream:
        """A stream whose handshake policy (deadline, cap, hook) the caller applies itself: the serving loop's."""
        transport = await self.transport_listener.accept()
        try:
            if isinstance(transport, trio.SocketStream):
                return TLSStream._over_socket(
                    transport, transport.socket, self.context, _peer_of(transport), self._https_compatible, None
                )
            return TLSStream(transport, self.context, https_compatible=self._https_compatible)
        except BaseException:
            await trio.aclose_forcefully(transport)
            raise

    def _wrap(
        self, conn: socket.socket, address: object, handshake_timeout: float | None, poller: Poller | None = None
    ) -> TLSStream:
        """A stream for a connection accepted on ``raw_socket`` (already non-blocking, TCP options set)."""
        return TLSStream._over_socket(None, conn, self.context, address, self._https_compatible, handshake_timeout,
                                      poller=poller)

    async def aclose(self) -> None:
        await self.transport_listener.aclose()

    @property
    def socket(self) -> trio.socket.SocketType:
        """The listening socket (``AttributeError`` for a transport listener that has none)."""
        listening: trio.socket.SocketType = getattr(self.transport_listener, "socket")  # noqa: B009 - any listener
        return listening


def _peer_of(transport: trio.SocketStream) -> object:
    try:
        return transport.socket.getpeername()
    except OSError:
        return None


async def open_tls_over_tcp_listeners(
    port: int,
    settings: Resolved | TLSOptions | CompiledContext,
    *,
    host: str | bytes | None = None,
    backlog: int | None = None,
    handshake_timeout: float | None = 10.0,
    max_handshakes: int | None = None,
    on_handshake: HandshakeHook | None = None,
    https_compatible: bool = False,
    alpn_protocols: Iterable[str] | None = None,
) -> list[TLSListener]:
    """Listen on ``port`` (0: a free one) like ``trio.open_ssl_over_tcp_listeners``; settings compiled once.
    ``alpn_protocols``: the application protocols accepted by ALPN, in order of preference (``["h2", "http/1.1"]``).
    ``handshake_timeout``, ``max_handshakes`` and ``on_handshake`` apply to each accepted stream's handshake, which
    runs on its first use (see ``serve_tls_over_tcp``)."""
    context = compile_settings(settings, "server", alpn=alpn_protocols)  # before any socket: errors fail closed
    if context is not settings:  # compiled here: its load-time warnings are logged (once each)
        log_warnings(context.located_warnings)
    handshaker = Handshaker(timeout=handshake_timeout, max_handshakes=max_handshakes, on_handshake=on_handshake)
    tcp_listeners = await trio.open_tcp_listeners(port, host=host, backlog=backlog)
    return [
        TLSListener(listener, context, handshaker=handshaker, https_compatible=https_compatible)
        for listener in tcp_listeners
    ]


async def serve_tls_over_tcp(
    handler: Handler,
    port: int,
    settings: Resolved | TLSOptions | CompiledContext,
    *,
    host: str | bytes | None = None,
    backlog: int | None = None,
    handshake_timeout: float | None = 10.0,
    max_handshakes: int | None = None,
    on_handshake: HandshakeHook | None = None,
    https_compatible: bool = False,
    alpn_protocols: Iterable[str] | None = None,
    handler_nursery: trio.Nursery | TaskStarter | None = None,
    task_status: trio.TaskStatus[list[TLSListener]] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve TLS on ``port`` forever, like ``trio.serve_ssl_over_tcp``: ``handler(stream)`` runs once per
    connection after a successful handshake; the stream is closed when it returns. ``task_status.started`` gets the
    listeners (``listeners[0].socket.getsockname()`` tells the port when 0 was asked).

    ``handshake_timeout``: seconds each handshake may take (None: no limit); ``max_handshakes``: a cap on handshakes
    in flight (a connection takes a slot once it has sent something); ``on_handshake``: a plain function given a
    ``HandshakeEvent`` for every handshake, failed or not; ``handler_nursery``: where connection tasks run, a
    nursery or, as in trio, any object with a ``start_soon`` method (they may then outlive the server, their
    handshake deadlines still hold); ``alpn_protocols`` and ``https_compatible`` as for
    ``open_tls_over_tcp_listeners`` and ``TLSStream``. A failed handshake is logged once on ``gtls.server`` and
    never reaches ``handler``."""
    listeners = await open_tls_over_tcp_listeners(
        port,
        settings,
        host=host,
        backlog=backlog,
        handshake_timeout=handshake_timeout,
        max_handshakes=max_handshakes,
        on_handshake=on_handshake,
        https_compatible=https_compatible,
        alpn_protocols=alpn_protocols,
    )
    await serve_listeners(
        handler,
        listeners,
        listeners[0].handshaker,
        handler_nursery=handler_nursery,
        task_status=task_status,
    )
    raise AssertionError("the serving loop returned")  # pragma: no cover - it never returns


__all__: list[str] = [
    "HandshakeEvent",
    "Handshaker",
    "TLSListener",
    "open_tls_over_tcp_listeners",
    "serve_tls_over_tcp",
]
