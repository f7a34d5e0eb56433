"""Connections are freed when they end, by reference counting, however they end.

A stream that keeps the exception it failed with must not also be reachable from that exception's traceback: the
cycle would keep the connection, OpenSSL's ~20 KB of state included, until the garbage collector's next pass, and
make the server pay for that pass. Here the collector is off while real peers end connections every way they can;
then no stream, engine or OpenSSL connection may be left, not even one held by the handshake events a metrics
hook keeps.
"""

from __future__ import annotations

import contextlib
import gc
import socket
import ssl
import struct
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio
import trio.testing
from OpenSSL import SSL

from gtls import HandshakeError, HandshakeEvent, TLSStream, open_tls_over_tcp_stream
from gtls.engine import TLSEngine, TransportFailed
from gtls.server import serve_tls_over_tcp
from gtls.stream import compile_settings
from gtls.testing import CA, write_pem
from tests.hostile import MemoryClient, random_bytes, record
from tests.peers import PKI, python_context, raw_server, settled, version_4_certificate, wrap_client, write_pki

GTLS_TYPES = (TLSStream, TLSEngine, SSL.Connection)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return write_pki(tmp_path_factory.mktemp("cycles-pki"))


@pytest.fixture
def collector_off() -> Iterator[Callable[[], list[str]]]:
    """Turn the garbage collector off for the test; yields a function naming the gtls objects that still exist.
    With the collector off, that includes any that only the collector could have freed."""
    gc.collect()  # what earlier tests left is not this test's
    enabled = gc.isenabled()
    gc.disable()

    def still_alive() -> list[str]:
        return sorted(type(obj).__qualname__ for obj in gc.get_objects() if isinstance(obj, GTLS_TYPES))

    try:
        yield still_alive
    finally:
        if enabled:
            gc.enable()


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def _trusting(pki: PKI) -> ssl.SSLContext:
    return python_context(server=False, ca=pki.ca_file)


def close_notify(port: int, pki: PKI) -> None:
    with _connect(port) as raw, _trusting(pki).wrap_socket(raw) as conn:
        conn.sendall(b"hi\n")
        assert conn.recv(10) == b"hi\n"
        conn.unwrap()


def eof_without_close_notify(port: int, pki: PKI) -> None:
    with _connect(port) as raw, _trusting(pki).wrap_socket(raw) as conn:
        conn.sendall(b"hi\n")
        assert conn.recv(10) == b"hi\n"
    # SSLSocket.close() sends no close_notify, as `openssl s_time` does not


def reset(port: int, pki: PKI) -> None:
    with _connect(port) as raw, _trusting(pki).wrap_socket(raw) as conn:
        conn.sendall(b"hi\n")
        assert conn.recv(10) == b"hi\n"
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST


def _established(port: int, abuse: Callable[[MemoryClient], None], *, tls12: bool = False) -> None:
    """A handshake and one echo from a client whose every byte is ours, then ``abuse``; then until the server hangs
    up. The server's next read fails with a TLS error (not a transport one): the record or alert is refused."""
    with _connect(port) as raw:
        client = MemoryClient(raw, max_version=SSL.TLS1_2_VERSION if tls12 else None)
        try:
            client.handshake()
            assert client.echo(b"hi\n") == b"hi\n"
            abuse(client)
            with contextlib.suppress(OSError):
                while raw.recv(65536):
                    pass
        finally:
            del client.conn  # its context's keylog callback holds the client: a cycle of the test's own


def garbage_record(port: int, pki: PKI) -> None:
    _established(port, lambda client: client.sock.sendall(record(0x17, random_bytes(7, 64), 0x0303)))


def renegotiation(port: int, pki: PKI) -> None:
    _established(port, lambda client: client.renegotiate(), tls12=True)


def peer_alert(port: int, pki: PKI) -> None:
    def corrupt(client: MemoryClient) -> None:
        client.send(b"hi\n")
        client.receive_corrupted()  # the client answers with a fatal bad_record_mac alert

    _established(port, corrupt)


