"""Socket-bound driver: OpenSSL reads and writes the TCP socket itself; we only wait for readiness.

This is the fast path for TCP: no memory-BIO copies, no extra Python calls per record, and an event-loop switch
only when OpenSSL actually reports ``WANT_READ``/``WANT_WRITE``.

trio allows one task per direction to wait on a socket. The receive side can need the socket *writable* (a TLS 1.3
KeyUpdate reply) while a sender already waits for that, so a second waiter for the same direction parks on a
ParkingLot and is woken when the first waiter wakes; both then retry their step, which is always safe.
"""

from __future__ import annotations

import socket

import trio

from .engine import WANT_READ, Want

wait_readable = trio.lowlevel.wait_readable


class SocketDriver:
    __slots__ = ("sock", "_read_waiting", "_write_waiting", "_read_lot", "_write_lot")

    def __init__(self, sock: socket.socket | trio.socket.SocketType) -> None:
        self.sock = sock
        self._read_waiting = False
        self._write_waiting = False
        self._read_lot: trio.lowlevel.ParkingLot | None = None
        self._write_lot: trio.lowlevel.ParkingLot | None = None

    def claim_read(self) -> bool:
        """Take the socket's read wait if no task holds it. The caller then awaits ``wait_readable(driver.sock)``
        in its own frame and calls ``release_read()`` after it, however it ends: an idle connection sits in that
        wait, and a coroutine frame of ours around it would cost ~200 bytes per connection and a call per wait.
        False: another task waits for readability; use ``wait`` (which parks behind it)."""
        if self._read_waiting:
            return False
        self._read_waiting = True
        return True

    def release_read(self) -> None:
        self._read_waiting = False
        if self._read_lot is not None:
            self._read_lot.unpark_all()

    async def wait(self, want: Want) -> None:
        if want is WANT_READ:
            if not self.claim_read():
                if self._read_lot is None:
                    self._read_lot = trio.lowlevel.ParkingLot()
                await self._read_lot.park()
                return
            try:
                await wait_readable(self.sock)
            finally:
                self.release_read()
        else:
            await self._wait_writable()

    async def _wait_writable(self) -> None:
        if self._write_waiting:
            if self._write_lot is None:
                self._write_lot = trio.lowlevel.ParkingLot()
            await self._write_lot.park()
            return
        self._write_waiting = True
        try:
            await trio.lowlevel.wait_writable(self.sock)
        finally:
            self._write_waiting = False
            if self._write_lot is not None:
                self._write_lot.unpark_all()

    async def settle(self, waited: bool) -> None:
        """After a successful step: OpenSSL already wrote to the socket. If the step never waited, let other tasks
        run now (every trio operation checkpoints); a wait already was that checkpoint, as in trio's sockets."""
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def settle_handshake(self, waited: bool) -> None:
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def flush_best_effort(self) -> None:
        """After a failed handshake: OpenSSL already wrote its alert to the socket."""

    async def wait_send_ready(self) -> None:
        await self._wait_writable()

    @property
    def waiting(self) -> bool:
        """True while a task waits on the socket through this driver (or is parked behind one that does)."""
        return self._read_waiting or self._write_waiting

    def wake_all(self) -> None:
        """The stream is closing: parked waiters re-check its state."""
        for lot in (self._read_lot, self._write_lot):
            if lot is not None:
                lot.unpark_all()
