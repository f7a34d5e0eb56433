"""The socket-bound engine's detour through memory (gtls/_detour.py), step by step against a Python-ssl peer.

The engine is driven without trio, one step at a time, in orders the stream allows (a receive while a send waits
for the socket, a cancelled send repeated, ``send_eof``), so that each interleaving is reached every run. The peer is
Python's ``ssl`` over memory BIOs on the other end of a real socket.
"""

from __future__ import annotations

import contextlib
import fcntl
import socket
import ssl
import struct
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from gtls import TLSError, TLSStream, classify_ending
from gtls.engine import WANT_READ, WANT_WRITE, WRITE_CAP, TLSEngine, TransportFailed
from gtls.stream import compile_settings
from tests.peers import PKI, python_context, write_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return write_pki(tmp_path_factory.mktemp("detour-pki"))


class Peer:
    """A Python-ssl TLS client over memory BIOs on a non-blocking socket."""

    def __init__(self, sock: socket.socket, ca: Path, version: str) -> None:
        context = python_context(server=False, ca=ca, version=version)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        self.sock = sock
        self.unsent = b""
        self.got = bytearray()
        self.error: ssl.SSLError | None = None

    def push(self) -> None:
        self.unsent += self.outgoing.read()
        while self.unsent:
            try:
                self.unsent = self.unsent[self.sock.send(self.unsent):]
            except BlockingIOError:
                return

    def pull(self) -> None:
        for _ in range(10_000):  # bounded: until the socket is empty
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                break
            if not data:
                self.incoming.write_eof()
                break
            self.incoming.write(data)
        try:
            while chunk := self.obj.read(65536):
                self.got += chunk
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as exc:
            self.error = exc
        self.push()

    def write(self, data: bytes) -> None:
        self.obj.write(data)
        self.push()


def connected(pki: PKI, version: str = "1.3", *, tcp: bool = False
              ) -> tuple[TLSEngine, Peer, socket.socket, socket.socket]:
    """A handshaken server engine on one end of a Unix socket pair (or loopback TCP) with a small send buffer, and
    its peer."""
    if tcp:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            theirs = socket.create_connection(listener.getsockname())
            ours, _ = listener.accept()
    else:
        ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    ours.setblocking(False)
    theirs.setblocking(False)
    sec = {"1.3": "TLSv13", "1.2": "TLSv12"}[version]
    engine = TLSEngine(compile_settings(pki.server_options(sec_protocol=sec), "server"), ours, peer="unix")
    peer = Peer(theirs, pki.ca_file, version)
    for _ in range(200):  # bounded handshake in lockstep
        try:
            peer.obj.do_handshake()
            peer_done = True
        except ssl.SSLWantReadError:
            peer_done = False
        peer.push()
        step = engine.handshake()
        peer.pull()
        if step is None and peer_done:
            break
        time.sleep(0.001)
    else:
        raise AssertionError("the handshake did not finish")
    time.sleep(0.01)
    peer.pull()  # the server's session tickets
    return engine, peer, ours, theirs


def unsent_bytes(sock: socket.socket) -> int:
    """What the socket's send queue holds (Linux SIOCOUTQ)."""
    return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), 0x5411, b"\0" * 4))[0])


def fill(engine: TLSEngine, chunk: memoryview) -> None:
    """Send until OpenSSL holds a partly written record (``WANT_WRITE``)."""
    for _ in range(10_000):
        if engine.send(chunk) is WANT_WRITE:
            return
    raise AssertionError("the socket never filled")


def repeat(engine: TLSEngine, peer: Peer, unfinished: bytes) -> None:
    """Send ``unfinished`` again, as the stream's next send does, until it is all taken; the peer reads meanwhile."""
    offset = 0
    for _ in range(10_000):  # bounded
        step = engine.send(memoryview(unfinished)[offset:])
        if isinstance(step, int):
            offset += step
            if offset == len(unfinished):
                return
        else:
            peer.pull()
            time.sleep(0.001)
    raise AssertionError("the repeat never finished")  # pragma: no cover