def not_tls(port: int, pki: PKI) -> None:
    with _connect(port) as raw:
        raw.sendall(b"GET / HTTP/1.0\r\n\r\n")
        with contextlib.suppress(ConnectionResetError):  # the server may close with our bytes unread
            raw.recv(100)


def eof_in_handshake(port: int, pki: PKI) -> None:
    with _connect(port):
        pass


def untrusted_by_the_client(port: int, pki: PKI) -> None:
    stranger = python_context(server=False, ca=pki.client_cert)  # not the root: the server's chain fails
    with _connect(port) as raw, pytest.raises(ssl.SSLCertVerificationError):
        stranger.wrap_socket(raw)


def silent_past_the_deadline(port: int, pki: PKI) -> None:
    with _connect(port) as raw:
        raw.settimeout(5)
        assert raw.recv(100) == b""  # the server gives up and closes


ENDINGS = [
    (close_notify, True),
    (eof_without_close_notify, True),
    (reset, True),
    (garbage_record, True),
    (renegotiation, True),
    (peer_alert, True),
    (not_tls, False),
    (eof_in_handshake, False),
    (untrusted_by_the_client, False),
    (silent_past_the_deadline, False),
]


@pytest.mark.parametrize("handler_catches", [True, False], ids=["handler-catches", "error-escapes-the-handler"])
@pytest.mark.parametrize(("ending", "handshakes"), ENDINGS, ids=[ending.__name__ for ending, _ in ENDINGS])
async def test_served_connections_are_freed_without_the_collector(
    pki: PKI,
    collector_off: Callable[[], list[str]],
    ending: Callable[[int, PKI], None],
    handshakes: bool,
    handler_catches: bool,
) -> None:
    events: list[HandshakeEvent] = []
    handlers_done = 0

    async def handler(stream: TLSStream) -> None:
        """Echo until the peer leaves, as a service does: its way of leaving is what the stream fails with."""
        nonlocal handlers_done
        try:
            for _ in range(100):
                data = await stream.receive_some()
                if not data:
                    return
                await stream.send_all(data)
        except trio.BrokenResourceError:
            if not handler_catches:
                raise  # the serving loop logs the ending and goes on
        finally:
            handlers_done += 1

    rounds = 3
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            lambda task_status: serve_tls_over_tcp(
                handler,
                0,
                pki.server_options(),
                host="127.0.0.1",
                handshake_timeout=0.3 if ending is silent_past_the_deadline else 10.0,  # slow machines too
                on_handshake=events.append,
                task_status=task_status,
            )
        )
        port = listeners[0].socket.getsockname()[1]
        for _ in range(rounds):
            await trio.to_thread.run_sync(ending, port, pki)
        with trio.fail_after(5):
            while len(events) < rounds or handlers_done < (rounds if handshakes else 0):
                await trio.sleep(0.01)
        await settled()
        nursery.cancel_scope.cancel()
    del listeners
    # The events are kept, as a metrics hook keeps them: a failure's event must not keep its connection alive.
    assert [event.ok for event in events] == [handshakes] * rounds
    assert collector_off() == []


