"""The sans-IO TLS engine: one pyOpenSSL connection, its state, and the translation of its outcomes.

The engine never waits and never touches trio. Each step (``handshake``, ``recv``, ``send``, ``close_notify``)
runs OpenSSL once and returns either a result or ``WANT_READ`` / ``WANT_WRITE``; a driver decides how to wait:

* socket-bound (``gtls._socket_driver``): the connection owns the TCP socket's file descriptor, OpenSSL reads and
  writes it directly, and the driver only waits for readiness;
* memory BIO (``gtls._bio_driver``): OpenSSL reads and writes two memory buffers, and the driver moves bytes
  between them and any ``trio.abc.Stream`` (``feed``, ``feed_eof``, ``take_output``).

Failures leave the engine as exceptions: ``HandshakeError`` (from ``CompiledContext.handshake_failure`` or, for the
transport's own reasons, built here), ``TransportFailed`` when the peer vanished without ``close_notify``, and
``TLSError`` for protocol errors after the handshake.
"""

from __future__ import annotations

import enum
import errno
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, NoReturn, cast

from cryptography import x509
from OpenSSL import SSL, crypto

# The hot path calls OpenSSL directly (one C call per step, no exception per WANT_*); gtls._binding holds every
# private pyOpenSSL use, and connections fall back to pyOpenSSL's public methods when it is unavailable.
from . import _binding
from ._binding import ERROR_WANT_READ as _ERR_WANT_READ
from ._binding import ERROR_WANT_WRITE as _ERR_WANT_WRITE
from ._binding import ERROR_ZERO_RETURN as _ERR_ZERO_RETURN
from ._binding import SSL_do_handshake as _SSL_do_handshake
from ._binding import SSL_get_error as _SSL_get_error
from ._binding import SSL_read as _SSL_read
from ._binding import SSL_shutdown as _SSL_shutdown
from ._binding import SSL_write as _SSL_write
from ._binding import clear_errors as _clear_errors
from ._detour import Detour
from .errors import EOF_IN_HANDSHAKE, HandshakeError, TLSError, TLSVersionName

if TYPE_CHECKING:
    from .context import CompiledContext


class Want(enum.Enum):
    """What OpenSSL needs before the step can be retried."""

    READ = "read"
    WRITE = "write"


WANT_READ: Final = Want.READ
WANT_WRITE: Final = Want.WRITE

#: Errnos meaning "the peer is gone" rather than a local fault.
GONE_ERRNOS: Final = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED, errno.ETIMEDOUT, errno.ENOTCONN})
_BIO_CHUNK: Final = 65536
#: The most one recv reads: one SSL_read returns at most one record (16 KiB of plaintext), _gather reads more.
_READ_CAP: Final = 65536
#: Plaintext of a full TLS record (2**14). A read that returns a full record means the peer is streaming.
_FULL_RECORD: Final = 16384
#: The most one SSL_write is given. A call that must be retried (WANT_WRITE) may already have sent several records
#: of it, and the retry must give OpenSSL all of those bytes again: a send_all cancelled there keeps them, and they
#: go out before the next data (or before close_notify, within aclose's bound). Four records: few to keep, and still
#: one call per 64 KiB.
WRITE_CAP: Final = 1 << 16
#: TLS 1.3 client writes, before the first record arrives, that first check for the server's late rejection.
_PROBED_WRITES: Final = 4
#: Socket reads one detoured ``recv`` moves into OpenSSL at most (``_RAW_READ`` each): a peer streaming records that
#: carry no data (session tickets) gets the event loop back between them.
_DETOUR_PULLS: Final = 4


class TransportFailed(Exception):
    """The transport ended or failed under TLS: EOF without ``close_notify`` (``eof=True``) or a reset."""

    def __init__(self, message: str, *, eof: bool) -> None:
        super().__init__(message)
        self.eof = eof


