"""TLSStream against trio's generic stream checks, on both drivers (socket-bound over TCP, memory BIO over TCP and
over trio's memory streams), in TLS 1.3 and 1.2."""

from __future__ import annotations

import hashlib
import math
import random
import socket
import ssl
import struct
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

from gtls import ConfigError, HandshakeError, TLSError, _binding, classify_ending
from gtls.context import CompiledContext
from gtls.engine import TransportFailed
from gtls.options import TLSOptions
from gtls.stream import HalfCloseUnsupported, TLSStream, compile_settings
from gtls.testing import CA, write_pem
from tests.hostile import IO_TIMEOUT, MemoryClient, MemoryServer, certificate_request, oversized_record
from tests.peers import PKI, openssl_session, python_context, python_key_update_client, write_pki

Pair = tuple[TLSStream, TLSStream]
TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)  # Linux value


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return write_pki(tmp_path_factory.mktemp("stream-pki"))


def contexts(pki: PKI, version: str) -> tuple[CompiledContext, CompiledContext]:
    sec = {"1.3": "TLSv13", "1.2": "TLSv12"}[version]
    server = compile_settings(pki.server_options(sec_protocol=sec), "server")
    client = compile_settings(pki.client_options(tls_target_name_check="host"), "client")
    return server, client


async def tcp_transport_pair(*, clog_ready: bool = False) -> tuple[trio.SocketStream, trio.SocketStream]:
    listener = trio.socket.socket()
    try:
        await listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = trio.socket.socket()
        await client.connect(listener.getsockname())
        server, _ = await listener.accept()
    finally:
        listener.close()
    if clog_ready:
        # Writable only when nothing is left unsent: a full pipe then stays unwritable until the peer reads.
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT, 1)
    return trio.SocketStream(client), trio.SocketStream(server)


async def handshake_both(client: TLSStream, server: TLSStream) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(server.do_handshake)


def maker(pki: PKI, version: str, transport: str, driver: str) -> Callable[[], Awaitable[Pair]]:
    server_ctx, client_ctx = contexts(pki, version)

    async def make() -> Pair:
        if transport == "tcp":
            a, b = await tcp_transport_pair()
        elif transport == "memory":
            a, b = trio.testing.memory_stream_pair()  # type: ignore[assignment]
        else:
            a, b = trio.testing.lockstep_stream_pair()  # type: ignore[assignment]
        client = TLSStream(a, client_ctx, server_hostname="localhost", driver=driver)  # type: ignore[arg-type]
        server = TLSStream(b, server_ctx, driver=driver)  # type: ignore[arg-type]
        await handshake_both(client, server)
        return client, server

    return make


def clogged_tcp_maker(pki: PKI, version: str) -> Callable[[], Awaitable[Pair]]:
    """A socket-bound pair whose both directions are full: either side's next send blocks."""
    server_ctx, client_ctx = contexts(pki, version)

    async def make() -> Pair:
        a, b = await tcp_transport_pair(clog_ready=True)
        client = TLSStream(a, client_ctx, server_hostname="localhost")
        server = TLSStream(b, server_ctx)
        await handshake_both(client, server)
        await clog(client)
        await clog(server)
        await clog(client)  # the second direction's traffic can free a little room in the first
        return client, server

    return make


async def clog(stream: TLSStream) -> None:
    """Send until the socket stays unwritable (loopback keeps accepting a little after a send first blocks)."""
    block = b"c" * 16384
    for _ in range(4000):  # bounded: 64 MiB is far more than loopback buffers hold
        with trio.move_on_after(0.01) as scope:
            await stream.send_all(block)
        if scope.cancelled_caught:
            with trio.move_on_after(0.03) as still:
                await stream.wait_send_all_might_not_block()
            if still.cancelled_caught:
                return
    raise AssertionError("could not clog the TCP connection")  # pragma: no cover


DRIVERS = [("tcp", "socket"), ("tcp", "bio"), ("memory", "bio")]


@pytest.mark.parametrize("version", ["1.3", "1.2"])
@pytest.mark.parametrize(("transport", "driver"), DRIVERS)
async def test_two_way_stream(pki: PKI, version: str, transport: str, driver: str) -> None:
    clogged = None
    if transport == "memory":
        clogged = maker(pki, version, "lockstep", "bio")
    elif driver == "socket":
        clogged = clogged_tcp_maker(pki, version)
    await trio.testing.check_two_way_stream(maker(pki, version, transport, driver), clogged)


@pytest.mark.parametrize(("transport", "driver"), DRIVERS)
async def test_half_closeable_stream_tls13(pki: PKI, transport: str, driver: str) -> None:
    clogged = None
    if transport == "memory":
        clogged = maker(pki, "1.3", "lockstep", "bio")
    elif driver == "socket":
        clogged = clogged_tcp_maker(pki, "1.3")
    await trio.testing.check_half_closeable_stream(maker(pki, "1.3", transport, driver), clogged)


@pytest.mark.parametrize(("transport", "driver"), DRIVERS)
@pytest.mark.parametrize("read_first", [True, False])
async def test_a_client_still_writes_after_the_servers_immediate_send_eof(
    pki: PKI, transport: str, driver: str, read_first: bool
) -> None:
    """A TLS 1.3 server half-closes right after the handshake: the client's first writes, which look for a late
    rejection of its handshake, find the server's close_notify there, which is no rejection, and go through (audit
    58: the look took the clean close for a protocol error and broke the stream)."""
    client, server = await maker(pki, "1.3", transport, driver)()
    async with client, server:
        with trio.fail_after(5):
            await server.send_eof()
            if read_first:
                assert await client.receive_some() == b""
            elif transport == "tcp":
                await trio.lowlevel.wait_readable(client.transport_stream.socket)  # type: ignore[attr-defined]
            await client.send_all(b"request")
            assert await server.receive_some() == b"request"
            await client.send_all(b"more")
            assert await server.receive_some() == b"more"


@pytest.mark.parametrize(("transport", "driver"), DRIVERS)
async def test_send_eof_on_tls12_is_refused_within_trios_contract(pki: PKI, transport: str, driver: str) -> None:
    """On TLS 1.2 a close_notify may end both directions (Java drops its unsent reply), so send_eof refuses; the
    refusal is a trio.BrokenResourceError too, which generic HalfCloseableStream code (h11's example, hypercorn)
    catches (a bare TLSError stopped serve_tls_over_tcp), and the stream is unchanged."""
    client, server = await maker(pki, "1.2", transport, driver)()
    async with client, server:
        with pytest.raises(trio.BrokenResourceError, match="TLS 1.3") as refused:
            await client.send_eof()
        assert isinstance(refused.value, HalfCloseUnsupported) and isinstance(refused.value, TLSError)
        await client.send_all(b"still open")
        assert await server.receive_some() == b"still open"
        await server.send_all(b"both ways")
        assert await client.receive_some() == b"both ways"