async def test_client_streams_are_freed_without_the_collector(pki: PKI, collector_off: Callable[[], list[str]]) -> None:
    server_context = python_context(server=True, cert=pki.server_cert, key=pki.server_key)

    def echo_then_vanish(raw: socket.socket) -> None:
        with contextlib.suppress(OSError), server_context.wrap_socket(raw, server_side=True) as conn:
            conn.sendall(conn.recv(10))
        # closed without close_notify

    # try/except rather than pytest.raises, whose record of the error would keep the stream alive through its frames
    with raw_server(echo_then_vanish) as port:
        # The server vanishes: the client's read fails, then the client closes its stream.
        stream = await open_tls_over_tcp_stream("localhost", port, pki.client_options())
        async with stream:
            await stream.send_all(b"hi\n")
            assert await stream.receive_some() == b"hi\n"
            try:
                await stream.receive_some()
            except trio.BrokenResourceError as exc:
                assert isinstance(exc.__cause__, TransportFailed)
            else:
                pytest.fail("an EOF without close_notify must break the stream")
        del stream

        # The handshake fails: the connector closes what it opened.
        stranger = pki.client_options(trusted_ca=str(pki.client_cert))
        try:
            await open_tls_over_tcp_stream("localhost", port, stranger)
        except HandshakeError as exc:
            assert exc.reason == "untrusted"
        else:
            pytest.fail("the handshake must fail")
    # trio's run loop holds the last outcome it delivered to this task (the connector's cancelled close, whose
    # context is the handshake error) until it delivers the next.
    await trio.lowlevel.checkpoint()
    assert collector_off() == []


