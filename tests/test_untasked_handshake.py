"""The serving loop advances each handshake without a task of its own (gtls._serve): the connection's task starts
once the handshake is over. Clients here are driven by hand (Python's ``ssl.SSLObject`` over a trio socket), so a
handshake can be stopped half-way: the ClientHello sent and the server's flight received, the Finished not sent."""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import pytest
import trio

import gtls._serve
from gtls import HandshakeEvent, TLSOptions
from gtls._poller import Poller
from gtls._serve import CONNECTION_TASK_NAME, serve_listeners
from gtls.server import open_tls_over_tcp_listeners, serve_tls_over_tcp
from gtls.testing import CA, write_pem
from tests.peers import PKI, echo_line, python_context, settled, write_pki

pytestmark = pytest.mark.skipif(not hasattr(__import__("select"), "epoll"), reason="the poller is Linux's epoll")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return write_pki(tmp_path_factory.mktemp("untasked-pki"))


class HalfwayClient:
    """A TLS 1.3 client whose handshake goes one step at a time: ``hello()`` sends the ClientHello, ``finish()``
    reads the server's flight and sends the Finished."""

    def __init__(self, sock: trio.socket.SocketType, context: ssl.SSLContext) -> None:
        self.sock = sock
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")

    @classmethod
    async def connect(cls, port: int, pki: PKI) -> HalfwayClient:
        sock = trio.socket.socket()
        await sock.connect(("127.0.0.1", port))
        return cls(sock, python_context(server=False, ca=pki.ca_file, version="1.3", check_hostname=True))

    async def _flush(self) -> None:
        data = self.outgoing.read()
        while data:
            data = data[await self.sock.send(data):]

    async def _pull(self) -> bool:
        """More bytes from the server into the TLS object; False at EOF."""
        data = await self.sock.recv(65536)
        if data:
            self.incoming.write(data)
        return bool(data)

    async def hello(self) -> None:
        with contextlib.suppress(ssl.SSLWantReadError):
            self.tls.do_handshake()
        await self._flush()

    async def finish(self) -> None:
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                assert await self._pull(), "the server closed the connection mid-handshake"
        await self._flush()

    async def echo(self, line: bytes) -> bytes:
        self.tls.write(line)
        await self._flush()
        while True:
            try:
                return self.tls.read(65536)
            except ssl.SSLWantReadError:
                assert await self._pull(), "the server closed the connection"

    async def read_to_eof(self) -> int:
        """Read until the server closes; the bytes read (its handshake flight, whatever it had sent)."""
        total = 0
        while True:
            try:
                data = await self.sock.recv(65536)
            except ConnectionResetError:
                return total
            if not data:
                return total
            total += len(data)

    def close(self) -> None:
        self.sock.close()


def connection_tasks() -> int:
    """The serving loop's connection tasks alive in this run."""
    found = 0
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        found += task.name == CONNECTION_TASK_NAME
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return found


@asynccontextmanager
async def server(pki: PKI, nursery: trio.Nursery, **kwargs: object) -> AsyncIterator[int]:
    listeners = await nursery.start(
        lambda task_status: serve_tls_over_tcp(echo_line, 0, pki.server_options(), host="127.0.0.1",
                                               task_status=task_status, **kwargs)
    )
    yield listeners[0].socket.getsockname()[1]


async def test_clients_mid_handshake_hold_no_task_until_they_finish(pki: PKI) -> None:
    events: list[HandshakeEvent] = []
    clients: list[HalfwayClient] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery, server(pki, nursery, on_handshake=events.append) as port:
            try:
                for _ in range(10):
                    client = await HalfwayClient.connect(port, pki)
                    clients.append(client)
                    await client.hello()
                await settled()
                assert connection_tasks() == 0  # ten handshakes half-way, the server's flights sent: no task
                assert events == []
                for i, client in enumerate(clients):
                    await client.finish()
                    assert await client.echo(b"%d\n" % i) == b"%d\n" % i
                assert [event.ok for event in events] == [True] * 10
            finally:
                for client in clients:
                    client.close()
            nursery.cancel_scope.cancel()


async def test_a_cap_on_handshakes_in_flight_runs_each_handshake_in_its_task(pki: PKI) -> None:
    """``max_handshakes`` waits for a slot in the connection's task, so there the task starts at the accept."""
    clients: list[HalfwayClient] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery, server(pki, nursery, max_handshakes=50) as port:
            try:
                for _ in range(3):
                    client = await HalfwayClient.connect(port, pki)
                    clients.append(client)
                    await client.hello()
                await settled()
                assert connection_tasks() == 3
                await clients[0].finish()
                assert await clients[0].echo(b"capped\n") == b"capped\n"
            finally:
                for client in clients:
                    client.close()
            nursery.cancel_scope.cancel()


