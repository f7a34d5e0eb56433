"""``TLSStream``: a ``trio.abc.Stream`` speaking TLS over another stream, on the sans-IO engine.

Over a ``trio.SocketStream`` the stream binds OpenSSL to the socket (socket-bound driver, the fast path); over any
other stream it uses memory BIOs. Both behave the same: ``do_handshake()`` explicitly or on first use, concurrent
``send_all``/``receive_some`` per trio's rules, ``close_notify`` on ``aclose`` (bounded wait), ``send_eof`` on
TLS 1.3, and peer renegotiation refused (the compiled context sets ``OP_NO_RENEGOTIATION``).

Errors: the explicit ``do_handshake()`` raises ``HandshakeError`` (reason word of spec §10). Implicit handshakes and
all later failures raise ``trio.BrokenResourceError`` chained (``__cause__``) to the ``HandshakeError``,
``TLSError`` or transport error behind them; a closed stream raises ``trio.ClosedResourceError``.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import operator
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final, Literal, NoReturn, overload

import trio
from cryptography import x509

from ._advice import timed_out
from ._bio_driver import BioDriver
from ._socket_driver import SocketDriver
from .context import CompiledContext, compile_settings
from .engine import WANT_READ, WRITE_CAP, TLSEngine, TransportFailed, Want
from .errors import EOF_IN_HANDSHAKE, NOT_TLS, TIMEOUT, HandshakeError, TLSError, TLSVersionName
from .options import TLSOptions
from .pki.failures import INVALID_TLS
from .resolve import Resolved, Role

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._poller import Poller
    from .server import Handshaker

# compile_settings re-exported: transport callers import it from here
__all__ = ["HalfCloseUnsupported", "TLSStream", "compile_settings"]

Driver = Literal["auto", "socket", "bio"]

#: Lingering after a refused handshake (TLSStream._linger): at most this long, this much read and dropped.
LINGER_SECONDS: Final = 1.0
LINGER_BYTES: Final = 256 * 1024
LINGER_CHUNK: Final = 65536

#: receive_some() without max_bytes returns at most this much (one TLS record is at most 16 KiB of plaintext).
DEFAULT_RECEIVE_SIZE: Final = 65536
#: How long aclose() may wait to hand our close_notify to the transport before closing it anyway.
DEFAULT_CLOSE_TIMEOUT: Final = 1.0

_OK: Final = 0
_BROKEN: Final = 1
_CLOSED: Final = 2

#: What a failed send's frames hold instead of the caller's data.
_NOTHING: Final = memoryview(b"")
_GENERATOR_CODE: Final = (inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR
                          | inspect.CO_ITERABLE_COROUTINE)


def _forget_engine_locals(exc: BaseException | None) -> None:
    """Clear the locals of gtls's finished plain-function frames in the tracebacks of ``exc`` and its causes: the
    stream records ``exc``, and those frames hold the failed send's data. Never a coroutine's frame (clearing a
    suspended one finishes the coroutine before CPython 3.13), nor a caller's."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        tb = exc.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            if not frame.f_code.co_flags & _GENERATOR_CODE and frame.f_globals.get("__name__", "").startswith("gtls."):
                with contextlib.suppress(RuntimeError):  # a frame still running
                    frame.clear()
            tb = tb.tb_next
        exc = exc.__cause__  # not __context__: that may be an exception the caller is handling, none of ours


def check_handshake_timeout(timeout: float | None, *, what: str = "handshake_timeout") -> float | None:
    """``timeout`` if it is a bound every entry point accepts: a positive, finite number of seconds, or None for no
    bound. The listeners, the connector and the constructor apply the same rule, before any connection is made (0
    would fail every handshake as ``timeout``; a negative one raised only after the TCP connect)."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"{what} must be a number of seconds or None, not {type(timeout).__name__}")
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"{what} must be a positive number of seconds, or None for no limit (got {timeout!r})")
    return timeout


def _check_close_timeout(timeout: float) -> float:
    """``close_timeout`` checked when the stream is made, not by ``aclose`` (where trio's cancel scope refused a
    negative or NaN bound, after the exchange): seconds, 0 to close without waiting for the alert to go."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"close_timeout must be a number of seconds, not {type(timeout).__name__}")
    if not timeout >= 0:  # NaN too
        raise ValueError(f"close_timeout must be 0 or a positive number of seconds (got {timeout!r})")
    return timeout


def _socket_of(transport: trio.abc.Stream) -> trio.socket.SocketType | None:
    if isinstance(transport, trio.SocketStream):
        sock = transport.socket
        if sock.type == socket.SOCK_STREAM:
            return sock
    return None


def _closed_underneath(exc: BaseException | None = None) -> TLSError:
    closed = TLSError("the transport stream was closed underneath the TLS stream")
    closed.__cause__ = exc if exc is not None else trio.ClosedResourceError("its socket was closed")
    return closed