@pytest.mark.parametrize(("transport", "driver"), DRIVERS)
async def test_negotiated_properties(pki: PKI, transport: str, driver: str) -> None:
    client, server = await maker(pki, "1.3", transport, driver)()
    async with client, server:
        assert client.tls_version == server.tls_version == "TLSv1.3"
        assert client.cipher == server.cipher and client.cipher.startswith("TLS_")
        assert client.peer_certificate == pki.server.cert
        assert client.peer_chain == [pki.server.cert, pki.intermediate.cert]  # leaf first, as sent
        assert server.peer_certificate is None and server.peer_chain == []  # simple TLS: no client certificate
        assert server.server_name == client.server_name == "localhost"
        assert not client.session_reused
        assert client.settings.role == "client" and server.settings.role == "server"
        if transport == "tcp":
            assert client.peer_address == "{}:{}".format(*client.transport_stream.socket.getpeername())
        else:
            assert client.peer_address is None


async def test_mutual_peer_chain_on_server(pki: PKI) -> None:
    server_ctx = compile_settings(pki.server_options(tls_mutual="1"), "server")
    client_ctx = compile_settings(pki.client_options(with_cert=True), "client")
    a, b = await tcp_transport_pair()
    client, server = TLSStream(a, client_ctx), TLSStream(b, server_ctx)
    async with client, server:
        await handshake_both(client, server)
        assert server.peer_certificate == pki.client.cert
        assert server.peer_chain == [pki.client.cert, pki.intermediate.cert]


@pytest.mark.parametrize("driver", ["socket", "bio"])
async def test_handshake_on_first_use_and_concurrent_callers(pki: PKI, driver: str) -> None:
    client, server = await _unhandshaken(pki, driver)
    async with client, server:

        async def exchange() -> None:
            await client.send_all(b"ping")
            assert await client.receive_some() == b"pong"

        async def answer() -> None:
            assert await server.receive_some() == b"ping"
            await server.send_all(b"pong")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(exchange)
            nursery.start_soon(answer)
            nursery.start_soon(client.do_handshake)  # a third caller waits for the same handshake
        assert client.handshake_done and server.handshake_done
        await client.do_handshake()  # after success: only a checkpoint


async def _unhandshaken(pki: PKI, driver: str, version: str = "1.3") -> Pair:
    server_ctx, client_ctx = contexts(pki, version)
    a, b = await tcp_transport_pair()
    return (
        TLSStream(a, client_ctx, server_hostname="localhost", driver=driver),  # type: ignore[arg-type]
        TLSStream(b, server_ctx, driver=driver),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("driver", ["socket", "bio"])
async def test_failed_handshake_breaks_stream_with_cause(pki: PKI, tmp_path: Path, driver: str) -> None:
    other = write_pki(tmp_path / "other")
    server_ctx = compile_settings(other.server_options(), "server")  # a server the client does not trust
    client_ctx = compile_settings(pki.client_options(), "client")
    a, b = await tcp_transport_pair()
    client = TLSStream(a, client_ctx, server_hostname="localhost", driver=driver)  # type: ignore[arg-type]
    server = TLSStream(b, server_ctx, driver=driver)  # type: ignore[arg-type]
    async with client, server:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_swallow, server.do_handshake)
            with pytest.raises(HandshakeError) as explicit:
                await client.do_handshake()
        assert explicit.value.reason == "untrusted"
        with pytest.raises(HandshakeError) as again:  # the explicit call repeats the verdict
            await client.do_handshake()
        assert again.value is explicit.value
        with pytest.raises(trio.BrokenResourceError) as broken:
            await client.send_all(b"x")
        assert broken.value.__cause__ is explicit.value
        with pytest.raises(trio.BrokenResourceError) as server_broken:
            await server.receive_some()
        assert isinstance(server_broken.value.__cause__, HandshakeError)
        assert server_broken.value.__cause__.reason == "peer-alert"
        assert server_broken.value.__cause__.alert is not None


async def _swallow(fn: Callable[[], Awaitable[object]]) -> None:
    try:
        await fn()
    except HandshakeError:
        pass


async def test_cancelled_send_keeps_stream_usable(pki: PKI) -> None:
    """A send_all cancelled while OpenSSL holds a half-written record finishes that record on the next send, so
    the peer sees a clean prefix of the cancelled data followed by the next data; nothing breaks."""
    server_ctx, client_ctx = contexts(pki, "1.3")
    a, b = await tcp_transport_pair(clog_ready=True)
    client = TLSStream(a, client_ctx, server_hostname="localhost")
    server = TLSStream(b, server_ctx)
    async with client, server:
        await handshake_both(client, server)
        await clog(client)  # leaves a cancelled send_all behind
        tail = b"tail-marker"
        received = bytearray()

        async def drain() -> None:
            for _ in range(100_000):
                chunk = await server.receive_some()
                assert chunk
                received.extend(chunk)
                if received.endswith(tail):
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            await client.send_all(tail)
        assert received.endswith(tail)
        assert set(received[: -len(tail)]) == {ord("c")}
        await server.send_all(b"back")
        assert await client.receive_some() == b"back"


async def test_a_memory_bio_send_cancelled_mid_record_says_so_on_next_use(pki: PKI) -> None:
    """Over memory BIOs a send cancelled while its records are on their way leaves a hole in the record stream: the
    next call raises BrokenResourceError whose cause says a send was cancelled part-way, not that the transport
    failed (audit 58: without the driver's record of the cancellation that was the message)."""
    server_ctx, client_ctx = contexts(pki, "1.3")
    a, b = trio.testing.lockstep_stream_pair()
    client = TLSStream(a, client_ctx, server_hostname="localhost")
    server = TLSStream(b, server_ctx)
    await handshake_both(client, server)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, b"x" * 100)  # lockstep: waits until the server reads, which it won't
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    with pytest.raises(trio.BrokenResourceError) as caught:
        await client.send_all(b"y")
    assert isinstance(caught.value.__cause__, TLSError)
    assert "cancelled part-way" in str(caught.value.__cause__)
    await trio.aclose_forcefully(client)
    await trio.aclose_forcefully(server)


@pytest.mark.parametrize("version", ["1.3", "1.2"])
async def test_a_send_cancelled_after_a_retry_sent_part_of_it_keeps_the_stream_usable(pki: PKI, version: str) -> None:
    """Small socket buffers: OpenSSL's retry of one large SSL_write sends some records and blocks again, so it has
    more than the record it holds in hand. The cancelled send kept only 16 KiB for the retry, and the next send_all
    broke the stream with OpenSSL's "bad length" (the peer just hung). Now the peer sees a prefix of the cancelled
    data, then the next data. A Unix socket pair shows it every time; TCP with such buffers too, but slowly."""
    server_ctx, client_ctx = contexts(pki, version)
    a, b = trio.socket.socketpair()
    for sock in (a, b):  # a 16 KiB record takes several writes
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client = TLSStream(trio.SocketStream(a), client_ctx, server_hostname="localhost")
    server = TLSStream(trio.SocketStream(b), server_ctx)
    async with client, server:
        await handshake_both(client, server)
        received = bytearray()
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                sending = trio.CancelScope()

                async def sender() -> None:
                    with sending:
                        await client.send_all(b"a" * 4_000_000)

                nursery.start_soon(sender)
                await trio.testing.wait_all_tasks_blocked()  # the socket is full: the send waits
                while len(received) < 100_000:  # the send's retries go through, then block inside one SSL_write
                    received += await server.receive_some(1000)
                    await trio.testing.wait_all_tasks_blocked()
                sending.cancel()

            async def drain() -> None:
                while not received.endswith(b"END"):
                    chunk = await server.receive_some()
                    assert chunk
                    received.extend(chunk)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain)
                await client.send_all(b"END")
        assert set(received[:-3]) == {ord("a")} and len(received) - 3 < 4_000_000
        await server.send_all(b"back")
        assert await client.receive_some() == b"back"