@pytest.mark.parametrize("driver", ["socket", "bio"])
async def test_a_stream_closed_under_its_waiting_send_is_freed_without_the_collector(
        pki: PKI, collector_off: Callable[[], list[str]], driver: str) -> None:
    """A send waiting for the socket when another task closes the stream raises ClosedResourceError from a frame
    that holds the stream: that frame must not stay in a cycle with the error (audit 46, mutants s20, s22)."""
    ours, theirs = socket.socketpair()
    client = TLSStream(trio.SocketStream(trio.socket.from_stdlib_socket(ours)),
                       compile_settings(pki.client_options(), "client"), server_hostname="localhost", driver=driver)
    server = TLSStream(trio.SocketStream(trio.socket.from_stdlib_socket(theirs)),
                       compile_settings(pki.server_options(), "server"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(server.do_handshake)
    closed: list[bool] = []

    async def send(stream: TLSStream) -> None:
        try:
            await stream.send_all(bytes(4 << 20))  # the server does not read: the send waits
        except trio.ClosedResourceError:
            closed.append(True)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send, client)
            await trio.testing.wait_all_tasks_blocked()
            await client.aclose()
        await server.aclose()
    assert closed == [True]
    del client, server, nursery
    await trio.lowlevel.checkpoint()
    assert collector_off() == []


async def test_a_memory_bio_stream_whose_send_was_cancelled_is_freed_without_the_collector(
        pki: PKI, collector_off: Callable[[], list[str]]) -> None:
    """Over memory BIOs a send cancelled part-way through a record is recorded as the driver's failure, whose
    traceback holds the stream: closing must let go of it (audit 46, mutant s22)."""
    ours, theirs = socket.socketpair()
    client = TLSStream(trio.SocketStream(trio.socket.from_stdlib_socket(ours)),
                       compile_settings(pki.client_options(), "client"), server_hostname="localhost", driver="bio")
    server = TLSStream(trio.SocketStream(trio.socket.from_stdlib_socket(theirs)),
                       compile_settings(pki.server_options(), "server"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(server.do_handshake)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, bytes(4 << 20))  # the server does not read: the send waits
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        await client.aclose()
        await server.aclose()
    del client, server, nursery
    await trio.lowlevel.checkpoint()
    assert collector_off() == []


async def test_a_refusal_located_by_openssl_alone_is_freed_without_the_collector(
    pki: PKI, tmp_path: Path, collector_off: Callable[[], list[str]]
) -> None:
    """A refused client certificate cryptography cannot load is located by a second, OpenSSL-only re-verification
    after the first one failed: neither failure may leave the connection in a cycle (through a traceback's frames)."""
    stranger = CA.root("cycles stranger").intermediate("cycles stranger inter")
    leaf = stranger.leaf("v4 client", eku=("client",))
    cert = write_pem(tmp_path / "v4.pem", version_4_certificate(leaf, stranger), stranger.cert_pem)
    context = python_context(server=False, ca=pki.ca_file, cert=cert, key=leaf.write_key(tmp_path / "v4.key"))

    def refused(port: int) -> None:
        with _connect(port) as raw, contextlib.suppress(ssl.SSLError, OSError), wrap_client(context, raw) as conn:
            conn.recv(10)  # TLS 1.3: the refusal arrives after the client's handshake

    events: list[HandshakeEvent] = []
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            lambda task_status: serve_tls_over_tcp(
                lambda stream: stream.send_all(b"hi\n"), 0, pki.server_options(tls_mutual="1"), host="127.0.0.1",
                on_handshake=events.append, task_status=task_status,
            )
        )
        port = listeners[0].socket.getsockname()[1]
        for _ in range(3):
            await trio.to_thread.run_sync(refused, port)
        with trio.fail_after(5):
            while len(events) < 3:
                await trio.sleep(0.01)
        await settled()
        nursery.cancel_scope.cancel()
    del listeners
    assert [(event.reason, event.error.depth if event.error else None) for event in events] == [("untrusted", 1)] * 3
    assert collector_off() == []


# On Python 3.13 trio.SocketStream's own reset error is in a cycle (contextlib's __exit__ frame holds it), which reaches
# the stream through its frames' callers: trio alone shows it; the memory-BIO case can only be checked before 3.13.
UPSTREAM_RESET_CYCLE = pytest.mark.skipif(sys.version_info >= (3, 13), reason="trio.SocketStream's reset error is "
                                          "in a cycle of its own on Python 3.13")


@pytest.mark.parametrize("driver", ["socket", pytest.param("bio", marks=UPSTREAM_RESET_CYCLE)])
async def test_a_handshake_whose_transport_is_reset_is_freed_without_the_collector(
        pki: PKI, collector_off: Callable[[], list[str]], driver: str) -> None:
    """The server resets the connection after the ClientHello: over memory BIOs the transport's error ends the
    handshake as eof-in-handshake, raised from a frame that must not stay in a cycle with it (found by audit 87)."""

    def reset_after_hello(raw: socket.socket) -> None:
        raw.recv(65536)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST

    with raw_server(reset_after_hello) as port:
        for _ in range(3):
            sock = trio.socket.socket()
            await sock.connect(("127.0.0.1", port))
            stream = TLSStream(trio.SocketStream(sock), compile_settings(pki.client_options(), "client"),
                               server_hostname="localhost", driver=driver)
            try:
                await stream.do_handshake()
            except HandshakeError as exc:
                assert exc.reason == "eof-in-handshake"
            else:
                pytest.fail("the handshake must fail")
            await stream.aclose()
            del stream, sock
    await trio.lowlevel.checkpoint()
    assert collector_off() == []


async def test_a_connection_ended_by_the_idle_limit_is_not_kept_by_the_reaper(pki: PKI) -> None:
    """gtls serve's idle reaper ends a silent connection; once its task has closed it, nothing keeps it, though the
    reaper sleeps on (its frame kept the last stream it ended until the next went stale; found by audit 87)."""
    from gtls._idle import IdleReaper

    ours, theirs = socket.socketpair()
    client = TLSStream(trio.SocketStream(trio.socket.from_stdlib_socket(ours)),
                       compile_settings(pki.client_options(), "client"), server_hostname="localhost")
    server = TLSStream(trio.SocketStream(trio.socket.from_stdlib_socket(theirs)),
                       compile_settings(pki.server_options(), "server"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(server.do_handshake)
    reaper = IdleReaper(0.05)
    reaper.last[server] = trio.current_time()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reaper.run)
            with pytest.raises(trio.BrokenResourceError):
                await server.receive_some()  # the silent peer: the reaper breaks the stream
            await server.aclose()
            await client.aclose()
            del client, server
            await trio.sleep(0.1)  # the reaper sweeps again, finding nothing
            alive = [obj for obj in gc.get_objects() if isinstance(obj, TLSStream)]
            nursery.cancel_scope.cancel()
    assert alive == []
