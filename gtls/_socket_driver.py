"""Socket-bound driver: OpenSSL reads and writes the TCP socket itself; we only wait for readiness.

This is the fast path for TCP: no memory-BIO copies, no extra Python calls per record, and an event-loop switch
only when OpenSSL actually reports ``WANT_READ``/``WANT_WRITE``.

Read waits go through the server's edge-triggered poller (``gtls._poller``) for the serving loop's connections
(until someone asks for ``transport_stream``), else through ``trio.lowlevel.wait_readable``; write waits always go
through trio. Before a serving-loop connection has a task, the poller calls the loop back instead of waking one
(``watch_untasked``): the loop advances the handshake there.

trio allows one task per direction to wait on a socket. The receive side can need the socket *writable* (a TLS 1.3
KeyUpdate reply) while a sender already waits for that, so a second waiter for the same direction parks on a
ParkingLot and is woken when the first waiter wakes; both then retry their step, which is always safe.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Awaitable, Callable

import outcome
import trio

from ._poller import Poller, Readiness
from .engine import WANT_READ, Want

wait_readable = trio.lowlevel.wait_readable
_wait_task_rescheduled = trio.lowlevel.wait_task_rescheduled
_current_task = trio.lowlevel.current_task
_thread_id = threading.get_ident
_SUCCEEDED = trio.lowlevel.Abort.SUCCEEDED
_UNREGISTERED = Readiness.UNREGISTERED
_WAITING_FOR_EDGE = Readiness.WAITING_FOR_EDGE
_SEEN = Readiness.SEEN


class SocketDriver:
    __slots__ = (
        "sock", "_read_waiting", "_write_waiting", "_read_lot", "_write_lot",
        "_poller", "_fd", "_readiness", "_reader", "_untasked",
    )

    def __init__(self, sock: socket.socket | trio.socket.SocketType, poller: Poller | None = None) -> None:
        self.sock = sock
        self._read_waiting = False
        self._write_waiting = False
        self._read_lot: trio.lowlevel.ParkingLot | None = None
        self._write_lot: trio.lowlevel.ParkingLot | None = None
        #: The server's poller for read waits; None: trio's wait_readable.
        self._poller = poller
        self._fd = -1
        self._readiness = _UNREGISTERED
        #: The task parked in the poller for readability.
        self._reader: trio.lowlevel.Task | None = None
        #: Called instead of waking a task while the serving loop advances a handshake that has no task yet
        #: (``watch_untasked``).
        self._untasked: Callable[[], None] | None = None

    def claim_read(self) -> bool:
        """Take the socket's read wait if no task holds it. The caller then awaits ``readable()`` in its own frame
        and calls ``release_read()`` after it, however it ends: an idle connection sits in that wait, and a
        coroutine frame of ours around it would cost ~200 bytes per connection and a call per wait.
        False: another task waits for readability; use ``wait`` (which parks behind it)."""
        if self._read_waiting:
            return False
        self._read_waiting = True
        return True

    def release_read(self) -> None:
        self._read_waiting = False
        self._reader = None
        if self._read_lot is not None:
            self._read_lot.unpark_all()

    def readable(self) -> Awaitable[object]:
        """What to await, holding the read claim, until the socket may be readable (a plain function returning the
        awaitable: no frame of its own stays alive during the wait)."""
        poller = self._poller
        if poller is None:
            return wait_readable(self.sock)
        if _thread_id() != poller.thread:
            # The stream was handed to another trio.run (a worker thread's): the poller's run cannot wake a task of
            # that one (trio would fail inside the server). From here on, trio's waits; no reader is parked here,
            # since this task holds the read claim.
            self.leave_poller()
            return wait_readable(self.sock)
        readiness = self._readiness
        if readiness is _SEEN:  # an edge came while nobody waited: retry now, after a checkpoint
            self._readiness = _WAITING_FOR_EDGE
            return trio.lowlevel.checkpoint()
        if readiness is _UNREGISTERED and not self._join(poller):
            return wait_readable(self.sock)
        self._reader = _current_task()
        return _wait_task_rescheduled(self._abort_read)

    def _join(self, poller: Poller) -> bool:
        """Add the socket to ``poller``'s set; False (and trio's waits from now on) if it cannot be."""
        fd = self.sock.fileno()
        try:
            added = poller.add(fd, self)
        except OSError:  # closed under us, or not pollable: trio reports it
            added = False
        if not added:
            self._poller = None
            return False
        self._fd = fd
        self._readiness = _WAITING_FOR_EDGE
        return True

    def watch_untasked(self, callback: Callable[[], None]) -> bool:
        """Call ``callback`` (from the poller's task) when the socket may be readable, or when the poller lets go of
        it (the socket is closing, or the server stopped): the serving loop advances a handshake this way before
        the connection has a task of its own. False if the poller cannot watch the socket; the caller then starts
        the task at once. ``callback`` ends the watch with ``end_untasked`` before it starts the task."""
        poller = self._poller
        if poller is None or (self._readiness is _UNREGISTERED and not self._join(poller)):
            return False
        self._untasked = callback
        return True

    def end_untasked(self) -> None:
        """The watch is over: the connection's task takes the socket's waits from here (and the callback, which
        holds the stream, is let go)."""
        self._untasked = None

    def _abort_read(self, _raise_cancel: object) -> trio.lowlevel.Abort:
        self._reader = None
        return _SUCCEEDED

    def on_readable(self) -> None:
        """The poller saw an edge: wake the reader, or remember it for the next wait."""
        task = self._reader
        if task is None:
            untasked = self._untasked
            if untasked is not None:
                untasked()
                return
            self._readiness = _SEEN
        else:
            self._reader = None
            trio.lowlevel.reschedule(task)

    def leave_poller(self) -> None:
        """Others may now wait on the socket through trio (``transport_stream`` was handed out): from here on every
        wait goes through trio. A reader parked in the poller wakes and retries its step, then waits through trio."""
        self._detach(unregister=True, error=None)

    def poller_stopped(self) -> None:
        """The server stopped, and its poller with it: a reader parked there retries, then waits through trio."""
        self._detach(unregister=False, error=None)

    def closing(self) -> None:
        """The socket is about to be closed: stop watching it; a reader parked in the poller gets
        ``ClosedResourceError``, as trio's ``notify_closing`` gives its waiters."""
        self._detach(unregister=False, error=trio.ClosedResourceError("another task closed this socket"))

    def _detach(self, *, unregister: bool, error: BaseException | None) -> None:
        """Stop using the poller; ``unregister`` takes the still-open socket out of its set (a closing socket leaves
        it by itself). A reader parked there is woken to retry (``error`` None) or with ``error``."""
        poller = self._poller
        if poller is None:
            return
        self._poller = None
        if self._readiness is not _UNREGISTERED:
            if unregister:
                poller.remove(self._fd)
            else:
                poller.forget(self._fd)
            self._readiness = _UNREGISTERED
        untasked = self._untasked
        if untasked is not None:  # no task to wake yet: its owner starts one, which finds the stream's state
            untasked()
        self._wake_reader(error)

    def _wake_reader(self, error: BaseException | None) -> None:
        """Wake the reader parked in the poller, if any: to retry its step (``None``), or with ``error``."""
        task = self._reader
        if task is not None:
            self._reader = None
            if error is None:
                trio.lowlevel.reschedule(task)
            else:
                trio.lowlevel.reschedule(task, outcome.Error(error))

    async def wait(self, want: Want) -> None:
        if want is WANT_READ:
            if not self.claim_read():
                if self._read_lot is None:
                    self._read_lot = trio.lowlevel.ParkingLot()
                await self._read_lot.park()
                return
            try:
                await self.readable()
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
        """True while a task waits on the socket through trio (or is parked behind one that does): closing the
        socket must then tell trio (``notify_closing``). Poller waits are woken by ``closing``."""
        return (self._read_waiting and self._poller is None) or self._write_waiting

    def wake_all(self) -> None:
        """The stream is closing: parked waiters re-check its state."""
        for lot in (self._read_lot, self._write_lot):
            if lot is not None:
                lot.unpark_all()