@pytest.mark.parametrize(("transport", "driver"), DRIVERS)
async def test_data_integrity_64mib_each_way(pki: PKI, transport: str, driver: str) -> None:
    size = 64 * 1024 * 1024
    client, server = await maker(pki, "1.3", transport, driver)()

    async def sender(stream: TLSStream, seed: int, digest: list[str]) -> None:
        rng = random.Random(seed)
        block = rng.randbytes(1 << 20)
        view = memoryview(block)
        hasher = hashlib.sha256()
        left = size
        while left:
            n = min(left, rng.randint(1, 65536))
            start = rng.randrange(0, len(block) - n + 1)
            chunk = view[start : start + n]
            hasher.update(chunk)
            await stream.send_all(chunk)
            left -= n
        digest.append(hasher.hexdigest())

    async def receiver(stream: TLSStream, seed: int, digest: list[str]) -> None:
        rng = random.Random(seed)
        hasher = hashlib.sha256()
        got = 0
        while got < size:
            chunk = await stream.receive_some(rng.randint(1, 65536))
            assert chunk
            hasher.update(chunk)
            got += len(chunk)
        assert got == size
        digest.append(hasher.hexdigest())

    sent_c: list[str] = []
    sent_s: list[str] = []
    got_c: list[str] = []
    got_s: list[str] = []
    async with client, server:
        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sender, client, 1, sent_c)
                nursery.start_soon(sender, server, 2, sent_s)
                nursery.start_soon(receiver, server, 3, got_s)
                nursery.start_soon(receiver, client, 4, got_c)
    assert sent_c == got_s and sent_s == got_c


async def test_https_compatible_treats_missing_close_notify_as_eof(pki: PKI) -> None:
    server_ctx, client_ctx = contexts(pki, "1.3")
    for compatible in (True, False):
        a, b = await tcp_transport_pair()
        client = TLSStream(a, client_ctx, server_hostname="localhost", https_compatible=compatible)
        server = TLSStream(b, server_ctx)
        await handshake_both(client, server)
        await server.send_all(b"body")
        await server.transport_stream.aclose()  # vanish without close_notify
        assert await client.receive_some() == b"body"
        if compatible:
            assert await client.receive_some() == b""
        else:
            with pytest.raises(trio.BrokenResourceError):
                await client.receive_some()
        await client.aclose()
        await server.aclose()


@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize(("transport", "driver"), [("tcp", "socket"), ("tcp", "bio"), ("memory", "bio")])
async def test_https_compatible_goes_on_sending_after_a_bare_eof(
    pki: PKI, version: str, transport: str, driver: str
) -> None:
    """https_compatible: the peer's EOF without close_notify (its transport's send_eof, a bare TCP FIN) ends its
    data, and the stream goes on sending, as after a half-close over TCP. OpenSSL took that EOF for a fatal error:
    it sent the peer a decode_error alert and failed every later write, though receive_some had returned b""."""
    server_ctx, client_ctx = contexts(pki, version)
    if transport == "tcp":
        a, b = await tcp_transport_pair()
    else:
        a, b = trio.testing.memory_stream_pair()  # type: ignore[assignment]
    client = TLSStream(a, client_ctx, server_hostname="localhost", driver=driver)  # type: ignore[arg-type]
    server = TLSStream(b, server_ctx, https_compatible=True, driver=driver)  # type: ignore[arg-type]
    try:
        with trio.fail_after(IO_TIMEOUT):
            await handshake_both(client, server)
            await client.send_all(b"request")
            await client.transport_stream.send_eof()  # type: ignore[attr-defined]
            received = b""
            while chunk := await server.receive_some():
                received += chunk
            assert received == b"request"
            await server.send_all(b"answer")
            assert await client.receive_some() == b"answer"
    finally:
        await trio.aclose_forcefully(server)
        await trio.aclose_forcefully(client)


@pytest.mark.parametrize("role", ["client", "server"])
@pytest.mark.parametrize("driver", ["socket", "bio"])
async def test_https_compatible_eof_in_the_handshake_stays_eof_in_handshake(pki: PKI, role: str, driver: str) -> None:
    """https_compatible forgives a bare EOF only after the handshake (where HTTP's framing tells a cut message): a
    peer that leaves mid-handshake with a bare FIN is eof-in-handshake without close_notify, as without
    https_compatible (audit 61)."""
    server_ctx, client_ctx = contexts(pki, "1.3")
    a, b = await tcp_transport_pair()
    stream = TLSStream(a, client_ctx, server_hostname="localhost", https_compatible=True,
                       driver=driver) if role == "client" else TLSStream(a, server_ctx, https_compatible=True,
                                                                         driver=driver)  # type: ignore[arg-type]
    try:
        if role == "server":
            await b.send_all(bytes.fromhex("160301"))  # the start of a record header, then a bare FIN
        await b.send_eof()
        with trio.fail_after(IO_TIMEOUT), pytest.raises(HandshakeError) as caught:
            await stream.do_handshake()
        # a bare FIN, told apart from a close_notify: OpenSSL's option set before the handshake read it as one
        assert caught.value.reason == "eof-in-handshake" and "without close_notify" in caught.value.message
    finally:
        await trio.aclose_forcefully(stream)
        await b.aclose()


@pytest.mark.parametrize("driver", ["socket", "bio"])
async def test_https_compatible_sends_no_close_notify(pki: PKI, driver: str) -> None:
    """https_compatible neither expects nor sends close_notify (trio's SSLStream): its aclose ends with a bare FIN,
    which a strict peer reads as a truncation (audit 58)."""
    server_ctx, client_ctx = contexts(pki, "1.3")
    a, b = await tcp_transport_pair()
    client = TLSStream(a, client_ctx, server_hostname="localhost", https_compatible=True,
                       driver=driver)  # type: ignore[arg-type]
    server = TLSStream(b, server_ctx)
    await handshake_both(client, server)
    await server.send_all(b"tickets first")  # the client reads the server's tickets: its close is a FIN
    assert await client.receive_some() == b"tickets first"
    await client.aclose()
    with trio.fail_after(5), pytest.raises(trio.BrokenResourceError) as caught:
        await server.receive_some()
    assert classify_ending(caught.value).word == "truncated"
    await server.aclose()