async def test_a_client_stalled_mid_handshake_is_dropped_at_its_deadline(
    pki: PKI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gtls.server")
    events: list[HandshakeEvent] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery, server(pki, nursery, handshake_timeout=0.5,
                                                          on_handshake=events.append) as port:
            client = await HalfwayClient.connect(port, pki)
            try:
                await client.hello()
                started = trio.current_time()
                assert await client.read_to_eof() > 0  # the server's flight, then its close at the deadline
                waited = trio.current_time() - started
            finally:
                client.close()
            await settled()
            assert connection_tasks() == 0
            nursery.cancel_scope.cancel()
    assert 0.3 <= waited < 3.0
    assert [event.reason for event in events] == ["timeout"]
    assert events[0].duration >= 0.4
    failures = [r.getMessage() for r in caplog.records if "handshake failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].startswith("handshake failed: timeout peer=127.0.0.1:")


async def test_the_event_duration_counts_from_the_accept(pki: PKI) -> None:
    """A client that connects, waits, then handshakes: ``duration`` covers the wait, as when the task ran it all."""
    events: list[HandshakeEvent] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery, server(pki, nursery, on_handshake=events.append) as port:
            client = await HalfwayClient.connect(port, pki)
            try:
                await trio.sleep(0.3)
                await client.hello()
                await client.finish()
                assert await client.echo(b"late\n") == b"late\n"
            finally:
                client.close()
            nursery.cancel_scope.cancel()
    assert [event.ok for event in events] == [True]
    assert 0.3 <= events[0].duration < 5.0


async def test_a_handshake_mid_way_when_the_server_stops_finishes_among_the_handlers(pki: PKI) -> None:
    events: list[HandshakeEvent] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as handlers:
            async with trio.open_nursery() as nursery, server(pki, nursery, handler_nursery=handlers,
                                                              on_handshake=events.append) as port:
                client = await HalfwayClient.connect(port, pki)
                await client.hello()
                await settled()
                nursery.cancel_scope.cancel()  # the server stops with the handshake half-way
            try:
                await client.finish()
                assert await client.echo(b"after the server\n") == b"after the server\n"
            finally:
                client.close()
            await settled()
            assert connection_tasks() == 0  # the handler saw the client's EOF and ended
    assert [event.ok for event in events] == [True]


async def test_a_handshake_mid_way_ends_with_its_server(pki: PKI) -> None:
    """Without a ``handler_nursery``, a half-way handshake is cut when the server stops: the client reads EOF."""
    events: list[HandshakeEvent] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery, server(pki, nursery, on_handshake=events.append) as port:
            client = await HalfwayClient.connect(port, pki)
            await client.hello()
            await settled()
            nursery.cancel_scope.cancel()
        try:
            assert await client.read_to_eof() > 0  # the server's flight, then the close
        finally:
            client.close()
        assert connection_tasks() == 0
    assert events == []  # cancelled with the server: not a handshake failure of the client's


async def test_without_the_poller_each_handshake_runs_in_its_task(pki: PKI, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without epoll (not Linux) nothing can call the loop back mid-handshake: the task starts at the accept."""
    monkeypatch.setattr(gtls._serve, "POLLER_AVAILABLE", False)
    events: list[HandshakeEvent] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery, server(pki, nursery, on_handshake=events.append) as port:
            client = await HalfwayClient.connect(port, pki)
            try:
                await client.hello()
                await settled()
                assert connection_tasks() == 1
                await client.finish()
                assert await client.echo(b"no poller\n") == b"no poller\n"
            finally:
                client.close()
            nursery.cancel_scope.cancel()
    assert [event.ok for event in events] == [True]


async def test_a_socket_the_poller_cannot_watch_is_handshaken_by_its_task(
    pki: PKI, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """epoll_ctl can refuse a socket (ENOSPC past max_user_watches, ENOMEM): the task then starts at once and waits
    through trio, and the deadline's close must still wake it: a driver that kept the refused poller would close the
    socket without telling trio, and the task would wait forever, its handshake never logged."""

    def refuse(self: Poller, fd: int, driver: object) -> bool:
        raise OSError(errno.ENOSPC, "no space left for another watch")

    monkeypatch.setattr(Poller, "add", refuse)
    caplog.set_level(logging.WARNING, logger="gtls.server")
    events: list[HandshakeEvent] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery, server(pki, nursery, handshake_timeout=1.0,
                                                          on_handshake=events.append) as port:
            finishing = await HalfwayClient.connect(port, pki)
            stalled = await HalfwayClient.connect(port, pki)
            try:
                await finishing.hello()
                await stalled.hello()
                await settled()
                assert connection_tasks() == 2
                await finishing.finish()
                assert await finishing.echo(b"refused watch\n") == b"refused watch\n"
                assert await stalled.read_to_eof() > 0  # the flight, then the close at the deadline
            finally:
                finishing.close()
                stalled.close()
            await settled()
            assert connection_tasks() == 0
            nursery.cancel_scope.cancel()
    assert [event.reason for event in events] == [None, "timeout"]
    assert len([r for r in caplog.records if r.getMessage().startswith("handshake failed: timeout")]) == 1


@pytest.fixture(scope="module")
def big_flight(tmp_path_factory: pytest.TempPathFactory) -> tuple[TLSOptions, Path]:
    """Settings whose server flight (a ~75 KB certificate) cannot fit in 4 KiB socket buffers; the CA file."""
    directory = tmp_path_factory.mktemp("big-flight")
    ca = CA.root("big flight root")
    leaf = ca.leaf("localhost", dns=["localhost", *(f"name-{i:05d}.example.test" for i in range(3000))])
    ca_file = ca.write_cert(directory / "ca.pem")
    options = TLSOptions.from_mapping({
        "certificate": str(write_pem(directory / "cert.pem", leaf.cert_pem)),
        "certificate-key": str(leaf.write_key(directory / "key.pem")),
        "trusted-ca": str(ca_file),
    })
    return options, ca_file


@asynccontextmanager
async def accepting_later(options: TLSOptions, nursery: trio.Nursery, **kwargs: object
                          ) -> AsyncIterator[tuple[int, Callable[[], Awaitable[object]]]]:
    """A listening port, and a function that starts serving it: what a client sends before that is there at the
    accept, so the accept's handshake step sees it."""
    listeners = await open_tls_over_tcp_listeners(0, options, host="127.0.0.1", **kwargs)  # type: ignore[arg-type]
    try:
        yield listeners[0].socket.getsockname()[1], partial(
            nursery.start, partial(serve_listeners, echo_line, listeners, listeners[0].handshaker,
                                   handler_nursery=None))
    finally:
        for listener in listeners:
            listener.socket.close()


@pytest.mark.parametrize("hello", ["before-the-accept", "after-the-accept"])
async def test_a_handshake_that_must_wait_to_write_gets_its_task(big_flight: tuple[TLSOptions, Path],
                                                                 hello: str) -> None:
    """The server's flight does not fit in the socket buffers: OpenSSL reports WANT_WRITE, in the accept's step or in
    one the poller runs. The task must then wait for the socket to drain; a wait for readability deadlocks (the
    client sends nothing until it has the whole flight) until the deadline."""
    options, ca_file = big_flight
    events: list[HandshakeEvent] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery, accepting_later(options, nursery, handshake_timeout=10.0,
                                                                   on_handshake=events.append) as (port, serve):
            sock = trio.socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window is set then
            await sock.connect(("127.0.0.1", port))
            client = HalfwayClient(sock, python_context(server=False, ca=ca_file, version="1.3",
                                                             check_hostname=True))
            try:
                if hello == "before-the-accept":
                    await client.hello()
                await serve()
                await settled()
                if hello == "after-the-accept":
                    await client.hello()
                await client.finish()
                assert await client.echo(b"big\n") == b"big\n"
            finally:
                client.close()
            nursery.cancel_scope.cancel()
    assert [event.ok for event in events] == [True]


async def test_a_hello_refused_in_the_accepts_step_is_closed_and_logged_once(
    pki: PKI, caplog: pytest.LogCaptureFixture
) -> None:
    """The accept's step can fail already, on bytes that came before the accept: the task must take over at once.
    Here five bytes that OpenSSL reads whole and refuses, so no later wake-up could hand the connection on; and the
    deadline does not close a stream that has already failed."""
    caplog.set_level(logging.WARNING, logger="gtls.server")
    events: list[HandshakeEvent] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery, accepting_later(pki.server_options(), nursery,
                                                                   handshake_timeout=1.0,
                                                                   on_handshake=events.append) as (port, serve):
            client = HalfwayClient(trio.socket.socket(), python_context(server=False, ca=pki.ca_file))
            try:
                await client.sock.connect(("127.0.0.1", port))
                await client.sock.send(b"GET /")
                await serve()
                with trio.fail_after(5):
                    await client.read_to_eof()
            finally:
                client.close()
            await settled()
            assert connection_tasks() == 0
            nursery.cancel_scope.cancel()
    assert [event.reason for event in events] == ["not-tls"]
    assert len([r for r in caplog.records if r.getMessage().startswith("handshake failed: not-tls")]) == 1
