"""A socket-bound connection's I/O moved through memory while a read must run beside an unfinished write.

OpenSSL answers a TLS 1.3 KeyUpdate that asks for ours from inside ``SSL_read``. When the socket is full, a sending
task's ``SSL_write`` may be waiting in OpenSSL with part of a record unwritten, and writing the answer then fails
the connection for good ("bad length", OpenSSL 3.5); a read's own answer left waiting for the socket fails the next
``SSL_write`` the same way. Memory BIOs take everything, so nothing ever waits inside OpenSSL there: the memory-BIO
driver never meets this.

So before such a read, the engine swaps the socket BIO for two memory BIOs and finishes the waiting write into
memory at once (``Detour``). From then on gtls moves the bytes between socket and OpenSSL itself, oldest first, as
the memory-BIO driver does, and binds the socket again as soon as both directions are empty: bulk senders and idle
connections keep the socket-bound path, and a connection pays for the detour only while one is needed.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Final

from . import _binding

if TYPE_CHECKING:
    import socket

    import trio

#: Bytes read from the socket per call while detoured (four full records and their overhead).
_RAW_READ: Final = 65536 + 1024


class Detour:
    """The memory BIOs in place of one connection's socket BIO, and what they still hold for the socket."""

    __slots__ = ("_ssl", "_sock", "_into", "_out", "_unsent", "completed", "_send_failure")

    def __init__(self, ssl: Any, sock: socket.socket | trio.socket.SocketType) -> None:
        self._ssl = ssl
        self._sock = sock
        self._into, self._out = _binding.bind_memory(ssl)
        #: Bytes OpenSSL wrote that the socket has not taken yet.
        self._unsent = bytearray()
        #: An ``SSL_write`` that completed into memory: how much it consumed, reported to its caller once all of its
        #: bytes are on the socket (a ``send_all`` returns when the kernel holds its data, as on the direct path).
        self.completed: int | None = None
        #: A send failure a read swallowed (``flush_quietly``): the socket reports a reset once, and the read after
        #: it would see a plain EOF.
        self._send_failure: OSError | None = None

    def pull(self) -> bool:
        """Move bytes waiting on the socket into OpenSSL: True if any came (or the peer's EOF), False if none
        (``EAGAIN``). Raises ``OSError`` for a reset."""
        try:
            data = os.read(self._sock.fileno(), _RAW_READ)
        except BlockingIOError:
            return False
        if data:
            _binding.bio_feed(self._into, data)
        elif self._send_failure is not None:
            raise self._send_failure  # the reset a quiet flush took: not the peer's clean EOF
        else:
            _binding.bio_eof(self._into)
        return True

    def unread(self) -> int:
        """Bytes fed to OpenSSL that it has not read yet."""
        return _binding.bio_pending(self._into)

    def flush(self) -> bool:
        """Send what OpenSSL wrote, oldest first, as far as the socket takes it: True once nothing is left. Raises
        ``OSError`` for a broken connection."""
        written = _binding.bio_take(self._out)
        if written:
            self._unsent += written
        unsent = self._unsent
        fd = self._sock.fileno()
        while unsent:
            try:
                sent = os.write(fd, unsent)
            except BlockingIOError:
                return False
            del unsent[:sent]
        return True

    def flush_quietly(self) -> None:
        """``flush`` from a read: a broken socket is the read's to report (``pull`` raises what was swallowed)."""
        try:
            self.flush()
        except OSError as exc:
            self._send_failure = exc

    def idle(self) -> bool:
        """Nothing in memory either way and no write to report: the socket can be bound again."""
        return (
            self.completed is None
            and not self._unsent
            and not _binding.bio_pending(self._out)
            and not _binding.bio_pending(self._into)
        )

    def end(self) -> bool:
        """Bind the socket again (the memory BIOs are freed); False if OpenSSL could not, and the detour goes on."""
        return _binding.bind_socket(self._ssl, self._sock.fileno())