class HalfCloseUnsupported(TLSError, trio.BrokenResourceError):
    """``send_eof()`` on TLS 1.2, where a half-close cannot be promised. A ``trio.BrokenResourceError`` because that
    is what generic ``HalfCloseableStream`` code catches around ``send_eof`` (h11's example, hypercorn), but the
    stream is unchanged: it can still send, receive and close."""


class TLSStream(trio.abc.HalfCloseableStream):
    """TLS over ``transport_stream`` with settings compiled once per endpoint.

    ``settings`` is a ``Resolved``, a ``TLSOptions`` (``server_side`` then chooses the role) or a
    ``CompiledContext``. ``server_hostname`` is the dialled host for a client (SNI and the peer-name reference
    follow spec §7; ``tls-target-name`` wins). ``handshake_timeout`` bounds the handshake (``HandshakeError``
    ``timeout``). ``https_compatible=True`` neither sends nor expects
    ``close_notify``, like trio's ``SSLStream``. ``driver`` forces the socket-bound or memory-BIO path.
    """

    __slots__ = (
        "_transport",
        "_sock",
        "handshake_timeout",
        "_https_compatible",
        "_close_timeout",
        "_engine",
        "_driver",
        "_state",
        "_cause",
        "_send_busy",
        "_recv_busy",
        "_eof",
        "_handshaking",
        "_handshake_lot",
        "_unfinished_write",
        "_handshaker",
    )

    def __init__(
        self,
        transport_stream: trio.abc.Stream,
        settings: Resolved | TLSOptions | CompiledContext,
        *,
        server_side: bool | None = None,
        server_hostname: str | None = None,
        https_compatible: bool = False,
        driver: Driver = "auto",
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        handshake_timeout: float | None = None,
        alpn_protocols: Iterable[str] | None = None,
    ) -> None:
        role: Role
        if isinstance(settings, TLSOptions):
            role = "server" if server_side else "client"
        else:
            role = settings.role
            if server_side is not None and server_side != (role == "server"):
                raise ValueError(f"settings are for a {role}, but server_side={server_side}")
        compiled = compile_settings(settings, role, alpn=alpn_protocols)
        sock = None if driver == "bio" else _socket_of(transport_stream)
        if driver == "socket" and sock is None:
            raise TypeError("the socket-bound driver needs a trio.SocketStream over a stream socket (TCP or Unix)")
        peer = None
        if isinstance(transport_stream, trio.SocketStream):
            try:
                peer = transport_stream.socket.getpeername()
            except OSError:
                peer = None
        self._setup(transport_stream, compiled, sock, server_hostname, peer, https_compatible,
                    _check_close_timeout(close_timeout), check_handshake_timeout(handshake_timeout))

    @classmethod
    def _over_socket(
        cls,
        transport: trio.SocketStream | None,
        sock: socket.socket | trio.socket.SocketType,
        compiled: CompiledContext,
        address: object,
        https_compatible: bool,
        handshake_timeout: float | None,
        *,
        server_hostname: str | None = None,
        poller: Poller | None = None,
    ) -> TLSStream:
        """The fast constructor of the listeners and the connector: settings already compiled, peer address known
        (from accept(), or the address dialled). ``transport`` may be None for a bare non-blocking stdlib socket:
        ``transport_stream`` then makes the ``trio.SocketStream`` on first use (most connections never ask, and it
        costs objects and syscalls). ``server_hostname``: a client's, as for the constructor. ``poller``: read waits
        go through it (``gtls._poller``) for a connection whose closing is guaranteed (the serving loop's), since it
        holds the stream until then."""
        self = cls.__new__(cls)
        self._setup(transport, compiled, sock, server_hostname, address, https_compatible, DEFAULT_CLOSE_TIMEOUT,
                    handshake_timeout, poller)
        return self

    def _setup(
        self,
        transport_stream: trio.abc.Stream | None,
        compiled: CompiledContext,
        sock: socket.socket | trio.socket.SocketType | None,
        server_hostname: str | None,
        peer: object,
        https_compatible: bool,
        close_timeout: float,
        handshake_timeout: float | None,
        poller: Poller | None = None,
    ) -> None:
        self._transport = transport_stream
        self._sock = sock
        self._https_compatible = https_compatible
        self._close_timeout = close_timeout
        #: Bound on the handshake, explicit or implicit; None waits as long as the peer does.
        self.handshake_timeout = handshake_timeout
        engine = TLSEngine(compiled, sock, server_hostname=server_hostname, peer=peer,  # type: ignore[arg-type]
                           lenient_eof=https_compatible)
        self._engine = engine
        self._driver: SocketDriver | BioDriver = (
            SocketDriver(sock, poller) if sock is not None else BioDriver(engine, transport_stream)  # type: ignore[arg-type]
        )
        self._state = _OK
        self._cause: BaseException | None = None
        self._send_busy = False
        self._recv_busy = False
        self._eof = False
        self._handshaking = False
        self._handshake_lot: trio.lowlevel.ParkingLot | None = None
        # What OpenSSL was writing when a send_all was cancelled (the failed SSL_write's bytes, some possibly sent);
        # it goes out before anything else.
        self._unfinished_write: bytes | None = None
        #: The policy of the listener that accepted this stream (``TLSListener.accept``): its cap and hook apply to
        #: the handshake whoever runs it. None for clients and for the serving loop's streams (the loop applies it).
        self._handshaker: Handshaker | None = None

    @property
    def transport_stream(self) -> trio.abc.Stream:
        """The stream under TLS (a ``trio.SocketStream`` for TCP)."""
        transport = self._transport
        if transport is None:
            sock = self._sock
            assert isinstance(sock, socket.socket)
            if sock.fileno() == -1:  # closed before anyone asked: a closed stand-in answers every call the same way
                raw = socket.socket(sock.family, sock.type)
                stand_in = trio.socket.from_stdlib_socket(raw)
                raw.close()  # nothing can be waiting on it yet: no notify_closing needed
                transport = self._transport = trio.SocketStream(stand_in)
            else:
                driver = self._driver
                if driver.__class__ is SocketDriver:
                    driver.leave_poller()  # the caller may now wait on the socket through trio
                transport = self._transport = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        return transport

    def _close_socket(self) -> None:
        """Close the TCP socket now, waking any task waiting on it (as trio's socket ``close`` does)."""
        sock = self._sock
        if sock is None:  # memory BIO: over a SocketStream, still close its socket
            sock = getattr(self._transport, "socket", None)
            if sock is None:
                return
        if isinstance(sock, socket.socket):
            driver = self._driver
            still_open = sock.fileno() != -1
            # notify_closing wakes waiters and removes the fd from trio's epoll set (one epoll_ctl). With no waiter
            # and no trio socket made from it, trio holds no state for the fd, and close() alone drops it from the
            # kernel's epoll set: skip the notification. (Asked before closing(), which ends the poller's share.)
            if still_open and (
                self._transport is not None or driver.__class__ is not SocketDriver or driver.waiting
            ):
                trio.lowlevel.notify_closing(sock)
            if driver.__class__ is SocketDriver:
                driver.closing()  # wakes a reader parked in the poller, as notify_closing wakes trio's
            if still_open:
                sock.close()
        else:
            sock.close()

    # --- state -------------------------------------------------------------------------------------------------

    def _check_status(self) -> None:
        if self._state is not _OK:
            if self._state == _CLOSED:
                raise trio.ClosedResourceError("this TLS stream was closed")
            raise self._broken_error()
        sock = self._sock
        if sock is not None and sock.fileno() == -1:  # _socket_closed(), inline: every call passes here
            raise self._break(_closed_underneath())
        if self._driver.__class__ is BioDriver and self._driver.broken:
            failure = self._driver.failure
            if isinstance(failure, trio.Cancelled):
                cause = TLSError("a send was cancelled part-way through a TLS record, so the stream cannot go on")
            else:
                cause = TLSError("the transport failed while sending TLS records")
                cause.__cause__ = failure
            self._break(cause)
            raise self._broken_error()

    def _socket_closed(self) -> bool:
        """A socket-bound stream whose socket was closed underneath it (``transport_stream.aclose()``). OpenSSL holds
        only the descriptor's number, which the next socket the process opens takes: a call reaching OpenSSL then
        would write our records to that other connection (a ``send_all`` succeeded there) or read from it."""
        sock = self._sock
        return sock is not None and sock.fileno() == -1

    def _broken_error(self) -> trio.BrokenResourceError:
        cause = self._cause
        error = trio.BrokenResourceError(f"TLS stream is broken: {cause}" if cause else "TLS stream is broken")
        error.__cause__ = cause
        return error

    def _set_closed(self) -> None:
        # Once closed only ClosedResourceError is raised, so the recorded cause can go, and it must: its traceback
        # holds the frame that recorded it, whose ``self`` is this stream. That cycle kept every connection that
        # ended in a failure (its OpenSSL state included) alive until the garbage collector's next pass.
        self._state = _CLOSED
        self._cause = None
        driver = self._driver
        if driver.__class__ is BioDriver:
            driver.failure = None  # the same cycle, through the memory-BIO driver's record of a failed send

    def _break(self, cause: BaseException) -> trio.BrokenResourceError:
        if self._state == _OK:
            self._state = _BROKEN
            self._cause = cause
        return self._broken_error()

    def _raise_transport_error(self, exc: trio.BrokenResourceError | trio.ClosedResourceError) -> NoReturn:
        error = self._transport_error(exc)
        try:
            raise error from error.__cause__
        finally:
            del error, exc  # this frame is in their tracebacks: a cycle, holding the stream and the send's data

    def _transport_error(self, exc: trio.BrokenResourceError | trio.ClosedResourceError) -> BaseException:
        """A transport failure seen while waiting, as the right error for our caller. Its ``__cause__`` is the
        stream's cause: ``exc``, or what broke the stream first (e.g. a reaper's ``_abort`` closed the socket)."""
        if self._state == _CLOSED:
            return trio.ClosedResourceError("this TLS stream was closed")
        if isinstance(exc, trio.ClosedResourceError):
            return self._break(_closed_underneath(exc))
        return self._break(exc)

    # --- handshake ---------------------------------------------------------------------------------------------

    async def do_handshake(self) -> None:
        """Complete the handshake now (otherwise the first send or receive does it).

        Raises ``HandshakeError`` (or ``PeerVerificationError``) with the reason word; calling it again after a
        failure raises the same error; after success it only checkpoints.
        """
        if self._state == _BROKEN and isinstance(self._cause, HandshakeError):
            raise self._cause
        self._check_status()
        if self._engine.handshake_done:
            await trio.lowlevel.checkpoint()
            return
        await self._handshake()

    async def _implicit_handshake(self) -> None:
        try:
            await self._handshake()
        except HandshakeError as exc:
            raise self._broken_error() from exc

    async def _handshake(self) -> None:
        while self._handshaking:  # another task runs it: wait for its outcome
            if self._handshake_lot is None:
                self._handshake_lot = trio.lowlevel.ParkingLot()
            await self._handshake_lot.park()
            if self._state == _BROKEN and isinstance(self._cause, HandshakeError):
                raise self._cause
            self._check_status()
            if self._engine.handshake_done:
                return
        self._handshaking = True
        try:
            handshaker = self._handshaker
            if handshaker is None:
                await self._handshake_within_deadline(self._run_handshake)
            else:
                await handshaker.first_use(self)
        finally:
            self._handshaking = False
            if self._handshake_lot is not None:
                self._handshake_lot.unpark_all()

    async def _handshake_within_deadline(self, run: Callable[[], Awaitable[None]],
                                         explain: Callable[[float], str | None] | None = None) -> None:
        """``run()`` (the handshake, possibly behind a wait for a slot) bounded by ``handshake_timeout``;
        ``explain(timeout)``: the message of a timeout, when the wait for a slot may be why (else the usual one)."""
        timeout = self.handshake_timeout
        if timeout is None:
            await run()
            return
        with trio.move_on_after(timeout) as scope:
            await run()
        if scope.cancelled_caught:
            raise self.handshake_timed_out(timeout, explain(timeout) if explain is not None else None)

    async def _accepted_handshake(self) -> None:
        """The serving loop's handshake of a stream it just accepted: no other task knows the stream yet and the
        loop's reaper owns the deadline, so no turn-taking, no cancel scope and no leading checkpoint (the first
        wait is one; a cancellation is seen there). A handshake the loop completed before starting this task
        (``_advance_untasked``) returns at once: the task's start was the checkpoint. Anything else takes the
        general path."""
        if self._state == _OK and self._engine.handshake_done and self.handshake_timeout is None:
            return
        if self._state != _OK or self._handshaking or self._engine.handshake_done or self.handshake_timeout is not None:
            await self.do_handshake()
            return
        await self._run_handshake(checkpoint=False)

    def _advance_untasked(self) -> bool:
        """One step of the serving loop's handshake of a stream that has no task yet: True while OpenSSL waits to
        read from the peer; False once the handshake is complete, has failed (the stream is broken with the
        ``HandshakeError``) or needs the socket writable, which the connection's task then waits for."""
        try:
            return self._engine.handshake() is WANT_READ
        except HandshakeError as exc:
            self._break(exc)
            return False

    async def _run_handshake(self, *, checkpoint: bool = True) -> None:
        engine = self._engine
        driver = self._driver
        if checkpoint:
            await trio.lowlevel.checkpoint_if_cancelled()
        waited = False
        while True:
            try:
                want = engine.handshake()
            except HandshakeError as exc:
                self._break(exc)
                await driver.flush_best_effort()
                raise
            if want is None:
                break
            try:
                await driver.wait(want)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                if self._state != _OK:  # closed, or broken by the deadline or another failure: that is the story
                    self._raise_if_ended()
                failure = engine.eof_in_handshake(exc)  # the transport failed (either way): chained to its error
                self._break(failure)
                try:
                    raise failure from exc
                finally:
                    del failure  # as in receive_some: a local raised through this frame would keep it in a cycle
            waited = True
            self._raise_if_ended()
        if waited and driver.__class__ is SocketDriver:
            return  # OpenSSL already wrote to the socket, and the wait was the checkpoint
        try:
            await driver.settle_handshake(waited)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._raise_transport_error(exc)

    def _raise_if_ended(self) -> None:
        """During the handshake: closed, or broken by a deadline (the listeners' reaper) or another failure."""
        if self._state == _CLOSED:
            raise trio.ClosedResourceError("this TLS stream was closed")
        if self._state == _BROKEN:
            if isinstance(self._cause, HandshakeError):
                raise self._cause
            raise self._broken_error()
        self._check_status()

    def handshake_timed_out(self, seconds: float, message: str | None = None) -> HandshakeError:
        """Mark the stream broken by a handshake deadline (used by the listeners and the connector); ``message``
        replaces the usual one (a listener's, for a handshake that waited for a slot)."""
        failure = self._timeout_error(seconds, message)
        self._break(failure)
        return failure

    def _timeout_error(self, seconds: float, message: str | None = None) -> HandshakeError:
        # Every deadline here is a handshake_timeout: of TLSStream, the connector, the listeners and serve_tls_over_tcp.
        if message is None:
            message = timed_out(seconds, "client" if self._engine.is_server else "server")
        return HandshakeError(TIMEOUT, message, peer=self._engine.peer)

    # --- receiving ---------------------------------------------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._recv_busy:
            raise trio.BusyResourceError("another task is already receiving on this TLS stream")
        self._recv_busy = True
        try:
            if max_bytes is None:
                max_bytes = DEFAULT_RECEIVE_SIZE
            else:
                max_bytes = operator.index(max_bytes)
                if max_bytes < 1:
                    raise ValueError("max_bytes must be >= 1")
            self._check_status()
            engine = self._engine
            if not engine.handshake_done:
                await self._implicit_handshake()
            else:
                await trio.lowlevel.checkpoint_if_cancelled()
            if self._eof:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return b""
            driver = self._driver
            waited = False
            while True:
                try:
                    result = engine.recv(max_bytes)
                except TransportFailed as exc:
                    if exc.eof and self._https_compatible:
                        self._eof = True
                        await trio.lowlevel.cancel_shielded_checkpoint()
                        return b""
                    raise self._break(exc) from exc
                except (HandshakeError, TLSError) as exc:
                    error = self._break(exc)
                    try:
                        if driver.__class__ is BioDriver:
                            # OpenSSL wrote its alert for the peer's bad record into memory, which nothing else
                            # would send: the peer would see only EOF (the socket-bound path has sent it already).
                            await driver.flush_best_effort()
                        raise error from exc
                    finally:
                        # This frame is in the error's traceback: kept as a local, the error would hold it, and
                        # with it the stream, in a cycle (a peer's bad record, alert or renegotiation).
                        del error
                if result.__class__ is Want:
                    try:
                        # Inline for the socket driver (see SocketDriver.claim_read): idle connections wait here.
                        if result is WANT_READ and driver.__class__ is SocketDriver and driver.claim_read():
                            try:
                                await driver.readable()
                            finally:
                                driver.release_read()
                        else:
                            await driver.wait(result)
                    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                        self._raise_transport_error(exc)
                    waited = True
                    self._check_status()
                    continue
                if not result:
                    self._eof = True
                try:
                    await driver.settle(waited)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    self._raise_transport_error(exc)
                return result  # type: ignore[return-value]
        finally:
            self._recv_busy = False

    # --- sending -----------------------------------------------------------------------------------------------

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._send_busy:
            raise trio.BusyResourceError("another task is already sending on this TLS stream")
        self._send_busy = True
        try:
            self._check_status()
            engine = self._engine
            if engine.sent_close_notify:
                raise trio.ClosedResourceError("send_eof() was called: this TLS stream no longer sends")
            if not engine.handshake_done:
                await self._implicit_handshake()
            else:
                await trio.lowlevel.checkpoint_if_cancelled()
            view = memoryview(data)
            if view.ndim != 1 or view.itemsize != 1:
                view = view.cast("B")
            waited = False
            if self._unfinished_write is not None:
                waited = await self._write(memoryview(self._unfinished_write))
                self._unfinished_write = None
            if view:
                waited = await self._write(view) or waited
            try:
                await self._driver.settle(waited)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._raise_transport_error(exc)
        except BaseException:
            # The failures the stream records (its cause; the memory-BIO driver's cancelled or failed send) keep
            # this frame in their tracebacks: it must not keep the caller's data (a bytearray could not be resized).
            # A cancelled send on the fast path keeps its own copy for the repeat (``_unfinished_write``).
            data = view = _NOTHING
            if self._state != _OK:  # broken or closed under this send: it will never be repeated
                self._engine.drop_unfinished_write()
            raise
        finally:
            self._send_busy = False

    async def _write(self, view: memoryview, *, closing: bool = False) -> bool:
        """Write all of ``view``; True if it had to wait (which checkpointed). ``closing``: ``aclose`` finishing a
        cancelled send's bytes on a stream it already marked closed (other tasks' calls stop, this one goes on)."""
        engine = self._engine
        driver = self._driver
        bio = driver.__class__ is BioDriver
        waited = False
        offset = 0
        total = len(view)
        try:
            while offset < total:
                chunk = view[offset:]
                try:
                    result = engine.send(chunk, self._recv_busy)
                except (TransportFailed, TLSError) as exc:
                    _forget_engine_locals(exc)
                    raise self._break(exc) from exc
                if result.__class__ is Want:
                    try:
                        await driver.wait(result)
                    except trio.Cancelled:
                        if engine.write_unfinished:
                            # OpenSSL's retry needs every byte the failed SSL_write was given, not only the record it
                            # holds: the same call may already have sent earlier records of it (a retry with less is
                            # "bad length", fatal). Detoured through memory, the write is done and its count is
                            # reported to the repeat, which its bytes identify.
                            self._unfinished_write = bytes(chunk[:WRITE_CAP])
                            engine.hold_unfinished(self._unfinished_write)
                        raise
                    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                        self._raise_transport_error(exc)
                    waited = True
                    if not closing:
                        self._check_status()
                    elif self._socket_closed():
                        raise self._break(_closed_underneath())
                    continue
                offset += result  # type: ignore[operator]
                if bio and offset < total:
                    try:
                        await driver.wait(Want.WRITE)  # push this record before encrypting the next one
                    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                        self._raise_transport_error(exc)
        except BaseException:
            view = chunk = _NOTHING  # as in send_all: this frame may outlive the call in a recorded traceback
            raise
        return waited

    async def wait_send_all_might_not_block(self) -> None:
        if self._send_busy:
            raise trio.BusyResourceError("another task is already sending on this TLS stream")
        self._send_busy = True
        try:
            self._check_status()
            try:
                await self._driver.wait_send_ready()
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._raise_transport_error(exc)
            self._check_status()
        finally:
            self._send_busy = False

    async def send_eof(self) -> None:
        """Send ``close_notify`` and keep receiving (TLS 1.3). In TLS 1.2 it raises ``HalfCloseUnsupported`` and
        changes nothing: there a ``close_notify`` may end both directions (RFC 5246 §7.2.1; Java answers with its
        own and drops its unsent reply, which would then read as a clean, empty end)."""
        if self._send_busy:
            raise trio.BusyResourceError("another task is already sending on this TLS stream")
        self._send_busy = True
        try:
            self._check_status()
            engine = self._engine
            if not engine.handshake_done:
                await self._implicit_handshake()
            else:
                await trio.lowlevel.checkpoint_if_cancelled()
            if engine.sent_close_notify and not engine.close_notify_unsent:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return  # a repeated send_eof; one cancelled while its alert waited for the socket finishes it below
            if engine.tls_version != "TLSv1.3":
                raise HalfCloseUnsupported(
                    f"send_eof() needs TLS 1.3; this connection uses {engine.tls_version} (the stream is unchanged)")
            if self._unfinished_write is not None:
                await self._write(memoryview(self._unfinished_write))
                self._unfinished_write = None
            await self._close_notify()
            try:
                await self._driver.settle(False)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._raise_transport_error(exc)
        finally:
            self._send_busy = False

    async def _close_notify(self) -> None:
        engine = self._engine
        driver = self._driver
        while True:
            if self._socket_closed():
                raise self._break(_closed_underneath())
            try:
                want = engine.close_notify()
            except TransportFailed as exc:
                raise self._break(exc) from exc
            if want is None:
                return
            try:
                await driver.wait(want)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._raise_transport_error(exc)

    # --- closing -----------------------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Send ``close_notify`` (waiting at most ``close_timeout``), then close the transport. Called in a cancelled
        scope (``trio.aclose_forcefully``) it closes at once without ``close_notify``: the peer must not take an
        abandoned exchange for a complete one. After a handshake we refused with an alert, it lingers first (at most
        1 s, see ``_linger``), unless cancelled."""
        if self._state == _CLOSED:
            await trio.lowlevel.checkpoint()
            return
        unhurried = trio.current_effective_deadline() != -math.inf
        polite = unhurried and self._close_notify_due()
        # A stream the user's own accept loop (or code of theirs) refused in its handshake lingers as the serving
        # loop's and the connector's do, so a peer still writing reads our alert rather than a reset.
        refused = unhurried and self._state == _BROKEN and self._rejected_in_handshake()
        self._set_closed()
        self._driver.wake_all()
        try:
            if refused:
                await self._linger()
            if polite and self._driver.__class__ is SocketDriver and self._unfinished_write is None:
                # Usually the socket takes the alert at once: no cancel scope then, only when it must wait.
                polite = self._engine.close_notify(best_effort=True) is not None
            if polite:
                with trio.move_on_after(self._close_timeout):
                    try:
                        if self._unfinished_write is not None:
                            # The bytes OpenSSL holds for a cancelled send go first: close_notify cannot cut a record.
                            await self._write(memoryview(self._unfinished_write), closing=True)
                        await self._close_notify()
                        if self._driver.__class__ is BioDriver:
                            await self._driver.settle(True)
                    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError, TLSError):
                        pass
        finally:
            if self._driver.__class__ is SocketDriver:
                # What SocketStream.aclose does, minus its cancel scope: close, then checkpoint.
                self._close_socket()
                await trio.lowlevel.checkpoint_if_cancelled()
                await trio.lowlevel.cancel_shielded_checkpoint()
            else:
                await self.transport_stream.aclose()

    def _close_notify_due(self) -> bool:
        """Whether closing should send ``close_notify``: an established, unbroken stream that has not sent one (or
        whose ``send_eof`` was cancelled while the alert waited for the socket), is not https-compatible, and has no
        send mid-record (no clean place for the alert)."""
        return (
            self._state == _OK
            and not self._socket_closed()
            and not self._https_compatible
            and self._engine.handshake_done
            and (not self._engine.sent_close_notify or self._engine.close_notify_unsent)
            and not self._send_busy
        )

    def _close_now(self, polite: bool = True) -> None:
        """Close without waiting (the listeners' per-connection task ends here): a socket-bound stream still sends
        ``close_notify`` when the socket takes it at once, unless ``polite`` is False (the handler failed or was
        cancelled: a cut-off exchange must not end like a complete one). Memory-BIO streams need ``aclose``."""
        if self._state == _CLOSED:
            return
        if polite and self._close_notify_due() and self._unfinished_write is None:  # no waiting to finish a record
            self._engine.close_notify(best_effort=True)
        self._set_closed()
        self._driver.wake_all()
        self._close_socket()

    def _rejected_in_handshake(self) -> bool:
        """The handshake failed with our alert to a peer that may still be writing (a certificate verdict, a
        protocol refusal, a TLS message refused), not with its silence or departure (``timeout``,
        ``eof-in-handshake``), with bytes that were not TLS at all (plaintext, HTTP: such a peer reads no alert), or
        with the peer's own fatal alert (``.alert``: we sent none, and the peer knows why; lingering only delayed the
        error, by up to a second against a server that keeps the socket)."""
        cause = self._cause
        if not isinstance(cause, HandshakeError) or cause.reason in (TIMEOUT, EOF_IN_HANDSHAKE):
            return False
        if cause.alert is not None:
            return False
        return cause.reason != NOT_TLS or cause.message.startswith(INVALID_TLS)

    async def _linger(self, seconds: float = LINGER_SECONDS, limit: int = LINGER_BYTES) -> None:
        """Before closing a connection we refused: end our side (FIN after the alert) and read and drop what the
        peer still sends, for at most ``seconds`` or ``limit`` bytes. Closed at once, a socket with unread data
        answers the peer with a reset, and a TLS 1.3 client that writes before it reads (every HTTP/2 client) then
        fails on that reset without ever reading our alert: curl said "connection reset" instead of "certificate
        required". ``openssl s_server`` and nginx linger the same way. The caller closes afterwards.

        The socket is a bare one (the listeners', the connector's for an IP address) or trio's (the connector's after
        happy eyeballs, a ``TLSStream`` over a ``trio.SocketStream``): both linger."""
        sock = self._sock
        if sock is None or sock.fileno() == -1:
            return
        try:
            sock.shutdown(socket.SHUT_WR)
            drained = 0
            with trio.move_on_after(seconds):
                while drained < limit:
                    if isinstance(sock, socket.socket):
                        try:
                            data = sock.recv(LINGER_CHUNK)
                        except BlockingIOError:
                            await trio.lowlevel.wait_readable(sock)
                            continue
                    else:
                        data = await sock.recv(LINGER_CHUNK)
                    if not data:
                        break
                    drained += len(data)
        except OSError:  # the peer is gone already: nothing to wait for
            pass
        finally:
            if isinstance(sock, socket.socket):
                trio.lowlevel.notify_closing(sock)  # trio registered the fd for the wait (its own sockets see to it)

    def _abort_handshake(self, failure: HandshakeError) -> None:
        """Fail a handshake from outside its task (the listeners' deadline reaper): break the stream with
        ``failure`` and close the socket, which wakes the handshaking task; it then raises ``failure``."""
        if not self._engine.handshake_done:
            self._abort(failure)

    def _abort(self, cause: BaseException) -> None:
        """Break the stream with ``cause`` from outside its tasks (a reaper) and close the socket, which wakes any
        task waiting on it: that task then raises ``BrokenResourceError`` caused by ``cause``."""
        if self._state != _OK:
            return
        self._break(cause)
        self._driver.wake_all()
        self._close_socket()

    # --- what was negotiated -----------------------------------------------------------------------------------

    @property
    def settings(self) -> Resolved:
        """The resolved settings this stream runs with."""
        resolved: Resolved = self._engine.compiled.resolved
        return resolved

    @property
    def context(self) -> CompiledContext:
        """The compiled settings the stream runs on (shared by every stream of its port or connector)."""
        return self._engine.compiled

    @property
    def socket_bound(self) -> bool:
        """True when OpenSSL reads and writes the TCP socket directly (the fast path), False for memory BIOs."""
        return self._driver.__class__ is SocketDriver

    @property
    def handshake_done(self) -> bool:
        """True once the handshake has completed (never after a failed one)."""
        return self._engine.handshake_done

    @property
    def handshake_warnings(self) -> list[str]:
        """Warnings the context reported for this handshake (e.g. an expired CRL accepted under ``warn``)."""
        return list(self._engine.warnings)

    @property
    def peer_address(self) -> str | None:
        """``host:port`` of the peer when the transport is a socket."""
        return self._engine.peer

    @property
    def tls_version(self) -> TLSVersionName | None:
        """``"TLSv1.3"`` / ``"TLSv1.2"`` after the handshake, else None."""
        return self._engine.tls_version

    @property
    def cipher(self) -> str | None:
        """OpenSSL's name of the negotiated cipher suite after the handshake, else None."""
        return self._engine.cipher

    @property
    def session_reused(self) -> bool:
        """True when the handshake resumed an earlier session (no certificate was exchanged or verified)."""
        return self._engine.session_reused

    @property
    def server_name(self) -> str | None:
        """The SNI name: the one received (server) or sent (client)."""
        return self._engine.server_name

    @property
    def alpn_protocol(self) -> str | None:
        """The application protocol agreed by ALPN (``"h2"``), or None: none offered, accepted or in common."""
        return self._engine.alpn_protocol if self._engine.handshake_done else None

    def selected_alpn_protocol(self) -> str | None:
        """``alpn_protocol`` under the name trio's ``SSLStream`` (Python's ``ssl``) gives it: code written for
        trio, such as hypercorn's HTTP/2 detection, calls this."""
        return self.alpn_protocol

    @property
    def peer_certificate(self) -> x509.Certificate | None:
        """The peer's leaf certificate after the handshake (a client's only with mutual TLS), else None. A
        certificate OpenSSL accepted but ``cryptography`` cannot load (an X.509 version field of 3) raises
        ``ValueError``; ``getpeercert()`` still reads it (both forms)."""
        return self._engine.peer_certificate if self._engine.handshake_done else None

    @property
    def peer_chain(self) -> list[x509.Certificate]:
        """The certificates the peer sent, leaf first (empty before the handshake or when none was sent);
        ``ValueError`` as for ``peer_certificate``."""
        return self._engine.peer_chain if self._engine.handshake_done else []

    # --- the names of trio's SSLStream (Python's ssl), for code written against it ------------------------------
    # (``cipher`` cannot be among them: it is gtls's property, the suite's name; ``ssl``'s is a method.)

    @property
    def server_side(self) -> bool:
        """True for a server's stream, as ``ssl.SSLObject.server_side``."""
        return self._engine.is_server

    def version(self) -> TLSVersionName | None:
        """``tls_version``, as ``ssl.SSLObject.version()``."""
        return self.tls_version

    # The overloads typeshed gives ssl's: ``cert["subject"]`` type-checks without narrowing away bytes.
    @overload
    def getpeercert(self, binary_form: Literal[False] = False) -> dict[str, Any] | None: ...
    @overload
    def getpeercert(self, binary_form: Literal[True]) -> bytes | None: ...
    @overload
    def getpeercert(self, binary_form: bool) -> dict[str, Any] | bytes | None: ...

    def getpeercert(self, binary_form: bool = False) -> dict[str, Any] | bytes | None:
        """The peer's certificate as ``ssl.SSLObject.getpeercert`` gives it: DER bytes with ``binary_form``, else the
        dict ``ssl`` decodes (``subject``, ``issuer``, ``notAfter``, ``subjectAltName``, ``OCSP``, …); None when the
        peer sent none."""
        # OpenSSL's bytes, read without cryptography: also a certificate it cannot load (see peer_certificate)
        der = self._engine.peer_certificate_der if self._engine.handshake_done else None
        if der is None or binary_form:
            return der
        from ._ssl_compat import peercert_dict

        return peercert_dict(der)