@pytest.mark.parametrize("driver", ["socket", "bio"])
async def test_https_compatible_still_reports_a_reset(pki: PKI, driver: str) -> None:
    """https_compatible forgives a missing close_notify (a FIN), not a reset: the receive still fails, as ``reset``,
    as in trio's SSLStream (audit 58: any transport failure read as a clean end)."""
    server_ctx, client_ctx = contexts(pki, "1.3")
    a, b = await tcp_transport_pair()
    client = TLSStream(a, client_ctx, server_hostname="localhost", https_compatible=True,
                       driver=driver)  # type: ignore[arg-type]
    server = TLSStream(b, server_ctx)
    await handshake_both(client, server)
    await server.send_all(b"body")
    sock = server.transport_stream.socket  # type: ignore[attr-defined]
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await server.transport_stream.aclose()  # RST
    with trio.fail_after(5):
        assert await client.receive_some() == b"body"
        with pytest.raises(trio.BrokenResourceError) as caught:
            await client.receive_some()
    assert classify_ending(caught.value).word == "reset"
    try:
        try:
            raise caught.value
        except trio.BrokenResourceError:
            raise RuntimeError("raised while handling the reset")  # noqa: B904 - the implicit chain is the point
    except RuntimeError as during:
        assert during.__context__ is caught.value
        assert classify_ending(during).word == "reset"  # the chain is followed through __context__ too (audit 58)
    await client.aclose()
    await server.aclose()


@pytest.mark.parametrize("driver", ["socket", "bio"])
async def test_aclose_under_a_blocked_send_ends_without_close_notify(pki: PKI, driver: str) -> None:
    """Closing a stream while another task's send_all waits mid-record: no clean place for close_notify, and the
    peer must not take the cut-off data for a complete message: its receive fails, never ends cleanly; and aclose
    does not wait ``close_timeout`` for a chance to send the alert (audit 58)."""
    server_ctx, client_ctx = contexts(pki, "1.3")
    a, b = await tcp_transport_pair()
    client = TLSStream(a, client_ctx, server_hostname="localhost", driver=driver,  # type: ignore[arg-type]
                       close_timeout=60)
    server = TLSStream(b, server_ctx)
    await handshake_both(client, server)
    async with trio.open_nursery() as nursery:

        async def blocked_send() -> None:
            with pytest.raises(trio.ClosedResourceError):
                await client.send_all(b"m" * (16 << 20))  # far more than loopback buffers hold: it waits

        nursery.start_soon(blocked_send)
        await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(10):  # at once: no alert to wait for (not close_timeout)
            await client.aclose()
    with trio.fail_after(10), pytest.raises(trio.BrokenResourceError) as caught:
        for _ in range(10_000):  # bounded: at most 16 MiB arrive
            assert await server.receive_some()
    assert classify_ending(caught.value).word in ("truncated", "reset")  # reset: the client left tickets unread
    await server.aclose()


@pytest.mark.parametrize(("timeout", "error"), [(-1.0, ValueError), (math.nan, ValueError), ("1", TypeError),
                                              (True, TypeError)])
async def test_a_close_timeout_aclose_cannot_keep_is_refused_when_the_stream_is_made(
    pki: PKI, timeout: object, error: type[Exception]
) -> None:
    """Unchecked, a negative or NaN close_timeout broke only aclose(), after the exchange (trio's cancel scope
    refused it there) and a string or bool was taken as given (audit 72's note). 0 closes without waiting."""
    left, _right = trio.testing.memory_stream_pair()
    with pytest.raises(error, match="close_timeout"):
        TLSStream(left, pki.client_options(), close_timeout=timeout)  # type: ignore[arg-type]
    TLSStream(left, pki.client_options(), close_timeout=0)


async def test_aclose_sends_close_notify_and_is_idempotent(pki: PKI) -> None:
    client, server = await maker(pki, "1.3", "tcp", "socket")()
    await client.aclose()
    assert await server.receive_some() == b""  # close_notify: a clean end of stream, not BrokenResourceError
    assert await server.receive_some() == b""
    await client.aclose()
    await server.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await client.receive_some()


async def _echo_server(pki: PKI, version: str, seen: list[TLSStream]):  # type: ignore[no-untyped-def]
    from gtls.server import serve_tls_over_tcp

    async def echo(stream: TLSStream) -> None:
        seen.append(stream)
        try:
            while data := await stream.receive_some():
                await stream.send_all(data)
        except trio.BrokenResourceError:
            pass

    options = pki.server_options(sec_protocol={"1.3": "TLSv13", "1.2": "TLSv12"}[version])
    return lambda task_status: serve_tls_over_tcp(echo, 0, options, host="127.0.0.1", task_status=task_status)


async def test_peer_key_update_is_answered(pki: PKI) -> None:
    """A TLS 1.3 KeyUpdate asking for ours makes the server write while it reads; data keeps flowing."""
    seen: list[TLSStream] = []
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(await _echo_server(pki, "1.3", seen))
        port = listeners[0].socket.getsockname()[1]
        async with openssl_session(port, ca=pki.ca_file, args=["-tls1_3"]) as client:
            await client.send(b"before\n")
            await client.expect(b"before\n")
            await client.send(b"K\n")  # s_client: send KeyUpdate with update_requested
            await client.expect(b"KEYUPDATE")
            await client.send(b"after\n")
            out = await client.expect(b"after\n")
        nursery.cancel_scope.cancel()
    assert out.count(b"before\n") >= 1 and out.count(b"after\n") >= 1


@pytest.mark.parametrize("driver", ["serve", "bio"])
async def test_key_updates_asking_for_ours_during_full_duplex_bulk(pki: PKI, driver: str) -> None:
    """OpenSSL answers a KeyUpdate from inside SSL_read. Read beside a send waiting in OpenSSL on a full socket, that
    answer failed the connection on the socket-bound driver ("bad length", logged as the peer's bad record): a
    full-duplex stream died when its peer asked for new keys (audit 42: 5 runs in 6 at 4 MiB). A Python-ssl client
    streams 4 MiB each way, asks for new keys every 64 KiB and reads slowly, so that our sends keep waiting for the
    socket; three connections, since where a send waits in its records is up to the kernel (the old code failed in
    every run of this test). The socket-bound case runs in the serving loop (poller reads, as in production)."""
    server_ctx, _ = contexts(pki, "1.3")
    size = 4 << 20
    to_client, to_server = random.Random(1).randbytes(size), random.Random(2).randbytes(size)
    results: list[bytes] = []
    closing: list[trio.SocketListener] = []

    async def full_duplex(stream: TLSStream) -> None:
        got = bytearray()

        async def read_all() -> None:
            while len(got) < size:
                data = await stream.receive_some()
                assert data, "the client closed early"
                got.extend(data)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_all)
            for offset in range(0, size, 65536):
                await stream.send_all(to_client[offset:offset + 65536])
        results.append(bytes(got))
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        if driver == "serve":
            from gtls.server import serve_tls_over_tcp

            listeners = await nursery.start(
                lambda task_status: serve_tls_over_tcp(full_duplex, 0, server_ctx, host="127.0.0.1",
                                                       task_status=task_status))
            port = listeners[0].socket.getsockname()[1]
        else:
            raw_listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            closing.extend(raw_listeners)
            port = raw_listeners[0].socket.getsockname()[1]

            async def accept_bio() -> None:
                for _ in range(3):
                    transport = await raw_listeners[0].accept()
                    await full_duplex(TLSStream(transport, server_ctx, driver="bio"))  # type: ignore[arg-type]

            nursery.start_soon(accept_bio)
        with trio.fail_after(120):
            for _ in range(3):
                echoed = await trio.to_thread.run_sync(python_key_update_client, port, pki.ca_file, to_server, size)
                assert echoed == to_client
        with trio.fail_after(10):
            while len(results) < 3:
                await trio.sleep(0.05)
        assert results == [to_server] * 3
        nursery.cancel_scope.cancel()
    for listener in closing:
        await listener.aclose()


