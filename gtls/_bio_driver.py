"""Memory-BIO driver: moves ciphertext between the engine's memory buffers and any ``trio.abc.Stream``.

Ordering rules (the same ones trio's SSLStream relies on):

* ciphertext reaches the transport in the order OpenSSL produced it, even when a sender and a receiver both have
  output: it is sent under a strictly FIFO lock, and output taken while another task holds the lock waits in one
  buffer that the next holder sends first, so a task cancelled while it waits for the lock loses nothing;
* only one task reads the transport at a time; a task that waited for that lock while another one fed fresh bytes
  retries its step before reading again, so it never blocks on data that is already buffered;
* if sending ciphertext fails or is cancelled after it left the engine, the record stream has a hole: the driver
  reports itself broken and the stream refuses further use.
"""

from __future__ import annotations

from typing import Final

import trio

from .engine import WANT_WRITE, TLSEngine, Want

RECEIVE_SIZE: Final = 65536


class BioDriver:
    __slots__ = (
        "engine", "transport", "broken", "failure", "ended", "_send_lock", "_recv_lock", "_recv_count", "_delayed",
        "_taken",
    )

    def __init__(self, engine: TLSEngine, transport: trio.abc.Stream) -> None:
        self.engine = engine
        self.transport = transport
        self.broken = False
        #: What broke it: the transport's error, or the cancellation that cut a record short.
        self.failure: BaseException | None = None
        #: The stream ended (``wake_all``): a send failing from now on is not recorded (see ``wake_all``).
        self.ended = False
        self._send_lock = trio.StrictFIFOLock()
        self._recv_lock = trio.Lock()
        self._recv_count = 0
        self._delayed = b""
        #: Output taken out of the engine by tasks waiting for the send lock, oldest first.
        self._taken = b""

    async def _push(self) -> bool:
        """Send whatever the engine produced; True when this task sent something (which checkpointed).

        With the send lock free, the output is taken and sent under it at once (no checkpoint before the send).
        With the lock held by a task stuck sending, output taken now waits in ``_taken`` for the lock: a task
        cancelled while it waits loses nothing (whoever holds the lock next sends it first, as trio's SSLStream
        leaves output in OpenSSL until it holds its lock); and a task with nothing to send does not wait at all (a
        receiver must never queue behind a stuck sender)."""
        lock = self._send_lock
        if not lock.locked():
            lock.acquire_nowait()
            try:
                return await self._send_output()
            finally:
                lock.release()
        data = self.engine.take_output()
        if not data:
            return False
        self._taken += data
        async with lock:
            return await self._send_output()

    async def _send_output(self) -> bool:
        """Holding the send lock: send, oldest first, the held-back tickets, output taken by waiting tasks and what
        the engine has now."""
        data = self._taken + self.engine.take_output()
        self._taken = b""
        if not data:
            return False
        if self._delayed:  # held-back session tickets go out with our next real output, never on their own
            data = self._delayed + data
            self._delayed = b""
        try:
            await self.transport.send_all(data)
        except BaseException as exc:
            self.broken = True
            if not self.ended:
                self.failure = exc
            raise
        return True

    async def wait(self, want: Want) -> None:
        await self._push()
        if want is WANT_WRITE:  # memory BIOs always accept writes; nothing to wait for
            return
        count = self._recv_count
        async with self._recv_lock:
            if count != self._recv_count:
                return  # another task fed the engine while we queued: retry the step first
            data = await self.transport.receive_some(RECEIVE_SIZE)
            self._recv_count += 1
            if data:
                self.engine.feed(data)
            else:
                self.engine.feed_eof()

    async def settle(self, waited: bool) -> None:
        """After a successful step: send what it produced; checkpoint if nothing did yet."""
        if not await self._push() and not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def settle_handshake(self, waited: bool) -> None:
        """After the handshake. A TLS 1.3 server's last output is its session tickets, which the client need not
        read yet: sending them now could block forever on a transport without buffering (trio's lockstep
        streams), so they ride along with the next send instead, as in trio's SSLStream."""
        if self.engine.is_server and self.engine.tls_version == "TLSv1.3":
            self._delayed += self.engine.take_output()
            if not waited:
                await trio.lowlevel.cancel_shielded_checkpoint()
            return
        await self.settle(waited)

    async def flush_best_effort(self) -> None:
        """After a failed handshake: deliver our alert if the transport takes it; never raise for it."""
        try:
            with trio.move_on_after(1.0):
                await self._push()
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
            pass

    async def wait_send_ready(self) -> None:
        async with self._send_lock:
            await self.transport.wait_send_all_might_not_block()

    def wake_all(self) -> None:
        """The stream ended (closed, or broken by a reaper); blocked transport calls are woken by closing the
        transport itself. The send failing then must not be recorded: ``failure`` is read only while the stream is
        usable, and its traceback runs through frames holding the stream, which holds this driver: a cycle that
        kept a connection closed under its waiting send alive until the collector's next pass (audit 46)."""
        self.ended = True