def test_send_eof_after_a_detour_keeps_what_the_peer_sends_next(pki: PKI) -> None:
    """TLS 1.3 half-close while detoured: ``close_notify`` put in memory waits for the socket, a read meanwhile
    empties memory and binds the socket again, and ``send_eof``'s retry then ran SSL_shutdown a second time, which
    reads on for the peer's close_notify: the peer's next data was dropped and the stream failed (review)."""
    engine, peer, ours, theirs = connected(pki)
    try:
        chunk = memoryview(b"S" * 65536)
        fill(engine, chunk)
        unfinished = bytes(chunk[:WRITE_CAP])
        engine.hold_unfinished(unfinished)  # its send_all was cancelled
        for letter in b"ABCD":
            peer.write(bytes([letter]) * 16384)
        time.sleep(0.01)
        assert engine.recv(65536)[:1] == b"A"  # a read beside the waiting write: the detour starts
        repeat(engine, peer, unfinished)  # send_eof repeats the unfinished write first; the peer reads meanwhile
        sndbuf = ours.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        for _ in range(10_000):  # short sends until the socket is just full, the peer not reading
            assert engine.send(b"m" * 100) == 100
            if unsent_bytes(ours) >= sndbuf:
                break
        assert engine.close_notify() is WANT_WRITE  # our close_notify waits in memory
        for _ in range(50):  # the reader goes on while the peer reads everything: memory empties
            peer.pull()
            time.sleep(0.002)
            if engine.recv(65536) is WANT_READ and engine._detour is None:
                break
        peer.write(b"E" * 100)  # half-close: the peer goes on sending
        time.sleep(0.01)
        assert engine.close_notify() is None  # send_eof's retry after its wait for the socket
        assert engine.recv(65536) == b"E" * 100
        peer.pull()
        assert peer.error is None
    finally:
        ours.close()
        theirs.close()


@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_a_reset_while_detoured_is_a_reset(pki: PKI, version: str) -> None:
    """A read flushes our output quietly (the read reports a broken connection): the flush took the socket's
    ECONNRESET, and the next read saw a plain EOF, so the ending read ``truncated``, not ``reset`` (review)."""
    engine, peer, ours, theirs = connected(pki, version, tcp=True)
    try:
        fill(engine, memoryview(b"S" * 65536))
        peer.write(b"x" * 10)
        time.sleep(0.01)
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        theirs.close()  # a reset, with our write still waiting
        time.sleep(0.01)
        received = []
        with pytest.raises(TransportFailed) as caught:
            for _ in range(5):
                received.append(engine.recv(65536))  # the first read detours; its flush meets the reset
        assert received[:1] == [b"x" * 10]
        assert not caught.value.eof and classify_ending(caught.value).word == "reset", caught.value
    finally:
        ours.close()
        theirs.close()


def _peer_handshake(peer: Peer) -> None:
    for _ in range(400):  # bounded, beside the stream's own handshake
        try:
            peer.obj.do_handshake()
            peer.push()
            return
        except ssl.SSLWantReadError:
            peer.push()
            time.sleep(0.005)
            peer.pull()
    raise AssertionError("the peer's handshake did not finish")


@contextlib.asynccontextmanager
async def small_socket_stream(pki: PKI) -> AsyncIterator[tuple[TLSStream, Peer, socket.socket]]:
    """A TLS 1.3 server stream over our end of a socket pair with a 16 KiB send buffer, its handshake done with a
    Python-ssl ``Peer`` on the other end, which reads only when told: (stream, peer, our socket)."""
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    theirs.setblocking(False)
    stream = TLSStream(trio.SocketStream(trio.socket.from_stdlib_socket(ours)),
                       compile_settings(pki.server_options(sec_protocol="TLSv13"), "server"))
    peer = Peer(theirs, pki.ca_file, "1.3")
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, _peer_handshake, peer)
            await stream.do_handshake()
        yield stream, peer, ours
    finally:
        await trio.aclose_forcefully(stream)
        theirs.close()


async def fill_socket(stream: TLSStream, ours: socket.socket) -> int:
    """Whole 100-byte sends of ``m`` until the socket is just full, the peer not reading: how many bytes."""
    sndbuf = ours.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    sent = 0
    for _ in range(10_000):  # bounded: far more than the buffer holds
        await stream.send_all(b"m" * 100)
        sent += 100
        if unsent_bytes(ours) >= sndbuf:
            break
    return sent