async def test_peer_renegotiation_is_refused(pki: PKI) -> None:
    seen: list[TLSStream] = []
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(await _echo_server(pki, "1.2", seen))
        port = listeners[0].socket.getsockname()[1]
        async with openssl_session(port, ca=pki.ca_file, args=["-tls1_2"]) as client:
            await client.send(b"before\n")
            await client.expect(b"before\n")
            await client.send(b"R\n")  # s_client: start a renegotiation
            await client.expect(b"RENEGOTIATING")
            await client.expect(b"no renegotiation")  # our no_renegotiation alert ends its attempt
        nursery.cancel_scope.cancel()
    (stream,) = seen
    assert stream._engine.conn.total_renegotiations() == 0


@pytest.mark.parametrize("version", ["1.3", "1.2"])
async def test_public_api_path_behaves_the_same(
    pki: PKI, tmp_path: Path, version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback engine path (pyOpenSSL's public methods, gtls._binding.ENGINE off): handshake, data both ways,
    close, and a failure."""
    monkeypatch.setattr(_binding, "ENGINE", False)
    client, server = await _unhandshaken(pki, "socket", version)
    assert client._engine._ssl is None and server._engine._ssl is None
    async with client, server:
        await handshake_both(client, server)
        await client.send_all(b"x" * 100_000)
        got = b""
        while len(got) < 100_000:
            got += await server.receive_some()
        await server.send_all(b"back")
        assert await client.receive_some() == b"back"
    other = write_pki(tmp_path / "other")
    a, b = await tcp_transport_pair()
    bad_client = TLSStream(a, compile_settings(other.client_options(), "client"), server_hostname="localhost")
    bad_server = TLSStream(b, contexts(pki, version)[0])
    async with bad_client, bad_server, trio.open_nursery() as nursery:
        nursery.start_soon(_swallow, bad_server.do_handshake)
        with pytest.raises(HandshakeError) as caught:
            await bad_client.do_handshake()
    assert caught.value.reason == "untrusted"


@pytest.mark.parametrize("version", ["1.3", "1.2"])
@pytest.mark.parametrize("driver", ["socket", "bio"])
async def test_a_send_never_hides_arrived_data_from_a_waiting_receiver(pki: PKI, version: str, driver: str) -> None:
    """A TLS 1.3 client's first writes look for a late rejection, which reads the socket. With a receiver already
    waiting, a record taken into OpenSSL's buffer that way left the socket unreadable and the receiver asleep for
    good. The peer here is Python's ssl module in a thread: it sends a greeting while our event loop is busy (so the
    record is there before the send), then waits for our request."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    pinned = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[version]
    context.minimum_version = context.maximum_version = pinned
    greet, done = threading.Event(), threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def peer() -> None:
        raw, _ = listener.accept()
        with context.wrap_socket(raw, server_side=True) as conn:
            conn.settimeout(10)
            if greet.wait(10):
                conn.sendall(b"greeting\n")
                conn.recv(100)  # our request; then silence until the test ends (a close would wake the receiver)
                done.wait(10)

    thread = threading.Thread(target=peer, daemon=True)
    thread.start()
    _, client_context = contexts(pki, version)
    got: list[bytes] = []
    try:
        transport = await trio.open_tcp_stream("127.0.0.1", listener.getsockname()[1])
        async with TLSStream(transport, client_context, server_hostname="localhost", driver=driver) as stream:
            await stream.do_handshake()

            async def receive() -> None:
                got.append(await stream.receive_some())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive)
                await trio.sleep(0.1)  # the receiver is waiting
                greet.set()
                time.sleep(0.3)  # no checkpoint: the greeting arrives while the loop is busy
                await stream.send_all(b"request\n")
                with trio.fail_after(5):
                    while not got:  # bounded by fail_after
                        await trio.sleep(0.01)
    finally:
        greet.set()
        done.set()
        listener.close()
        thread.join(10)
    assert got == [b"greeting\n"]


@pytest.mark.parametrize("driver", ["socket", "bio"])
async def test_a_reset_while_the_server_answers_the_hello_is_eof_in_handshake(pki: PKI, driver: str) -> None:
    """The client (pyOpenSSL's own state machine, no gtls) sends its ClientHello and resets the connection. The
    server's reply then fails to send: on both drivers ``do_handshake`` raises eof-in-handshake naming the reset,
    chained to the transport's error (the memory-BIO driver used to drop it for a causeless TLSError)."""
    hello_maker = SSL.Connection(SSL.Context(SSL.TLS_CLIENT_METHOD), None)
    hello_maker.set_connect_state()
    with pytest.raises(SSL.WantReadError):
        hello_maker.do_handshake()
    client, server_transport = await tcp_transport_pair()
    server_context, _ = contexts(pki, "1.3")
    server = TLSStream(server_transport, server_context, driver=driver)
    await client.send_all(hello_maker.bio_read(65536))
    client.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await trio.sleep(0.05)
    client.socket.close()  # RST
    await trio.sleep(0.05)
    with trio.fail_after(5), pytest.raises(HandshakeError) as caught:
        await server.do_handshake()
    await server.aclose()
    error = caught.value
    assert error.reason == "eof-in-handshake" and "reset" in error.message
    assert error.__cause__ is not None
    assert classify_ending(error).word == "eof-in-handshake"


@pytest.mark.parametrize("driver", ["socket", "bio"])
async def test_a_receive_asking_for_more_than_any_buffer_returns_what_came(pki: PKI, driver: str) -> None:
    """trio's contract takes any positive ``max_bytes``: 2**31 and more (past a C int) returns the data that came,
    in a buffer of the engine's own size (audit 58: uncapped, the request became an allocation and an overflow)."""
    server_ctx, client_ctx = contexts(pki, "1.3")
    a, b = await tcp_transport_pair()
    client = TLSStream(a, client_ctx, server_hostname="localhost", driver=driver)  # type: ignore[arg-type]
    server = TLSStream(b, server_ctx, driver=driver)  # type: ignore[arg-type]
    async with client, server:
        with trio.fail_after(5):
            await handshake_both(client, server)
            await client.send_all(b"hello")
            assert await server.receive_some(1 << 31) == b"hello"
            await client.send_all(b"again")
            assert await server.receive_some(1 << 40) == b"again"