def format_address(address: object) -> str | None:
    """``host:port`` (``[v6]:port``) for a socket address tuple; None when unknown."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        if len(address) == 4 and address[3] and "%" not in str(host):
            # An IPv6 link-local peer: without its zone the address cannot be dialled back (peer logs, errors).
            try:
                host = f"{host}%{socket.if_indextoname(address[3])}"
            except OSError:
                host = f"{host}%{address[3]}"
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    if isinstance(address, str) and address:
        return address
    return None


def _transport_failure(exc: OSError) -> TransportFailed:
    """The socket's failure under a detour, in the direct path's words (OpenSSL reports it as a SysCallError)."""
    message, eof = _describe_syscall(_as_syscall_error(exc))
    return TransportFailed(message, eof=eof)


def _as_syscall_error(exc: OSError) -> SSL.SysCallError:
    return SSL.SysCallError(exc.errno or -1, exc.strerror or str(exc))


def _describe_syscall(exc: SSL.SysCallError, peer: str | None = None) -> tuple[str, bool]:
    """What the transport did, and whether it was an EOF. ``peer``: the other end when it is named ("the server")."""
    code = exc.args[0] if exc.args else -1
    if code == -1 or code == 0:
        return f"{peer or 'the peer'} closed the connection without close_notify", True
    if isinstance(code, int) and code in GONE_ERRNOS:
        return _reset_text(code, peer), False
    return f"transport error: {exc.args[1] if len(exc.args) > 1 else exc}", False


def _reset_text(code: int | None, peer: str | None) -> str:
    # Not "reset by the server": a device on the way may have reset it, and ETIMEDOUT is no one's doing.
    with_peer = f" with {peer}" if peer else ""
    return f"the connection{with_peer} was reset ({errno.errorcode.get(code or 0, code)})"


class TLSEngine:
    """One TLS connection's state machine over pyOpenSSL, with no I/O of its own.

    ``sock`` binds OpenSSL to a connected socket (socket-bound mode); ``None`` uses memory BIOs.
    """

    __slots__ = (
        "compiled",
        "conn",
        "_address",
        "_peer_text",
        "memory_bio",
        "handshake_done",
        "received_close_notify",
        "sent_close_notify",
        "write_pending",
        "warnings",
        "is_server",
        "_ssl",
        "_reuse",
        "_probe_writes",
        "_awaiting_first_record",
        "_deferred_read_error",
        "_sock",
        "_pending_write",
        "_detour",
        "_shutdown_done",
        "close_notify_unsent",
        "_lenient_eof",
    )

    def __init__(
        self,
        compiled: CompiledContext,
        sock: socket.socket | None = None,
        *,
        server_hostname: str | None = None,
        peer: object = None,
        lenient_eof: bool = False,
    ) -> None:
        self.compiled = compiled
        self.conn: SSL.Connection = compiled.new_connection(sock, server_hostname=server_hostname)
        # The direct C path when pyOpenSSL's binding is there (gtls._binding), else its public methods.
        self._ssl = _binding.ssl_pointer(self.conn)
        self._reuse = _binding.ReuseTracker(self.conn) if self._ssl is None else None
        # The peer's address as accept()/getpeername() gave it; formatted only when a message or event needs it.
        self._address = peer
        self._peer_text: str | None = None
        self.is_server = compiled.role == "server"
        self.memory_bio = sock is None
        self.handshake_done = False
        self.received_close_notify = False
        self.sent_close_notify = False
        #: OpenSSL holds a partly written record: the next ``send`` must repeat the same buffer.
        self.write_pending = False
        #: Warnings the context reported for this handshake (e.g. an expired CRL accepted under ``warn``).
        self.warnings: Sequence[str] = ()  # a list only when there are some: most handshakes have none
        # In TLS 1.3 a client finishes its handshake before the server has judged the client certificate; a
        # rejection arrives as an alert on the first read and still counts as a handshake failure (spec §9).
        # A server has judged everything when its handshake completes: its first read failure is a record error.
        self._awaiting_first_record = not self.is_server
        self._probe_writes = 0
        #: A read failure met while gathering records after good data: reported by the next ``recv``.
        self._deferred_read_error: SSL.Error | None = None
        #: The socket, when a read beside an unfinished write can detour through memory (gtls._detour).
        self._sock = sock if sock is not None and self._ssl is not None and _binding.DETOUR else None
        #: The data and size of the write OpenSSL holds (``write_pending``), for a detour to finish it.
        self._pending_write: tuple[bytes | bytearray | memoryview, int] | None = None
        self._detour: Detour | None = None
        #: SSL_shutdown wrote our close_notify (to the socket or memory): a repeated call must not run it again,
        #: which would read on for the peer's and drop the data it sent meanwhile.
        self._shutdown_done = False
        #: ``close_notify`` returned WANT_WRITE and was not called again since: our alert is not on the socket yet.
        self.close_notify_unsent = False
        #: An https-compatible stream's engine: after the handshake, an EOF without close_notify ends the peer's data.
        self._lenient_eof = lenient_eof
        if self._sock is not None and not self.is_server:
            # A client's socket reads stop after each record without data (a server's waits on its edge-triggered
            # poller must read to EAGAIN): a peer streaming session tickets or HelloRequests held one SSL_read,
            # and with it the event loop, for as long as it kept them coming.
            _binding.stop_auto_retry(self._ssl)

    @property
    def peer(self) -> str | None:
        """``host:port`` of the peer, None when unknown."""
        if self._peer_text is None and self._address is not None:
            self._peer_text = format_address(self._address)
        return self._peer_text

    # --- steps -------------------------------------------------------------------------------------------------

    def handshake(self) -> Want | None:
        """Advance the handshake; None once it is complete."""
        ssl = self._ssl
        _clear_errors()
        if ssl is not None and self._sock is not None and not self.is_server:
            want = self._client_handshake_step(ssl)
            if want is not None:
                return want
        elif ssl is not None:
            result = _SSL_do_handshake(ssl)
            if result != 1:
                code = _SSL_get_error(ssl, result)
                if code == _ERR_WANT_READ:
                    return WANT_READ
                if code == _ERR_WANT_WRITE:
                    return WANT_WRITE
                self._handshake_failed(result)
        else:
            try:
                self.conn.do_handshake()
            except SSL.WantReadError:
                return WANT_READ
            except SSL.WantWriteError:
                return WANT_WRITE
            except SSL.Error as exc:
                raise self._handshake_error(exc) from exc
        # The context's post-handshake duty (pure-Python name check when OpenSSL's is unavailable, CRL warnings);
        # it runs before any application data is returned.
        if self.compiled.checks_after_handshake:
            self.warnings = self.compiled.established(self.conn, peer=self.peer)
        self.handshake_done = True
        if self._lenient_eof:
            # https_compatible reads a bare EOF as the peer's end of data and goes on sending (a half-close, as
            # over TCP). OpenSSL must agree: by default it takes that EOF for a fatal error, alerts the peer
            # (decode_error) and fails every later write. Set after the handshake, whose EOF stays eof-in-handshake.
            _binding.ignore_unexpected_eof(self.conn)
        if not self.is_server:
            if self.conn.get_protocol_version_name() == "TLSv1.3":
                # A TLS 1.3 server judges our certificate after we finished; if it rejects us it sends an alert and
                # closes, and our writes then fail with a bare EPIPE or reset. So the first few writes, before
                # anything was read, first look for that alert (one extra recv each), and a write that fails before
                # anything was read looks for it too (_send_failed): a client streaming into the closed connection
                # learns the reason, not "reset".
                self._probe_writes = _PROBED_WRITES
            else:
                # In TLS 1.2 the server's Finished came after its verdict on us: a failure on the first record is
                # about that record (a refused renegotiation, say), not a late rejection of the handshake.
                self._awaiting_first_record = False
        return None

    def _client_handshake_step(self, ssl: Any) -> Want | None:
        """A socket-bound client's handshake, through memory (gtls._detour): OpenSSL gets at most one read's worth of
        the server's bytes per step, and the stream waits (a checkpoint) between steps. Reading the socket itself,
        OpenSSL went on while bytes kept coming: a client skips every HelloRequest it receives before the server's
        Finished, so a server streaming them held one ``SSL_do_handshake`` call, and the whole event loop with its
        handshake deadline, for as long as it liked. The socket is bound again once the handshake is done and
        memory is empty both ways (a detour's usual end)."""
        detour = self._detour if self._detour is not None else self._start_detour()
        pulled = False
        fed = detour.unread()
        while True:
            _clear_errors()
            result = _SSL_do_handshake(ssl)
            if result != 1 and _SSL_get_error(ssl, result) != _ERR_WANT_READ:  # never WANT_WRITE: memory takes all
                detour.flush_quietly()  # our alert, if the socket still takes it: the failure is OpenSSL's reason
                self._handshake_failed(result)
            try:
                flushed = detour.flush()  # our flight
            except OSError as exc:
                if result == 1:
                    break  # the next read or write meets the broken connection
                raise self.eof_in_handshake(_as_syscall_error(exc)) from exc
            if result == 1:
                break
            if not flushed:
                return WANT_WRITE
            unread = detour.unread()
            if unread and unread < fed:  # it stopped after a record that carried nothing for it (a HelloRequest)
                fed = unread
                continue
            if pulled:
                return WANT_READ  # one read per step: the next comes after the stream's wait
            try:
                if not detour.pull():
                    return WANT_READ
            except OSError as exc:
                raise self.eof_in_handshake(_as_syscall_error(exc)) from exc
            pulled = True
            fed = detour.unread()
        self._end_detour_if_idle(detour)
        return None

    def _handshake_failed(self, result: int) -> NoReturn:
        try:
            _binding.raise_ssl_error(self.conn, self._ssl, result)
        except SSL.Error as exc:
            raise self._handshake_error(exc) from exc

    def _handshake_error(self, exc: SSL.Error) -> HandshakeError:
        if isinstance(exc, SSL.SysCallError | SSL.ZeroReturnError):
            return self.eof_in_handshake(exc)
        return self.compiled.handshake_failure(self.conn, exc, peer=self.peer)

    def recv(self, max_bytes: int) -> bytes | Want:
        """Up to ``max_bytes`` of plaintext; ``b""`` after the peer's ``close_notify``."""
        if max_bytes > _READ_CAP:
            max_bytes = _READ_CAP
        ssl = self._ssl
        if ssl is not None:
            if self._deferred_read_error is not None:
                deferred, self._deferred_read_error = self._deferred_read_error, None
                return self._recv_outcome(deferred)
            # A write, or our close_notify, waiting inside OpenSSL (a read must not write behind it: gtls._detour).
            waiting = self.write_pending or (self.close_notify_unsent and not self._shutdown_done)
            if self._detour is not None or (waiting and self._sock is not None):
                return self._recv_detoured(max_bytes)
            buf = _binding.read_buffer(max_bytes)
            _clear_errors()
            result = _SSL_read(ssl, buf, max_bytes)
            if result > 0:
                self._awaiting_first_record = False
                if result == _FULL_RECORD and max_bytes >= 2 * _FULL_RECORD:
                    result = self._gather(ssl, buf, result, max_bytes)
                return _binding.buffer_bytes(buf, result)
            code = _SSL_get_error(ssl, result)
            if code == _ERR_WANT_READ:
                return WANT_READ
            if code == _ERR_WANT_WRITE:
                # Our answer (a KeyUpdate) waits for the socket inside OpenSSL: the next SSL_write would fail on it.
                return self._recv_detoured(max_bytes) if self._sock is not None else WANT_WRITE
            if code == _ERR_ZERO_RETURN:
                self.received_close_notify = True
                return b""
            try:
                _binding.raise_ssl_error(self.conn, ssl, result)
            except SSL.Error as exc:
                return self._recv_outcome(exc)
        _clear_errors()
        try:
            data: bytes = self.conn.recv(max_bytes)
        except SSL.WantReadError:
            return WANT_READ
        except SSL.WantWriteError:
            return WANT_WRITE
        except SSL.Error as exc:
            return self._recv_outcome(exc)
        self._awaiting_first_record = False
        return data

    def _gather(self, ssl: Any, buf: Any, have: int, max_bytes: int) -> int:
        """A full record came in, so the peer is streaming: read the records already waiting into the same buffer.
        A bulk receiver then pays one round of Python calls per ``max_bytes`` instead of one per record; a short
        record, or nothing more to read (WANT_READ costs one ``read`` returning EAGAIN), ends it. Any other outcome
        is left for the next ``recv``, after the data already read (a failure is captured now, with its errno and
        OpenSSL's error queue, and reported then)."""
        while have + _FULL_RECORD <= max_bytes:
            result = _SSL_read(ssl, buf + have, max_bytes - have)
            if result > 0:
                have += result
                if result < _FULL_RECORD:
                    break
                continue
            code = _SSL_get_error(ssl, result)
            if code == _ERR_WANT_WRITE and self._detour is None and self._sock is not None:
                self._start_detour().flush_quietly()  # as in recv; the retry finishes our answer into memory
                continue
            if code not in (_ERR_WANT_READ, _ERR_WANT_WRITE, _ERR_ZERO_RETURN):  # ZERO_RETURN repeats by itself
                try:
                    _binding.raise_ssl_error(self.conn, ssl, result)
                except SSL.Error as exc:
                    self._deferred_read_error = exc
            break
        return have

    def _recv_outcome(self, exc: SSL.Error) -> bytes:
        if isinstance(exc, SSL.ZeroReturnError):
            self.received_close_notify = True
            return b""
        if isinstance(exc, SSL.SysCallError):
            if self.conn.get_shutdown() & SSL.RECEIVED_SHUTDOWN:
                # The peer's close_notify did arrive. OpenSSL 3.5 reports ZERO_RETURN only when it was the last
                # warning alert read: a TLS 1.3 peer that sends user_canceled first (Java's SSLSocket.close() does)
                # reads as an EOF without close_notify otherwise, and every clean end from it as truncated.
                self.received_close_notify = True
                return b""
            message, eof = _describe_syscall(exc)
            raise TransportFailed(message, eof=eof) from exc
        raise self._read_failure(exc) from exc

    def send(self, data: bytes | bytearray | memoryview, reader_waiting: bool = False) -> int | Want:
        """Encrypt and write some of ``data`` (at least one record); returns how much was consumed.

        ``reader_waiting``: another task waits to read. Then the early writes do not look for a late rejection: the
        look reads the socket, and a record it took into OpenSSL's buffer would leave the socket unreadable, so the
        waiting reader would never wake for it. That reader's own read reports the rejection instead."""
        if self._probe_writes and not self.write_pending and not reader_waiting:
            self._probe_writes = self._probe_writes - 1 if self._awaiting_first_record else 0
            rejection = self._peek_rejection()
            if rejection is not None:
                raise rejection
        ssl = self._ssl
        if self._detour is not None:
            return self._send_detoured(data)
        _clear_errors()
        if ssl is not None:
            with _binding.write_buffer(data) as buf:
                size = len(buf)
                if size > WRITE_CAP:
                    size = WRITE_CAP
                result = _SSL_write(ssl, buf, size)
            if result > 0:
                self.write_pending = False
                self._pending_write = None
                return result
            code = _SSL_get_error(ssl, result)
            if code == _ERR_WANT_WRITE:
                self.write_pending = True
                self._pending_write = (data, size)
                return WANT_WRITE
            if code == _ERR_WANT_READ:
                return WANT_READ
            try:
                _binding.raise_ssl_error(self.conn, ssl, result)
            except SSL.Error as exc:
                self._send_failed(exc)
        try:
            sent: int = self.conn.send(data[:WRITE_CAP] if len(data) > WRITE_CAP else data)
        except SSL.WantWriteError:
            self.write_pending = True
            return WANT_WRITE
        except SSL.WantReadError:
            return WANT_READ
        except SSL.Error as exc:
            self._send_failed(exc)
        self.write_pending = False
        return sent

    @property
    def write_unfinished(self) -> bool:
        """A write was given to OpenSSL and not yet reported done: the next ``send`` must repeat the same bytes."""
        return self.write_pending or (self._detour is not None and self._detour.completed is not None)

    def hold_unfinished(self, data: bytes) -> None:
        """``data`` (a copy of the unfinished write's bytes) is what the next ``send`` repeats: a detour started
        before then finishes the write from it, not from the caller's buffer, which may have changed since."""
        if self.write_pending:
            self._pending_write = (data, len(data))

    def drop_unfinished_write(self) -> None:
        """The stream ended under a write: let go of the caller's buffer, kept for a repeat that will not come."""
        self._pending_write = None

    # --- detour through memory (gtls._detour) ------------------------------------------------------------------

    def _start_detour(self) -> Detour:
        """Swap the socket BIO for memory BIOs and finish into memory the write OpenSSL holds, if any."""
        assert self._sock is not None and self._ssl is not None
        detour = self._detour = Detour(self._ssl, self._sock)
        pending, self._pending_write = self._pending_write, None
        if self.write_pending and pending is not None:
            self.write_pending = False
            data, size = pending
            detour.completed = self._write_into_memory(data, size)
        if self.sent_close_notify and not self._shutdown_done:  # our close_notify waits inside OpenSSL too
            _clear_errors()
            _SSL_shutdown(self._ssl)
            self._shutdown_done = True
        return detour

    def _write_into_memory(self, data: bytes | bytearray | memoryview, size: int) -> int:
        """SSL_write of ``size`` bytes of ``data`` while detoured: memory takes all of it; raises as ``send`` does."""
        _clear_errors()
        with _binding.write_buffer(data) as buf:
            result: int = _SSL_write(self._ssl, buf, size)
        if result <= 0:
            try:
                _binding.raise_ssl_error(self.conn, self._ssl, result)
            except SSL.Error as exc:
                self._send_failed(exc)
        return result

    def _end_detour_if_idle(self, detour: Detour) -> bool:
        """Bind the socket again when memory holds nothing either way; True if it was."""
        if detour.idle() and detour.end():
            self._detour = None
            return True
        return False

    def _recv_detoured(self, max_bytes: int) -> bytes | Want:
        detour = self._detour if self._detour is not None else self._start_detour()
        ssl = self._ssl
        buf = _binding.read_buffer(max_bytes)
        have = 0
        pulls = 0
        fed = detour.unread()
        while True:
            _clear_errors()
            result = _SSL_read(ssl, buf + have, max_bytes - have)
            detour.flush_quietly()  # our answer to what was read (a KeyUpdate, an alert), behind earlier output
            if result > 0:
                self._awaiting_first_record = False
                have += result
                if have + _FULL_RECORD <= max_bytes:
                    continue  # as _gather does: fill the caller's buffer from the records already here
                return _binding.buffer_bytes(buf, have)
            code = _SSL_get_error(ssl, result)  # never WANT_WRITE: memory takes every write
            if have:
                if code != _ERR_WANT_READ and code != _ERR_ZERO_RETURN:
                    try:
                        _binding.raise_ssl_error(self.conn, ssl, result)
                    except SSL.Error as exc:
                        self._deferred_read_error = exc  # after the data already read, as _gather does
                return _binding.buffer_bytes(buf, have)
            if code == _ERR_ZERO_RETURN:
                self.received_close_notify = True
                return b""
            if code != _ERR_WANT_READ:
                try:
                    _binding.raise_ssl_error(self.conn, ssl, result)
                except SSL.Error as exc:
                    return self._recv_outcome(exc)
            unread = detour.unread()
            if unread and unread < fed:  # a client's read stops after a record without data (stop_auto_retry)
                fed = unread
                continue
            if self._end_detour_if_idle(detour):
                # OpenSSL has read all it was given and nothing of ours waits: the read goes on from the socket (a
                # detour kept while both sides stream costs copies per byte).
                return self.recv(max_bytes)
            if pulls == _DETOUR_PULLS:
                return WANT_READ  # bytes that were no data so far: the stream's wait, then on
            try:
                if detour.pull():
                    pulls += 1
                    fed = detour.unread()
                    continue
            except OSError as exc:
                raise _transport_failure(exc) from exc
            return WANT_READ

    def _send_detoured(self, data: bytes | bytearray | memoryview) -> int | Want:
        detour = self._detour
        assert detour is not None
        try:
            if detour.completed is None:
                if not detour.flush():  # what was written before goes first; at most one write's worth waits
                    return WANT_WRITE
                size = len(data) if len(data) < WRITE_CAP else WRITE_CAP
                detour.completed = self._write_into_memory(data, size)
            if not detour.flush():
                return WANT_WRITE
        except OSError as exc:
            # As on the direct path: a read failure met first, or a TLS 1.3 server's late rejection, is the reason.
            self._send_failed(_as_syscall_error(exc))
        sent, detour.completed = detour.completed, None
        self._end_detour_if_idle(detour)
        return sent

    def _close_notify_detoured(self, detour: Detour, best_effort: bool) -> Want | None:
        if not self._shutdown_done:
            self._shutdown_done = True
            _clear_errors()
            result = _SSL_shutdown(self._ssl)
            if result < 0 and _SSL_get_error(self._ssl, result) != _ERR_WANT_READ and not best_effort:
                try:
                    _binding.raise_ssl_error(self.conn, self._ssl, result)
                except SSL.Error as exc:
                    raise TransportFailed(f"could not send close_notify: {_openssl_text(exc)}", eof=False) from exc
        try:
            return None if detour.flush() else WANT_WRITE
        except OSError as exc:
            if best_effort:
                return None
            raise _transport_failure(exc) from exc

    def _send_failed(self, exc: SSL.Error) -> NoReturn:
        deferred = self._deferred_read_error
        if deferred is not None:
            # The read side failed first (a bad record or the peer's alert, read ahead behind the data last
            # returned), which is why this write failed: report that, as the next read would have.
            self._deferred_read_error = None
            self._recv_outcome(deferred)
        if isinstance(exc, SSL.SysCallError):
            if self._awaiting_first_record:
                # The server's late rejection (TLS 1.3 client, see handshake): its alert, received before the
                # connection failed under our write, is still there to read, and it is the reason.
                rejection = self._peek_rejection()
                if isinstance(rejection, HandshakeError):  # OpenSSL 4.0 reads nothing here
                    raise rejection from exc
            message, eof = _describe_syscall(exc)
            raise TransportFailed(message, eof=eof) from exc
        if isinstance(exc, SSL.ZeroReturnError):
            raise TransportFailed("the peer closed TLS", eof=True) from exc
        raise self._tls_error(f"TLS error while sending: {_openssl_text(exc)}") from exc

    def close_notify(self, *, best_effort: bool = False) -> Want | None:
        """Send our ``close_notify``; does not wait for the peer's. ``WANT_WRITE``: the alert waits in OpenSSL for
        the socket to take it (the next call sends it).

        A failure raises ``TransportFailed``, or with ``best_effort`` returns None as if there were nothing more to
        send: a connection being closed anyway (the serving loop's end of every connection) learns nothing from
        it, and the peer that already went away is the common case (a client that sends its close_notify and
        closes without waiting for ours), so no exception is built for it."""
        self.sent_close_notify = True
        want = self._close_notify_step(best_effort)
        self.close_notify_unsent = want is not None
        return want

    def _close_notify_step(self, best_effort: bool) -> Want | None:
        ssl = self._ssl
        if self._detour is not None:
            return self._close_notify_detoured(self._detour, best_effort)
        if self._shutdown_done:
            return None  # written by an earlier call, through a detour since ended
        _clear_errors()
        if ssl is not None:
            result = _SSL_shutdown(ssl)
            if result >= 0:  # 0: ours is sent and the peer's not read yet; 1: both
                self._shutdown_done = True
                return None
            code = _SSL_get_error(ssl, result)
            if code == _ERR_WANT_WRITE:
                return WANT_WRITE
            if code == _ERR_WANT_READ or best_effort:  # WANT_READ is not expected for the first call
                return None
            try:
                _binding.raise_ssl_error(self.conn, ssl, result)
            except SSL.Error as exc:
                raise TransportFailed(f"could not send close_notify: {_openssl_text(exc)}", eof=False) from exc
        try:
            self.conn.shutdown()
        except SSL.WantWriteError:
            return WANT_WRITE
        except SSL.WantReadError:
            pass
        except SSL.Error as exc:
            if not best_effort:
                raise TransportFailed(f"could not send close_notify: {_openssl_text(exc)}", eof=False) from exc
        return None

    # --- memory-BIO plumbing -----------------------------------------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Hand bytes received from the transport to OpenSSL."""
        self.conn.bio_write(data)

    def feed_eof(self) -> None:
        """The transport reached end of file."""
        self.conn.bio_shutdown()

    def take_output(self) -> bytes:
        """Everything OpenSSL has written for the transport (``b""`` when nothing)."""
        chunks: list[bytes] = []
        while True:
            try:
                chunks.append(self.conn.bio_read(_BIO_CHUNK))
            except SSL.WantReadError:
                break
        return b"".join(chunks) if len(chunks) != 1 else chunks[0]

    # --- failures ----------------------------------------------------------------------------------------------

    def eof_in_handshake(self, exc: BaseException | None = None) -> HandshakeError:
        """The transport's own reason: closed or reset mid-handshake without an alert (spec §10), said of the side
        that closed (the peer of our role)."""
        peer = "the client" if self.is_server else "the server"
        if isinstance(exc, SSL.SysCallError):
            message, _ = _describe_syscall(exc, peer)
        elif exc is not None and isinstance(exc.__cause__, OSError) and exc.__cause__.errno in GONE_ERRNOS:
            # a transport stream's failure caused by a reset (memory-BIO driver over a socket)
            message = _reset_text(exc.__cause__.errno, peer)
        else:
            message = f"{peer} closed the connection"
        return HandshakeError(EOF_IN_HANDSHAKE, f"{message} during the handshake", peer=self.peer)

    def _peek_rejection(self) -> Exception | None:
        """The peer's fatal alert (a ``HandshakeError`` while no record was read yet) or another read failure if one
        is waiting, without consuming application data (SSL_peek)."""
        _clear_errors()
        try:
            self.conn.recv(1, socket.MSG_PEEK)
        except (SSL.WantReadError, SSL.WantWriteError, SSL.ZeroReturnError, SSL.SysCallError):
            return None
        except SSL.Error as exc:
            return self._read_failure(exc)
        return None

    def _read_failure(self, exc: SSL.Error) -> Exception:
        # Only the server's alert is its late rejection (spec §9); anything else on the first record (an unsolicited
        # post-handshake CertificateRequest, a bad record) is the peer's protocol error, as it is on any later one.
        if self._awaiting_first_record:
            rejection = self.compiled.late_rejection(self.conn, exc, peer=self.peer)
            if rejection is not None:
                return rejection
        failure = self._tls_error(f"TLS protocol error: {_openssl_text(exc)}")
        failure.__cause__ = exc  # raised later by a send's look for the rejection, too: classify_ending reads it
        return failure

    def _tls_error(self, message: str) -> TLSError:
        error = TLSError(message)
        error.tls_version = self.tls_version
        return error

    # --- negotiated parameters ---------------------------------------------------------------------------------

    @property
    def tls_version(self) -> TLSVersionName | None:
        if not self.handshake_done:
            return None
        return cast("TLSVersionName", self.conn.get_protocol_version_name())  # VERSION_RANGES allows no other

    @property
    def cipher(self) -> str | None:
        if not self.handshake_done:
            return None
        name: str | None = self.conn.get_cipher_name()
        return name

    @property
    def session_reused(self) -> bool:
        if not self.handshake_done:
            return False
        if self._reuse is not None:
            return not self._reuse.full
        return _binding.session_reused(self.conn)

    @property
    def server_name(self) -> str | None:
        name: bytes | None = self.conn.get_servername()
        return name.decode("ascii", "replace") if name else None

    @property
    def alpn_protocol(self) -> str | None:
        if not self.compiled.alpn_ids:  # nothing offered or accepted: no C call
            return None
        protocol: bytes = self.conn.get_alpn_proto_negotiated()
        return protocol.decode("ascii", "replace") if protocol else None

    @property
    def peer_certificate(self) -> x509.Certificate | None:
        der = self.peer_certificate_der
        return None if der is None else loaded_by_cryptography(der, "the peer's certificate")

    @property
    def peer_certificate_der(self) -> bytes | None:
        """The peer's leaf certificate as OpenSSL holds it, whether or not ``cryptography`` can read it."""
        cert = self.conn.get_peer_certificate()
        return None if cert is None else der_of(cert)

    @property
    def peer_chain_der(self) -> list[bytes]:
        """``sent_certificates``, in DER. A server that resumed a session from a ticket has only the client's leaf (a
        ticket keeps no chain); one resumed by TLS 1.2 session ID, the chain its session cache kept."""
        return [der_of(cert) for cert in sent_certificates(self.conn)]

    @property
    def peer_chain(self) -> list[x509.Certificate]:
        """``peer_chain_der``, loaded by ``cryptography``."""
        return [loaded_by_cryptography(der, "a certificate of the peer's chain") for der in self.peer_chain_der]


def der_of(cert: crypto.X509) -> bytes:
    return crypto.dump_certificate(crypto.FILETYPE_ASN1, cert)


def sent_certificates(conn: SSL.Connection) -> list[crypto.X509]:
    """The certificates the peer sent, leaf first, as OpenSSL holds them: nothing is read by ``cryptography``
    (OpenSSL omits the leaf from a server's list)."""
    chain = list(conn.get_peer_cert_chain() or [])
    leaf = conn.get_peer_certificate()
    if leaf is not None and (not chain or der_of(chain[0]) != der_of(leaf)):
        chain.insert(0, leaf)
    return chain


def loaded_by_cryptography(der: bytes, what: str, hint: str = "getpeercert() still reads the leaf") -> x509.Certificate:
    """``der`` loaded by ``cryptography``. OpenSSL accepts (and verifies, if asked) some peer certificates it cannot
    load: an X.509 version field of 3, a malformed extension OpenSSL does not read. Those raise one documented
    ``ValueError`` instead of each of cryptography's own (``InvalidVersion`` is not a ``ValueError``)."""
    try:
        return x509.load_der_x509_certificate(der)
    except (ValueError, x509.InvalidVersion) as exc:
        raise ValueError(f"{what}, accepted by OpenSSL, cannot be loaded by cryptography ({exc}); {hint}") from exc


def _openssl_text(exc: SSL.Error) -> str:
    """OpenSSL's error queue as ``reason (lib, func)`` text, or the exception's own words."""
    parts: list[str] = []
    for entry in exc.args[0] if exc.args and isinstance(exc.args[0], list) else []:
        if isinstance(entry, tuple) and len(entry) == 3:
            parts.append(str(entry[2]))
    if parts and not any(parts):
        return "OpenSSL gave no reason"  # not the queue's raw repr (a fatal-level close_notify has no text)
    return "; ".join(parts) or str(exc) or type(exc).__name__