def _read_to_close_notify(peer: Peer, seconds: float) -> bool:
    """Read everything the stream sent: True once its close_notify arrived, False if it did not within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peer.pull()  # reads all the data there is
        try:
            if peer.obj.read(1) == b"":  # Python's ssl: a clean close_notify reads as b""
                return True
        except ssl.SSLWantReadError:
            pass
        time.sleep(0.005)
    return False


async def finish_while_the_peer_reads(peer: Peer, finish: Callable[[], Awaitable[None]]) -> bool:
    """Run ``finish`` (within 10 s) while the peer reads, in a thread, up to our close_notify: whether it came."""
    results: list[bool] = []

    async def read_it() -> None:
        results.append(await trio.to_thread.run_sync(_read_to_close_notify, peer, 5.0))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_it)
        with trio.fail_after(10):
            await finish()
    return results == [True]


@pytest.mark.parametrize("finish", ["send_eof", "aclose"])
async def test_a_send_eof_cancelled_while_its_alert_waits_is_finished_later(pki: PKI, finish: str) -> None:
    """``send_eof`` cancelled while its close_notify waited for a full socket returned from its repeat at once
    (``close_notify`` was marked sent before anything was written), and ``aclose`` then sent nothing either: the
    peer of a ``send_eof`` that returned never got the alert (stress run, seed 201788)."""
    async with small_socket_stream(pki) as (stream, peer, ours):
        sent = await fill_socket(stream, ours)
        with trio.move_on_after(0.2) as waited:
            await stream.send_eof()
        assert waited.cancelled_caught, "the close_notify never waited: nothing was tested"
        # the repeat, or the close, finishes the alert as the peer reads
        alert = await finish_while_the_peer_reads(peer, stream.send_eof if finish == "send_eof" else stream.aclose)
        assert alert and peer.got.count(b"m") == sent


def test_a_send_failing_while_detoured_reports_the_read_failure_met_first(pki: PKI) -> None:
    """A send that fails while detoured reports what the direct path reports: a read failure met first (read ahead
    behind the data last returned) is the reason, not the broken pipe it caused (audit 46, mutant e28)."""
    engine, peer, ours, theirs = connected(pki)
    try:
        chunk = memoryview(b"S" * 65536)
        fill(engine, chunk)
        peer.write(b"x" * 10)
        theirs.send(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)  # then a record that does not decrypt
        time.sleep(0.01)
        assert engine.recv(65536) == b"x" * 10  # the detour starts; the bad record waits behind the data
        assert engine._detour is not None and engine._detour._unsent, "nothing waits for the socket: nothing tested"
        theirs.close()  # the peer is gone: the send's flush fails with EPIPE
        with pytest.raises(TLSError) as caught:
            engine.send(chunk)  # the cancelled send's repeat
        assert "bad record mac" in str(caught.value), caught.value
        assert classify_ending(caught.value).word != "reset", caught.value
    finally:
        ours.close()
        theirs.close()


def _read_until(peer: Peer, letter: int, count: int, seconds: float) -> bool:
    """Read until ``count`` bytes ``letter`` arrived (True), or for at most ``seconds`` (False), a few KiB of the
    socket at a time: little of what follows is read before it stops."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            data = peer.sock.recv(4096)
        except BlockingIOError:
            time.sleep(0.001)
            continue
        if not data:
            return False
        peer.incoming.write(data)
        try:
            while chunk := peer.obj.read(65536):
                peer.got += chunk
        except ssl.SSLWantReadError:
            pass
        if peer.got.count(letter) >= count:
            return True
    return False


async def test_a_send_cancelled_while_detoured_is_repeated_not_lost(pki: PKI) -> None:
    """A send cancelled while detoured has completed into memory: its count is reported to the repeat, which its
    bytes identify. If the stream did not keep them (``write_unfinished`` False), the next ``send_all`` was told
    that its own data was sent and the peer never got it (audit 46, mutant e8)."""
    async with small_socket_stream(pki) as (stream, peer, ours):
        engine = stream._engine
        sent = await fill_socket(stream, ours)
        async with trio.open_nursery() as nursery:  # a send cancelled while OpenSSL holds its record
            nursery.start_soon(stream.send_all, b"A" * 65536)
            await trio.testing.wait_all_tasks_blocked(0.01)
            nursery.cancel_scope.cancel()
        assert engine.write_pending
        peer.write(b"x" * 10)
        peer.write(b"y" * 10)  # a second record: memory keeps it, so the detour outlives the repeat below
        with trio.fail_after(5):
            assert await stream.receive_some(5) == b"x" * 5  # the detour starts
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def send_second() -> None:
                with scope:
                    await stream.send_all(b"B" * 100_000)

            nursery.start_soon(send_second)
            # The peer reads the repeated A's, then stops: the B's written into memory wait for the socket.
            assert await trio.to_thread.run_sync(_read_until, peer, ord("A"), 65536, 5.0)
            await trio.testing.wait_all_tasks_blocked(0.01)
            assert engine._detour is not None and engine._detour.completed is not None, "nothing tested"
            scope.cancel()

        async def third_and_close() -> None:
            await stream.send_all(b"third")
            await stream.aclose()

        alert = await finish_while_the_peer_reads(peer, third_and_close)
        got = bytes(peer.got)
        head = b"m" * sent + b"A" * 65536
        assert alert and got.startswith(head) and got.endswith(b"third"), got[-40:]
        assert got[len(head):-5] == b"B" * (len(got) - len(head) - 5)  # a prefix of the cancelled send