async def test_a_handshake_flight_larger_than_the_socket_buffers_waits_to_write(tmp_path: Path) -> None:
    """A server certificate of ~75 KB over a connection with 4 KiB buffers: the server's flight does not fit, OpenSSL
    reports WANT_WRITE mid-handshake, and the handshake must wait for the socket to drain (waiting to read instead
    deadlocks: the client sends nothing until it has the whole flight; audit 58)."""
    ca = CA.root("big flight root")
    leaf = ca.leaf("localhost", dns=["localhost", *(f"name-{i:05d}.example.test" for i in range(3000))])
    options = TLSOptions.from_mapping({
        "certificate": str(write_pem(tmp_path / "cert.pem", leaf.cert_pem)),
        "certificate-key": str(leaf.write_key(tmp_path / "key.pem")),
        "trusted-ca": str(ca.write_cert(tmp_path / "ca.pem")),
    })
    listener = trio.socket.socket()
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # inherited by the accepted socket
        await listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        raw = trio.socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await raw.connect(listener.getsockname())
        conn, _ = await listener.accept()
    finally:
        listener.close()
    server = TLSStream(trio.SocketStream(conn), options, server_side=True)
    client = TLSStream(trio.SocketStream(raw), options, server_hostname="localhost")
    async with server, client:
        with trio.fail_after(10):
            await handshake_both(client, server)
            await client.send_all(b"hello")
            assert await server.receive_some() == b"hello"


async def test_a_refused_hello_over_a_transport_that_never_takes_the_alert_still_fails(pki: PKI) -> None:
    """Over a lockstep stream whose peer never reads, our alert for its bad hello can never be sent: the handshake
    gives up on delivering it (1 s) and raises its reason, instead of waiting forever (audit 58)."""
    server_context, _ = contexts(pki, "1.3")
    peer, transport = trio.testing.lockstep_stream_pair()
    server = TLSStream(transport, server_context)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(peer.send_all, oversized_record())
        with trio.fail_after(10), pytest.raises(HandshakeError) as caught:
            await server.do_handshake()
    assert caught.value.reason == "not-tls"
    await trio.aclose_forcefully(server)
    await trio.aclose_forcefully(peer)


@pytest.mark.parametrize("driver", ["socket", "bio"])
async def test_a_refused_hello_from_a_peer_that_reset_keeps_its_reason(pki: PKI, driver: str) -> None:
    """The peer sends a record no TLS peer may send and resets at once: our alert then cannot be sent, and
    ``do_handshake`` still raises the handshake's reason, not the failed send of the alert (audit 58: the memory-BIO
    driver's best-effort flush let that send's BrokenResourceError escape)."""
    client, server_transport = await tcp_transport_pair()
    server_context, _ = contexts(pki, "1.3")
    server = TLSStream(server_transport, server_context, driver=driver)
    await client.send_all(oversized_record())
    client.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.socket.close()  # RST: on loopback it is there before the server reads the record
    with trio.fail_after(5), pytest.raises(HandshakeError) as caught:
        await server.do_handshake()
    await server.aclose()
    assert caught.value.reason in ("not-tls", "eof-in-handshake")


@pytest.mark.parametrize("driver", ["socket", "bio"])
@pytest.mark.parametrize("ending", ["reset", "aclose", "cancel"])
async def test_a_send_that_fails_lets_go_of_the_callers_buffer(pki: PKI, driver: str, ending: str) -> None:
    """A send_all that the peer's reset, our own aclose from another task, or a cancellation ends while it waits:
    the caller may resize its bytearray at once. The engine kept the buffer for a repeat that could not come, and
    the recorded failures' tracebacks kept views of it in their frames: BufferError, and the memory held, while the
    stream lived. (A cancelled send over memory buffers breaks the stream; on the fast path the stream keeps a copy
    of what OpenSSL needs again.)"""
    server_ctx, client_ctx = contexts(pki, "1.3")
    a, b = await tcp_transport_pair()
    client = TLSStream(a, client_ctx, server_hostname="localhost", driver=driver)
    server = TLSStream(b, server_ctx)
    await handshake_both(client, server)
    data = bytearray(8 * 1024 * 1024)  # far more than loopback buffers hold: the send waits for a reader
    raised: list[type[BaseException]] = []
    sending = trio.CancelScope()

    async def send() -> None:
        with sending:
            try:
                await client.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raised.append(type(exc))

    async def end_it() -> None:
        await trio.testing.wait_all_tasks_blocked()
        if ending == "reset":
            b.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            b.socket.close()
        elif ending == "aclose":
            await client.aclose()
        else:
            sending.cancel()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            nursery.start_soon(end_it)
    expected = {"reset": [trio.BrokenResourceError], "aclose": [trio.ClosedResourceError], "cancel": []}[ending]
    assert raised == expected and (ending != "cancel" or sending.cancelled_caught)
    data.extend(b"more")  # BufferError while anything still holds a view of it
    data.clear()
    await client.aclose()
    await server.aclose()


async def test_a_send_that_waited_and_finished_lets_go_of_the_callers_buffer(pki: PKI) -> None:
    """A send_all that had to wait for the socket (OpenSSL held a record, kept for a detour with the caller's
    buffer) and then finished: the engine must forget that buffer, or the caller's bytearray cannot be resized
    while the stream lives (audit 46, mutant e7)."""
    server_ctx, client_ctx = contexts(pki, "1.3")
    a, b = await tcp_transport_pair()
    client = TLSStream(a, client_ctx, server_hostname="localhost")
    server = TLSStream(b, server_ctx)
    await handshake_both(client, server)
    data = bytearray(4 * 1024 * 1024)  # far more than loopback buffers hold: the send waits for the reader
    got = 0

    async def read_all() -> None:
        nonlocal got
        while got < len(data):
            got += len(await server.receive_some())

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_all)
            await client.send_all(data)
    assert got == len(data)
    data.extend(b"more")  # BufferError while anything still holds a view of it
    data.clear()
    await client.aclose()
    await server.aclose()


@pytest.mark.parametrize("driver", ["socket", "bio"])
async def test_a_send_failing_in_one_task_leaves_the_task_that_cancelled_an_earlier_send_alone(
        pki: PKI, driver: str) -> None:
    """Task A's send is cancelled (over memory buffers that breaks the stream, and the driver records the Cancelled,
    whose traceback runs through A's own frames); A goes on. Task B's later send fails on the broken stream. Letting
    go of B's data must not touch A: a first version cleared every frame in the recorded tracebacks, which finished
    A's suspended coroutine ("Cancel scope stack corrupted")."""
    server_ctx, client_ctx = contexts(pki, "1.3")
    a, b = await tcp_transport_pair()
    client = TLSStream(a, client_ctx, server_hostname="localhost", driver=driver)
    server = TLSStream(b, server_ctx, driver=driver)
    await handshake_both(client, server)
    steps: list[int] = []
    a_stopped = trio.Event()

    async def task_a() -> None:
        with trio.move_on_after(0.2):
            await client.send_all(b"a" * 8 * 1024 * 1024)  # far more than loopback buffers hold
        a_stopped.set()
        for step in range(5):
            await trio.sleep(0.02)
            steps.append(step)

    async def task_b() -> None:
        await a_stopped.wait()
        if driver == "socket":  # the cancelled send left the stream usable: break it for real
            b.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            b.socket.close()
        with pytest.raises(trio.BrokenResourceError):
            for _ in range(100):  # bounded: the reset is seen within a few sends
                await client.send_all(b"b" * 65536)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(task_a)
            nursery.start_soon(task_b)
    assert steps == [0, 1, 2, 3, 4]
    await client.aclose()
    await server.aclose()


async def test_a_failed_send_leaves_an_exception_the_caller_is_handling_alone(pki: PKI, tmp_path: Path) -> None:
    """Letting go of a failed send's data clears gtls's finished frames in the failure's own tracebacks, and must
    stop there: it followed ``__context__`` into the exception the caller was handling around the send, and wiped
    the locals a debugger or error reporter reads in that one's frames."""
    server_ctx, client_ctx = contexts(pki, "1.3")
    a, b = await tcp_transport_pair()
    client = TLSStream(a, client_ctx, server_hostname="localhost")
    server = TLSStream(b, server_ctx)
    await handshake_both(client, server)
    b.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    b.socket.close()

    def gtls_locals(exc: BaseException) -> list[int]:
        counts, tb = [], exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_globals.get("__name__", "").startswith("gtls."):
                counts.append(len(tb.tb_frame.f_locals))
            tb = tb.tb_next
        return counts

    try:
        compile_settings(TLSOptions(trusted_ca=str(tmp_path / "missing.pem")), "client")
    except ConfigError as handled:
        before = gtls_locals(handled)
        with pytest.raises(trio.BrokenResourceError):
            for _ in range(100):  # bounded: the reset is met within a few sends
                await client.send_all(b"x" * 65536)
        assert before and any(before) and gtls_locals(handled) == before
    await client.aclose()
    await server.aclose()


class Stalling(trio.abc.Stream):
    """A transport whose sends can be held, as on a congested link."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.flowing = trio.Event()
        self.flowing.set()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.flowing.wait()
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_receive_cancelled_behind_a_stuck_send_loses_no_output(pki: PKI) -> None:
    """Memory BIOs: a TLS 1.2 peer asks to renegotiate while our send is stuck in the transport; the receive that
    reads the request makes the refusal alert and waits to send it behind that send, under a timeout. It had taken
    the alert out of OpenSSL first, so the timeout lost it and the stream broke ("a send was cancelled part-way
    through a TLS record"). Now the alert waits in the driver: the stream goes on, as trio's SSLStream does."""
    server_ctx, _ = contexts(pki, "1.2")
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with openssl_session(port, ca=pki.ca_file, args=["-tls1_2"]) as peer:
        with trio.fail_after(20):
            link = Stalling(await listeners[0].accept())
            stream = TLSStream(link, server_ctx, driver="bio")
            await stream.do_handshake()
            await peer.send(b"ping\n")
            assert await stream.receive_some() == b"ping\n"
            link.flowing = trio.Event()  # the link stalls
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stream.send_all, b"held\n")  # stuck in the transport, holding the send lock
                await trio.testing.wait_all_tasks_blocked()
                await peer.send(b"R\n")  # s_client: renegotiate
                await peer.expect(b"RENEGOTIATING")
                with trio.move_on_after(1) as timed_out:
                    await stream.receive_some()
                assert timed_out.cancelled_caught
                link.flowing.set()
            # s_client itself then quits on our data arriving mid-renegotiation ("unexpected record"), so the next
            # send may meet a closed connection; what it must not meet is a stream we broke ourselves.
            try:
                await stream.send_all(b"after\n")
            except trio.BrokenResourceError as exc:
                assert "cancelled part-way" not in str(exc.__cause__), exc.__cause__
                assert isinstance(exc.__cause__, OSError | TransportFailed), exc.__cause__
        await trio.aclose_forcefully(stream)
    for listener in listeners:
        await listener.aclose()


@pytest.mark.parametrize("driver", ["socket", "bio"])
async def test_close_notify_after_user_canceled_is_a_clean_end(pki: PKI, driver: str) -> None:
    """Java's ``SSLSocket.close()`` in TLS 1.3 sends user_canceled, then close_notify. OpenSSL 3.5 reports that end
    as an EOF without close_notify (its ZERO_RETURN follows only a close_notify that was the last warning alert
    read), so every clean close of a Java peer read as ``truncated``. Both alerts come from a real TLS client here,
    protected by hand with its own traffic keys."""
    server_context, _ = contexts(pki, "1.3")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        raw_client = socket.create_connection(listener.getsockname(), timeout=IO_TIMEOUT)
        raw_server, _ = listener.accept()
    client = MemoryClient(raw_client)
    server = TLSStream(trio.SocketStream(trio.socket.from_stdlib_socket(raw_server)), server_context, driver=driver)

    def client_side() -> None:
        client.handshake()
        client.send(b"ping")
        client.send_tls13_alerts(90, 0)  # user_canceled, then close_notify

    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.to_thread.run_sync, client_side)
                await server.do_handshake()
                assert await server.receive_some() == b"ping"
                assert await server.receive_some() == b""
                assert await server.receive_some() == b""  # an end stays an end
    finally:
        await server.aclose()
        raw_client.close()


@pytest.mark.parametrize("data_first", [False, True], ids=["first-record", "after-data"])
@pytest.mark.parametrize("driver", ["socket", "bio"])
async def test_unsolicited_post_handshake_message_is_bad_record(pki: PKI, driver: str, data_first: bool) -> None:
    await _unsolicited_certificate_request(pki, driver, data_first=data_first, send_first=False)


@pytest.mark.parametrize("driver", ["socket", "bio"])
async def test_unsolicited_post_handshake_message_met_by_a_send_is_bad_record(pki: PKI, driver: str) -> None:
    """The same message found by a client that writes first: its early writes look for the server's late
    rejection, and what they found there was raised without its OpenSSL cause, so it read as ``error`` (review)."""
    await _unsolicited_certificate_request(pki, driver, data_first=False, send_first=True)