def test_a_read_beside_our_waiting_close_notify_keeps_the_alert(pki: PKI) -> None:
    """Our close_notify waits for a full socket and a read runs beside it: the read detours (the alert goes into
    memory) and finds nothing. The detour must not end while the alert is still unsent in gtls's hands: the memory
    BIOs were freed with it and the retry, seeing SSL_shutdown done, sent nothing (audit 46, mutant d8)."""
    engine, peer, ours, theirs = connected(pki)
    try:
        sndbuf = ours.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        sent = 0
        for _ in range(10_000):  # short sends until the socket is just full, the peer not reading
            assert engine.send(b"m" * 100) == 100
            sent += 100
            if unsent_bytes(ours) >= sndbuf:
                break
        assert engine.close_notify() is WANT_WRITE
        assert engine.recv(65536) is WANT_READ  # nothing from the peer; the alert cannot go yet
        for _ in range(200):  # send_eof's retry as the peer reads
            peer.pull()
            if engine.close_notify() is None:
                break
            time.sleep(0.002)
        else:
            raise AssertionError("close_notify never went")
        assert _read_to_close_notify(peer, 5.0) and peer.got == b"m" * sent
        assert engine.recv(65536) is WANT_READ and engine._detour is None  # memory is empty: the socket is bound
    finally:
        ours.close()
        theirs.close()


def test_the_peers_eof_while_detoured_is_a_truncation(pki: PKI) -> None:
    """The peer shuts its side without close_notify while a detour holds our unsent bytes: the read reports the EOF
    (``truncated``); fed nothing, OpenSSL asked for more forever and the read spun on the socket's EOF (audit 46,
    mutant d2)."""
    engine, peer, ours, theirs = connected(pki)
    try:
        fill(engine, memoryview(b"S" * 65536))
        peer.write(b"x" * 10)
        theirs.shutdown(socket.SHUT_WR)  # EOF, no close_notify; the peer does not read
        time.sleep(0.01)
        assert engine.recv(65536) == b"x" * 10  # the detour starts
        assert engine._detour is not None and not engine._detour.idle()
        outcome: list[object] = []

        def read() -> None:
            try:
                outcome.append(engine.recv(65536))
            except TransportFailed as exc:
                outcome.append(exc)

        reader = threading.Thread(target=read, daemon=True)  # a spinning read must fail the test, not hang it
        reader.start()
        reader.join(10)
        assert not reader.is_alive(), "the read spun on the EOF"
        [failure] = outcome
        assert isinstance(failure, TransportFailed) and failure.eof, failure
        assert classify_ending(failure).word == "truncated"
    finally:
        ours.close()
        theirs.close()


def _detoured_with_a_repeat_done(pki: PKI) -> tuple[TLSEngine, Peer, socket.socket, socket.socket]:
    """An engine detoured by a read beside a cancelled send whose repeat has completed, with a record of the peer's
    still in memory (so the detour goes on): ``x`` * 5 read, ``x`` * 5 and ``y`` * 10 to come."""
    engine, peer, ours, theirs = connected(pki)
    chunk = memoryview(b"S" * 65536)
    fill(engine, chunk)
    unfinished = bytes(chunk[:WRITE_CAP])
    engine.hold_unfinished(unfinished)  # its send_all was cancelled
    peer.write(b"x" * 10)
    peer.write(b"y" * 10)
    time.sleep(0.01)
    assert engine.recv(5) == b"x" * 5  # the detour starts
    repeat(engine, peer, unfinished)  # the repeat, as the peer reads
    assert engine._detour is not None
    return engine, peer, ours, theirs