async def _unsolicited_certificate_request(pki: PKI, driver: str, *, data_first: bool, send_first: bool) -> None:
    """A TLS 1.3 server sends our client a CertificateRequest it never offered post_handshake_auth for (an
    unexpected message; OpenSSL answers unexpected_message). Only the server's alert on the first record is a late
    rejection of the handshake: this is the peer's protocol error, bad-record, whether or not data came first (it
    was a handshake failure, not-tls, when nothing had been read yet)."""
    _, client_context = contexts(pki, "1.3")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        raw_client = socket.create_connection(listener.getsockname(), timeout=IO_TIMEOUT)
        raw_server, _ = listener.accept()
    raw_server.settimeout(IO_TIMEOUT)
    server = MemoryServer(raw_server, pki.server_cert, pki.server_key)
    client = TLSStream(trio.SocketStream(trio.socket.from_stdlib_socket(raw_client)), client_context,
                       server_hostname="localhost", driver=driver)

    def server_side() -> None:
        server.handshake()
        if data_first:
            server.send(b"first")
        server.send_handshake_message(certificate_request())

    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.to_thread.run_sync, server_side)
                await client.do_handshake()
            if data_first:
                assert await client.receive_some() == b"first"
            with pytest.raises(trio.BrokenResourceError) as caught:
                if send_first:
                    await trio.sleep(0.2)  # the record is there to find
                    for _ in range(8):  # bounded: the first writes look for a rejection
                        await client.send_all(b"x")
                await client.receive_some()
            # and the server learns why: memory buffers held our alert for a send that never came (audit 42)
            alert = await trio.to_thread.run_sync(server.read_alert)
    finally:
        await trio.aclose_forcefully(client)
        raw_server.close()
    assert alert is not None and "unexpected message" in alert, alert
    assert not isinstance(caught.value.__cause__, HandshakeError), caught.value.__cause__
    ending = classify_ending(caught.value)
    assert (ending.word, ending.alert) == ("bad-record", None), ending
    assert "unexpected message" in ending.detail


async def test_ssl_module_names_for_code_written_against_trio_sslstream(tmp_path: Path) -> None:
    """getpeercert() (both forms), version() and server_side, as trio's SSLStream (Python's ssl) has them, so code
    ported from it keeps reading them. The dict is compared with what Python's ssl gives for the same certificate."""
    from tests.test_ssl_compat import access_and_crl_extensions, every_san, many_attributes

    root = CA.root("compat root")
    # every kind of field ssl decodes: many name attributes, every kind of subjectAltName, an odd-length serial,
    # authorityInfoAccess and CRL distribution points
    leaf = root.leaf(subject=many_attributes(), other_sans=every_san(), dns=["localhost"], serial=0xABC,
                     extensions=access_and_crl_extensions())
    ca_file = write_pem(tmp_path / "ca.pem", root)
    server_ctx = compile_settings(TLSOptions.from_mapping({
        "certificate": str(write_pem(tmp_path / "leaf.pem", leaf)),
        "certificate-key": str(leaf.write_key(tmp_path / "key.pem")),
        "trusted-ca": str(ca_file)}), "server")
    client_ctx = compile_settings(TLSOptions.from_mapping({"trusted-ca": str(ca_file)}), "client")
    python = python_context(server=False, ca=ca_file)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        raw_server = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        python_side, _ = listener.accept()
        gtls_client = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        gtls_server_side, _ = listener.accept()
    servers = [TLSStream(trio.SocketStream(trio.socket.from_stdlib_socket(sock)), server_ctx)
               for sock in (python_side, gtls_server_side)]
    client = TLSStream(trio.SocketStream(trio.socket.from_stdlib_socket(gtls_client)), client_ctx,
                       server_hostname="localhost")
    expected: list[dict[str, object]] = []

    def python_client() -> None:
        with python.wrap_socket(raw_server, server_hostname="localhost") as conn:
            cert = conn.getpeercert()
            assert cert is not None
            expected.append(dict(cert))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, python_client)
        for server in servers:
            nursery.start_soon(server.do_handshake)
        await client.do_handshake()
    try:
        cert = client.getpeercert()
        assert cert == expected[0]
        assert cert is not None and cert["serialNumber"] == "0ABC"
        assert {"OCSP", "caIssuers", "crlDistributionPoints", "subjectAltName"} <= cert.keys()
        assert client.getpeercert(binary_form=True) == leaf.cert.public_bytes(serialization.Encoding.DER)
        assert client.version() == client.tls_version == "TLSv1.3"
        assert not client.server_side and servers[1].server_side
        assert servers[1].getpeercert() is None  # no client certificate
    finally:
        for stream in (client, *servers):
            await trio.aclose_forcefully(stream)


async def _socket_bound_pair(pki: PKI, made_by: str) -> tuple[TLSStream, TLSStream]:
    """(stream under test, its peer), handshaken: a TLSStream over a trio.SocketStream, or a listener's stream (a
    bare socket, its trio.SocketStream made only when ``transport_stream`` is asked for)."""
    server_ctx, client_ctx = contexts(pki, "1.3")
    if made_by == "constructor":
        a, b = await tcp_transport_pair()
        stream, peer = TLSStream(a, client_ctx, server_hostname="localhost"), TLSStream(b, server_ctx)
    else:
        from gtls import open_tls_over_tcp_listeners

        listeners = await open_tls_over_tcp_listeners(0, server_ctx, host="127.0.0.1")
        try:
            port = listeners[0].transport_listener.socket.getsockname()[1]  # type: ignore[attr-defined]
            raw = await trio.open_tcp_stream("127.0.0.1", port)
            peer = TLSStream(raw, client_ctx, server_hostname="localhost")
            stream = await listeners[0].accept()
        finally:
            await listeners[0].aclose()
    assert stream.socket_bound
    await handshake_both(stream, peer)
    return stream, peer


@pytest.mark.parametrize("made_by", ["constructor", "listener"])
async def test_a_socket_closed_underneath_the_stream_is_never_used_again(pki: PKI, made_by: str) -> None:
    """Closing ``transport_stream`` under a socket-bound stream (audit 65, found by differential testing against
    trio's SSLStream): OpenSSL held only the descriptor's number, which the next socket the process opened took, so
    a later ``send_all`` "succeeded" by writing its record into that unrelated connection, and
    ``wait_send_all_might_not_block`` raised ValueError. Every call now raises ``BrokenResourceError`` (trio's SSLStream
    raises its transport's ClosedResourceError), ``aclose`` writes nothing, and the reused descriptor is left alone."""
    stream, peer = await _socket_bound_pair(pki, made_by)
    spare: list[socket.socket] = []
    try:
        with trio.fail_after(IO_TIMEOUT):
            transport = stream.transport_stream
            assert isinstance(transport, trio.SocketStream)
            fd = transport.socket.fileno()
            await transport.aclose()
            with pytest.raises(trio.BrokenResourceError) as caught:
                await stream.wait_send_all_might_not_block()
            assert "closed underneath" in str(caught.value)
            while len(spare) < 8 and fd not in [s.fileno() for s in spare]:  # the freed number is taken again
                spare.extend(socket.socketpair())
            reused = next(s for s in spare if s.fileno() == fd)
            other_end = spare[spare.index(reused) ^ 1]
            other_end.setblocking(False)
            for call in (lambda: stream.send_all(b"meant for the first peer"), stream.receive_some,
                         stream.send_eof, stream.do_handshake):
                with pytest.raises(trio.BrokenResourceError):
                    await call()
            await stream.aclose()
            with pytest.raises(BlockingIOError):
                other_end.recv(100)  # no record (nor close_notify) reached the connection that took the number
            with pytest.raises(trio.BrokenResourceError):  # the peer: an EOF without close_notify
                await peer.receive_some()
    finally:
        for s in spare:
            s.close()
        await trio.aclose_forcefully(stream)
        await trio.aclose_forcefully(peer)