def test_the_socket_is_bound_again_once_a_detoured_send_leaves_memory_empty(pki: PKI) -> None:
    """The detour ends as soon as memory is empty both ways, after a send too: a sender that never reads again
    would otherwise pay for the copies for the rest of the connection (audit 46, mutant e29)."""
    engine, peer, ours, theirs = connected(pki)
    try:
        chunk = memoryview(b"S" * 65536)
        fill(engine, chunk)
        unfinished = bytes(chunk[:WRITE_CAP])
        engine.hold_unfinished(unfinished)
        peer.write(b"x" * 10)
        time.sleep(0.01)
        assert engine.recv(65536) == b"x" * 10
        assert engine._detour is not None
        offset = 0
        for _ in range(10_000):
            step = engine.send(memoryview(unfinished)[offset:])
            if isinstance(step, int):
                offset += step
                if offset == len(unfinished):
                    break
            else:
                peer.pull()
                time.sleep(0.001)
        assert engine._detour is None
    finally:
        ours.close()
        theirs.close()


def test_a_repeated_close_notify_while_detoured_keeps_the_peers_data(pki: PKI) -> None:
    """``send_eof`` repeated while its alert waits in memory must not run SSL_shutdown again: that reads on for the
    peer's close_notify and drops the data in memory before it (audit 46, mutant e30; e35 is the same without the
    detour)."""
    engine, peer, ours, theirs = _detoured_with_a_repeat_done(pki)
    try:
        sndbuf = ours.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        for _ in range(10_000):  # short sends until the socket is just full, the peer not reading
            assert engine.send(b"m" * 100) == 100
            if unsent_bytes(ours) >= sndbuf:
                break
        assert engine.close_notify() is WANT_WRITE
        assert engine.close_notify() is WANT_WRITE  # send_eof's retry before the socket took anything
        got = b""
        for _ in range(10):
            step = engine.recv(65536)
            if step is WANT_READ or step == b"":
                break
            assert isinstance(step, bytes)
            got += step
        assert got == b"x" * 5 + b"y" * 10
    finally:
        ours.close()
        theirs.close()


def test_a_best_effort_close_notify_while_detoured_never_raises(pki: PKI) -> None:
    """The serving loop's close (``best_effort``) of a detoured connection whose read failed behind good data and
    whose peer is gone: SSL_shutdown fails and the flush meets EPIPE, and neither may raise (audit 46, mutants e31
    and e33)."""
    engine, peer, ours, theirs = connected(pki)
    try:
        fill(engine, memoryview(b"S" * 65536))
        peer.write(b"x" * 10)
        theirs.send(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)  # a record that does not decrypt
        time.sleep(0.01)
        assert engine.recv(65536) == b"x" * 10
        assert engine._detour is not None and engine._detour._unsent
        theirs.close()
        assert engine.close_notify(best_effort=True) is None
    finally:
        ours.close()
        theirs.close()


@pytest.mark.parametrize("finish", ["send_eof", "aclose"])
async def test_a_send_cancelled_mid_record_goes_out_before_the_close_notify(pki: PKI, finish: str) -> None:
    """A send_all cancelled while OpenSSL holds part of a record: ``send_eof`` and ``aclose`` first finish that
    record from the bytes the stream kept, and only then send close_notify, which cannot cut a record (audit 46,
    mutants s16, s19, s21)."""
    async with small_socket_stream(pki) as (stream, peer, ours):
        async with trio.open_nursery() as nursery:  # the peer not reading: the send waits mid-record
            nursery.start_soon(stream.send_all, b"A" * 200_000)
            await trio.testing.wait_all_tasks_blocked(0.01)
            nursery.cancel_scope.cancel()
        assert stream._engine.write_unfinished, "no record waited: nothing tested"
        alert = await finish_while_the_peer_reads(peer, stream.send_eof if finish == "send_eof" else stream.aclose)
        got = bytes(peer.got)
        assert alert and peer.error is None and got == b"A" * len(got) and got, (alert, peer.error)


def test_a_read_that_ends_the_detour_goes_on_from_the_socket(pki: PKI) -> None:
    """A read that finds memory empty ends the detour and goes on reading from the socket: WANT_READ must mean the
    socket had nothing, because the serving loop's edge-triggered poller parks the reader until the next edge, which
    data already waiting never gives (audit 46, mutant e23)."""
    engine, peer, ours, theirs = _detoured_with_a_repeat_done(pki)
    try:
        peer.write(b"z" * 100)  # on the socket, not yet pulled into memory
        time.sleep(0.01)
        got = b""
        for _ in range(10):
            step = engine.recv(65536)
            if step is WANT_READ:
                break
            assert isinstance(step, bytes) and step
            got += step
        assert got == b"x" * 5 + b"y" * 10 + b"z" * 100
        assert engine._detour is None
    finally:
        ours.close()
        theirs.close()
