"""Listeners and serve_tls_over_tcp: concurrency, the handshake deadline and cap, failure logging, events,
resource hygiene and EMFILE survival, with real clients over 127.0.0.1."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import pytest
import trio

from gtls import (
    ConfigError,
    HandshakeError,
    HandshakeEvent,
    TLSOptions,
    TLSStream,
    _sessions,
    classify_ending,
    open_tls_over_tcp_stream,
)
from gtls import context as context_module
from gtls.server import TLSListener, open_tls_over_tcp_listeners, serve_tls_over_tcp
from gtls.stream import compile_settings
from gtls.testing import CA
from tests.peers import (
    PKI,
    echo_line,
    openssl_client,
    python_context,
    python_ssl_client,
    settled,
    wrap_client,
    write_pki,
)

TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)  # Linux value


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return write_pki(tmp_path_factory.mktemp("server-pki"))


@asynccontextmanager
async def serving_listeners(pki: PKI, handler=echo_line,  # type: ignore[no-untyped-def]
                            **kwargs: object) -> AsyncIterator[list[TLSListener]]:
    """``serve_tls_over_tcp`` on a free loopback port for the block; its listeners (stopped after it)."""
    async with trio.open_nursery() as nursery:
        yield await nursery.start(
            lambda task_status: serve_tls_over_tcp(
                handler, 0, pki.server_options(), host="127.0.0.1", task_status=task_status, **kwargs
            )
        )
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def serving(pki: PKI, handler=echo_line, **kwargs: object) -> AsyncIterator[int]:  # type: ignore[no-untyped-def]
    async with serving_listeners(pki, handler, **kwargs) as listeners:
        yield listeners[0].socket.getsockname()[1]


async def round_trip(port: int, client_options: TLSOptions, message: bytes = b"hello\n") -> bytes:
    stream = await open_tls_over_tcp_stream("localhost", port, client_options)
    async with stream:
        await stream.send_all(message)
        data = b""
        while len(data) < len(message):
            chunk = await stream.receive_some()
            if not chunk:
                break
            data += chunk
        return data


async def test_200_concurrent_handshakes_on_one_listener(pki: PKI) -> None:
    events: list[HandshakeEvent] = []
    client_options = pki.client_options(tls_target_name_check="host")
    client_ctx = compile_settings(client_options, "client")
    results: list[bytes] = []
    async with serving(pki, on_handshake=events.append) as port:

        async def one(i: int) -> None:
            results.append(await round_trip(port, client_ctx, b"%d\n" % i))  # type: ignore[arg-type]

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for i in range(200):
                    nursery.start_soon(one, i)
    assert sorted(results) == sorted(b"%d\n" % i for i in range(200))
    assert len(events) == 200 and all(e.ok and e.tls_version == "TLSv1.3" for e in events)


async def test_handshakes_outliving_their_server_keep_their_deadline(pki: PKI) -> None:
    """With a ``handler_nursery``, a handshake in flight when the server stops still ends at its deadline, and the
    deadline task then ends too: the handler nursery finishes by itself, with nothing left running."""
    events: list[HandshakeEvent] = []
    silent: socket.socket | None = None
    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as handlers:
                async with trio.open_nursery() as server:
                    listeners = await server.start(
                        lambda task_status: serve_tls_over_tcp(
                            echo_line, 0, pki.server_options(), host="127.0.0.1", handshake_timeout=0.5,
                            on_handshake=events.append, handler_nursery=handlers, task_status=task_status,
                        )
                    )
                    silent = socket.create_connection(("127.0.0.1", listeners[0].socket.getsockname()[1]))
                    await trio.testing.wait_all_tasks_blocked()  # accepted: its handshake waits among the handlers
                    server.cancel_scope.cancel()
                started = trio.current_time()
            # The handler nursery ended on its own: the silent client was dropped at its deadline.
            ended_after = trio.current_time() - started
        silent.setblocking(False)
        assert silent.recv(100) == b""  # the server closed it
    finally:
        if silent is not None:
            silent.close()
    assert 0.3 <= ended_after < 2.0
    assert [e.reason for e in events] == ["timeout"]


async def test_a_handler_nursery_ends_once_handshakes_outliving_their_server_complete(pki: PKI) -> None:
    """The deadline task a stopped server leaves among the handlers ends as soon as the last handshake in flight is
    over, not at that handshake's deadline (60 s here): the handler nursery then finishes with its handlers
    (audit 58)."""
    replies: list[bytes] = []

    def late_client(sock: socket.socket) -> None:
        sock.settimeout(10)
        with wrap_client(python_context(server=False, ca=pki.ca_file), sock) as conn:
            conn.sendall(b"late\n")
            replies.append(conn.recv(100))

    with trio.fail_after(20):
        async with trio.open_nursery() as handlers:
            async with trio.open_nursery() as server:
                listeners = await server.start(
                    lambda task_status: serve_tls_over_tcp(
                        echo_line, 0, pki.server_options(), host="127.0.0.1", handshake_timeout=60,
                        handler_nursery=handlers, task_status=task_status,
                    )
                )
                sock = socket.create_connection(("127.0.0.1", listeners[0].socket.getsockname()[1]))
                await trio.testing.wait_all_tasks_blocked()  # accepted: its handshake waits among the handlers
                server.cancel_scope.cancel()
            started = trio.current_time()
            await trio.to_thread.run_sync(late_client, sock)
        ended_after = trio.current_time() - started
    assert replies == [b"late\n"]
    assert ended_after < 15  # the deadline task did not sleep on to the 60 s deadline


class _CountingStarter:
    """A ``handler_nursery`` that is not a nursery: trio documents "or any object with a start_soon method" (one
    that counts or limits connections, say), and calls it with positional arguments only."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self.started = 0

    def start_soon(self, async_fn: Callable[..., Awaitable[object]], *args: object) -> None:
        self.started += 1
        self.nursery.start_soon(async_fn, *args)


async def test_a_handler_nursery_may_be_any_object_with_start_soon_as_in_trio(pki: PKI) -> None:
    """Drop-in for ``trio.serve_ssl_over_tcp``: its ``handler_nursery`` may be any object with ``start_soon``. The
    serving loop gave it ``name=`` and its ``TypeError`` took the server down at the first connection, whose
    client (handshake done) then waited in vain (audit 67). Also across a stop: the reply after it comes back and
    a silent client's handshake still ends at its deadline."""
    replies: list[bytes] = []

    def client(port: int) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        with raw, wrap_client(python_context(server=False, ca=pki.ca_file), raw) as conn:
            conn.sendall(b"one\n")
            replies.append(conn.recv(100))
            time.sleep(0.3)  # the server stops meanwhile
            conn.sendall(b"two\n")
            replies.append(conn.recv(100))

    async def echo_twice(stream: TLSStream) -> None:
        for _ in range(2):
            await stream.send_all(await stream.receive_some(100))

    with trio.fail_after(10):
        async with trio.open_nursery() as handlers:
            starter = _CountingStarter(handlers)
            async with trio.open_nursery() as server:
                listeners = await server.start(
                    lambda task_status: serve_tls_over_tcp(
                        echo_twice, 0, pki.server_options(), host="127.0.0.1", handshake_timeout=0.5,
                        handler_nursery=starter, task_status=task_status,
                    )
                )
                port = listeners[0].socket.getsockname()[1]
                silent = socket.create_connection(("127.0.0.1", port))
                handlers.start_soon(trio.to_thread.run_sync, client, port)
                await wait_for(lambda: len(replies) == 1)
                server.cancel_scope.cancel()
        with silent:
            silent.setblocking(False)
            assert silent.recv(100) == b""  # dropped at its deadline, after the stop
    assert replies == [b"one\n", b"two\n"]
    assert starter.started >= 2  # the connections, and the deadline task left among the handlers


async def test_silent_client_does_not_delay_others_and_is_dropped(pki: PKI) -> None:
    events: list[HandshakeEvent] = []
    async with serving(pki, handshake_timeout=0.5, on_handshake=events.append) as port:
        silent = socket.create_connection(("127.0.0.1", port))
        silent_port = silent.getsockname()[1]
        try:
            started = trio.current_time()
            for _ in range(5):
                assert await round_trip(port, pki.client_options()) == b"hello\n"
            assert trio.current_time() - started < 0.5  # nobody waited for the silent one
            silent.setblocking(False)
            with trio.fail_after(5):
                while True:  # dropped at the deadline: the server closes, we see EOF
                    await trio.lowlevel.wait_readable(silent)
                    if silent.recv(100) == b"":
                        break
            dropped_after = trio.current_time() - started
        finally:
            silent.close()
    assert 0.45 <= dropped_after < 2.0
    timeouts = [e for e in events if not e.ok]
    assert [e.reason for e in timeouts] == ["timeout"]
    assert timeouts[0].peer == f"127.0.0.1:{silent_port}"
    assert sum(e.ok for e in events) == 5


async def test_failed_handshake_logged_once_and_never_reaches_handler(
    pki: PKI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    handled: list[TLSStream] = []

    async def handler(stream: TLSStream) -> None:
        handled.append(stream)

    mutual = pki.server_options(tls_mutual="1")
    caplog.set_level(logging.INFO, logger="gtls.server")
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            lambda task_status: serve_tls_over_tcp(handler, 0, mutual, host="127.0.0.1", task_status=task_status)
        )
        port = listeners[0].socket.getsockname()[1]
        # A Python ssl client without a certificate (TLS 1.2, so the client sees the alert in its handshake).
        context = python_context(server=False, ca=pki.ca_file, version="1.2")
        with pytest.raises(OSError):
            await trio.to_thread.run_sync(_python_handshake, port, context)
        await wait_for(lambda: bool(caplog.records))
        nursery.cancel_scope.cancel()
    assert handled == []
    failures = [r for r in caplog.records if r.name == "gtls.server"]
    assert len(failures) == 1
    line = failures[0].getMessage()
    assert line.startswith("handshake failed: no-peer-certificate peer=127.0.0.1:")
    assert "\n" not in line


def _python_handshake(port: int, context: object) -> None:
    import ssl

    assert isinstance(context, ssl.SSLContext)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, context.wrap_socket(raw) as conn:
        conn.recv(10)


async def wait_for(condition: object, timeout: float = 5.0) -> None:
    assert callable(condition)
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.01)


async def test_success_event_fields(pki: PKI) -> None:
    events: list[HandshakeEvent] = []
    mutual = pki.server_options(tls_mutual="1")
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            lambda task_status: serve_tls_over_tcp(
                echo_line, 0, mutual, host="127.0.0.1", on_handshake=events.append, task_status=task_status
            )
        )
        port = listeners[0].socket.getsockname()[1]
        assert await round_trip(port, pki.client_options(with_cert=True)) == b"hello\n"
        nursery.cancel_scope.cancel()
    (event,) = events
    assert event.ok and event.reason is None and event.error is None
    assert event.tls_version == "TLSv1.3" and event.cipher and event.cipher.startswith("TLS_")
    assert event.subject == pki.client.cert.subject.rfc4514_string()
    assert event.server_name == "localhost"
    assert event.peer and event.peer.startswith("127.0.0.1:")
    assert 0 <= event.duration < 5
    assert event.describe().startswith(f"{event.peer} TLSv1.3 TLS_")


async def test_a_raising_hook_is_logged_and_the_server_goes_on(pki: PKI, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[HandshakeEvent] = []

    def broken_metrics(event: HandshakeEvent) -> None:
        calls.append(event)
        raise ValueError("counter overflow")

    caplog.set_level(logging.INFO, logger="gtls.server")
    async with serving(pki, on_handshake=broken_metrics) as port:
        for _ in range(2):  # the connection whose event raised is served, and so is the next one
            assert await round_trip(port, pki.client_options()) == b"hello\n"
    assert len(calls) == 2
    errors = [r for r in caplog.records if r.name == "gtls.server" and r.levelno == logging.ERROR]
    assert len(errors) == 2 and errors[0].exc_info is not None and "on_handshake raised" in errors[0].getMessage()


async def test_an_async_hook_is_refused_not_silently_skipped(pki: PKI, caplog: pytest.LogCaptureFixture) -> None:
    """on_handshake is called on the handshake path and never awaited: an ``async def`` hook was accepted (its type
    allows any return value) and never ran, with only Python's "never awaited" warning to show for it."""
    async def metrics(event: HandshakeEvent) -> None:  # pragma: no cover - must never run
        raise AssertionError("not awaited by design")

    with trio.fail_after(5), pytest.raises(TypeError, match="on_handshake must be a plain function"):
        await serve_tls_over_tcp(echo_line, 0, pki.server_options(), host="127.0.0.1", on_handshake=metrics)

    class AsyncCall:  # a callable object whose __call__ is async: found when its first event is given
        async def __call__(self, event: HandshakeEvent) -> None:  # pragma: no cover - must never run
            raise AssertionError("not awaited by design")

    caplog.set_level(logging.INFO, logger="gtls.server")
    async with serving(pki, on_handshake=AsyncCall()) as port:
        assert await round_trip(port, pki.client_options()) == b"hello\n"  # the connection and server go on
    errors = [r for r in caplog.records if r.name == "gtls.server" and r.levelno == logging.ERROR]
    assert len(errors) == 1 and "on_handshake must be a plain function" in str(errors[0].exc_info[1])  # type: ignore[index]


async def test_served_stream_transport_is_made_on_demand(pki: PKI) -> None:
    """The serving loop hands OpenSSL the bare socket; transport_stream still gives the connection's SocketStream
    (TCP options as trio sets them), and after the close a closed one."""
    seen: list[tuple[TLSStream, tuple[str, int], int, int]] = []

    async def handler(stream: TLSStream) -> None:
        transport = stream.transport_stream
        assert isinstance(transport, trio.SocketStream) and transport is stream.transport_stream
        sock = transport.socket
        nodelay = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        seen.append((stream, sock.getpeername(), nodelay, sock.getsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT)))
        await echo_line(stream)

    async def plain_handler(stream: TLSStream) -> None:
        seen.append((stream, ("", 0), 0, 0))
        await echo_line(stream)

    async with serving(pki, handler) as port:
        assert await round_trip(port, pki.client_options()) == b"hello\n"
    async with serving(pki, plain_handler) as port:
        assert await round_trip(port, pki.client_options()) == b"hello\n"
    (asked, peer, nodelay, lowat), (unasked, *_) = seen
    assert asked.peer_address == f"{peer[0]}:{peer[1]}" and nodelay and lowat == 16384
    assert asked.transport_stream.socket.fileno() == -1
    closed = unasked.transport_stream  # first asked after the close
    assert isinstance(closed, trio.SocketStream) and closed.socket.fileno() == -1
    with pytest.raises(trio.ClosedResourceError):
        await closed.send_all(b"x")


async def test_max_handshakes_caps_handshakes_in_flight(pki: PKI) -> None:
    """With one slot held by a client that sent half a ClientHello and stalled, a real client's handshake waits for
    the slot (the staller's deadline), proving the cap; without the cap it would be immediate."""
    events: list[HandshakeEvent] = []
    async with serving(pki, handshake_timeout=0.6, max_handshakes=1, on_handshake=events.append) as port:
        with socket.create_connection(("127.0.0.1", port)) as staller:
            staller.sendall(b"\x16\x03\x01\x02\x00\x01")  # a handshake record header and one byte of its body
            await trio.sleep(0.1)  # let the server start the stalled handshake and take the slot
            started = trio.current_time()
            assert await round_trip(port, pki.client_options()) == b"hello\n"
            waited = trio.current_time() - started
    assert 0.35 <= waited < 3.0
    assert sorted(str(e.reason) for e in events) == ["None", "timeout"]


async def test_max_handshakes_slot_is_not_taken_by_a_silent_client(pki: PKI) -> None:
    """A client that connects and says nothing holds no slot: a flood of them cannot starve the clients behind it.
    It is still dropped at the deadline."""
    events: list[HandshakeEvent] = []
    async with serving(pki, handshake_timeout=1.5, max_handshakes=1, on_handshake=events.append) as port:
        with socket.create_connection(("127.0.0.1", port)), socket.create_connection(("127.0.0.1", port)):
            await trio.sleep(0.1)
            started = trio.current_time()
            assert await round_trip(port, pki.client_options()) == b"hello\n"
            waited = trio.current_time() - started
            assert waited < 1.5  # not held until the silent clients' deadline
            with trio.fail_after(5):
                while len(events) < 3:  # bounded by fail_after
                    await trio.sleep(0.05)
    assert sorted(str(e.reason) for e in events) == ["None", "timeout", "timeout"]
    assert events[0].ok  # served before the silent clients' deadlines ended, not after them


async def test_a_timeout_spent_waiting_for_a_handshake_slot_says_so(pki: PKI) -> None:
    """A handshake whose deadline went mostly on the wait for a slot under max_handshakes is a timeout whose message
    says so and names max_handshakes (raising handshake_timeout, the usual advice, would make such waits longer); the
    slot's holder, a client that stalled, gets the usual message (found by audit 87)."""
    events: list[HandshakeEvent] = []
    async with serving(pki, handshake_timeout=1.0, max_handshakes=1, on_handshake=events.append) as port:
        with socket.create_connection(("127.0.0.1", port)) as holder, \
                socket.create_connection(("127.0.0.1", port)) as waiter:
            holder_peer = "{}:{}".format(*holder.getsockname())
            holder.sendall(b"\x16\x03\x01\x02\x00\x01")  # a handshake record header and one byte of its body
            await trio.sleep(0.3)  # the holder takes the slot; the waiter asks for it 0.3 s into its deadline
            waiter.sendall(b"\x16\x03\x01\x02\x00\x01")
            await wait_for(lambda: len(events) == 2)
    [held] = [event for event in events if event.peer == holder_peer]
    [waited] = [event for event in events if event.peer != holder_peer]
    assert (held.reason, waited.reason) == ("timeout", "timeout")
    assert held.error is not None and "raise handshake_timeout if the client" in held.error.message
    assert waited.error is not None and "max_handshakes=1 handshake slots" in waited.error.message, waited.error
    assert "raise max_handshakes, or lower handshake_timeout" in waited.error.message


async def test_accepted_stream_whose_deadline_ran_out_waiting_for_a_slot_says_so(pki: PKI) -> None:
    """A stream from accept() whose (shorter) deadline ends while another handshake holds the only slot."""
    (listener,) = await open_tls_over_tcp_listeners(0, pki.server_options(), host="127.0.0.1", max_handshakes=1,
                                                    handshake_timeout=2.0)
    causes: list[BaseException | None] = []

    async def first_use(stream: TLSStream) -> None:
        try:
            await stream.receive_some()
        except trio.BrokenResourceError as exc:
            causes.append(exc.__cause__)
        finally:
            stream._close_now(False)  # also when cancelled: the holder's handshake is still waiting then

    async with listener, trio.open_nursery() as nursery:
        port = listener.socket.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as one, socket.create_connection(("127.0.0.1", port)) as two:
            one.sendall(b"\x16\x03\x01\x02\x00\x01")
            two.sendall(b"\x16\x03\x01\x02\x00\x01")
            holder = await listener.accept()
            nursery.start_soon(first_use, holder)
            assert listener.handshaker.limiter is not None
            await wait_for(lambda: listener.handshaker.limiter.borrowed_tokens == 1)  # type: ignore[union-attr]
            waiter = await listener.accept()
            waiter.handshake_timeout = 0.3
            nursery.start_soon(first_use, waiter)
            await wait_for(lambda: len(causes) == 1)
            nursery.cancel_scope.cancel()
    [cause] = causes
    assert isinstance(cause, HandshakeError) and cause.reason == "timeout"
    assert "(handshake_timeout=0.3, the wait for a handshake slot included): its deadline ran out while it waited " \
           "for one of the max_handshakes=1 handshake slots" in cause.message, cause.message


async def test_no_task_or_descriptor_left_behind(pki: PKI, tmp_path: Path) -> None:
    other = write_pki(tmp_path / "other")
    gc.collect()  # earlier tests' garbage must not close its descriptors in the middle of the count
    fds_before = len(os.listdir("/proc/self/fd"))
    tasks_before = trio.lowlevel.current_statistics().tasks_living
    async with serving(pki, handshake_timeout=0.3) as port:
        for _ in range(10):
            assert await round_trip(port, pki.client_options()) == b"hello\n"
        for _ in range(5):  # failed handshakes: the client does not trust the server
            with pytest.raises(Exception, match="untrusted"):
                await round_trip(port, other.client_options())
        with socket.create_connection(("127.0.0.1", port)) as silent:
            await trio.sleep(0.5)  # timed out meanwhile
            silent.setblocking(False)
        plain = socket.create_connection(("127.0.0.1", port))
        plain.sendall(b"GET / HTTP/1.0\r\n\r\n")
        plain.close()
        await trio.sleep(0.2)
    await trio.testing.wait_all_tasks_blocked()
    # No gc.collect() here: descriptors must be closed when serving ends, not when the collector finds them.
    assert trio.lowlevel.current_statistics().tasks_living == tasks_before
    assert len(os.listdir("/proc/self/fd")) == fds_before


def live_streams() -> int:
    return sum(1 for obj in gc.get_objects() if isinstance(obj, TLSStream))


async def test_a_running_server_keeps_no_connection_that_ended(pki: PKI) -> None:
    """Connections are freed when they end, while the server runs on idle: neither the accept loop nor the deadline
    reaper may hold the last connection it handled (and its OpenSSL state) until the next one comes."""
    gc.collect()
    before = live_streams()
    async with serving(pki, handshake_timeout=0.3) as port:
        assert await round_trip(port, pki.client_options()) == b"hello\n"
        with socket.create_connection(("127.0.0.1", port)):
            await trio.sleep(0.6)  # says nothing: dropped by the reaper at the deadline
        await trio.sleep(0.1)
        await trio.testing.wait_all_tasks_blocked()
        gc.collect()
        assert live_streams() == before


async def test_a_quiet_ports_ticket_key_is_renewed_on_time(pki: PKI, monkeypatch: pytest.MonkeyPatch) -> None:
    """The serving loop renews a context's session-ticket key when it is due, not only at the next connection: a
    port that accepts none after a burst must not keep the key its tickets were encrypted under (a lifetime of
    0.3 s here; the serving loop looks at most once a second). Connections go on working on the new context."""
    context_module.clear_cache()
    monkeypatch.setattr("gtls._sessions.TICKET_KEY_LIFETIME", 0.3)
    async with serving_listeners(pki) as listeners:
        compiled = listeners[0].context
        port = listeners[0].socket.getsockname()[1]
        assert await round_trip(port, pki.client_options()) == b"hello\n"
        seen = [compiled.ssl_context]
        with trio.fail_after(10):
            while len(seen) < 3:  # two renewals with no connection at all
                await trio.sleep(0.1)
                if compiled.ssl_context is not seen[-1]:
                    seen.append(compiled.ssl_context)
        assert await round_trip(port, pki.client_options()) == b"hello\n"
    context_module.clear_cache()


class GatedBuild:
    """Stands in for a context's renewal build: records the thread it runs in, then waits (``wait`` s at most) for
    ``gate`` and records whether it came. A build in the event loop would wait for nothing: the test fails, not
    hangs."""

    def __init__(self, compiled: context_module.CompiledContext, wait: float) -> None:
        self.gate = threading.Event()
        self.threads: list[threading.Thread] = []
        self.gate_came: list[bool] = []
        build = compiled._slot._renew
        assert build is not None
        self._build, self._wait = build, wait
        compiled._slot._renew = self

    def __call__(self) -> _sessions.Renewed:
        self.threads.append(threading.current_thread())
        self.gate_came.append(self.gate.wait(self._wait))
        return self._build()


async def test_the_serving_loop_renews_in_a_worker_thread_while_handshakes_go_on(
    pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A renewal builds the context again: ~1 ms, but ~0.1 s with a large CA bundle or CRL, which in the event loop
    would hold up every connection of the process once an hour. The serving loop builds it in a worker thread, and
    connections made meanwhile take the current key. Here the build waits until a connection has been served (for 5
    s at most: built in the event loop, it would wait for nothing and the test fail, not hang)."""
    context_module.clear_cache()
    monkeypatch.setattr("gtls._sessions.TICKET_KEY_LIFETIME", 0.3)
    async with serving_listeners(pki) as listeners:
        compiled = listeners[0].context
        build = GatedBuild(compiled, wait=5)
        port = listeners[0].socket.getsockname()[1]
        old = compiled.ssl_context
        with trio.fail_after(10):
            while not build.threads:
                await trio.sleep(0.05)
            assert await round_trip(port, pki.client_options()) == b"hello\n"  # on the old key, the build waiting
            build.gate.set()
            while compiled.ssl_context is old:
                await trio.sleep(0.05)
        assert await round_trip(port, pki.client_options()) == b"hello\n"
    assert build.threads[0] is not threading.main_thread() and build.gate_came[0]
    context_module.clear_cache()


async def test_connections_that_find_the_key_due_leave_its_build_to_one_worker_thread(
    pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The serving loop looks at the key's age at most once a minute and renews it in a worker thread, but a
    connection accepted first found it due and built the new context itself, in the event loop (~0.1 s with a
    large CA bundle): after a suspend (the boot-time clock went on, trio's did not: here an hour passes at once), and
    under load in the moment between the key's end and the loop's look (audit 55: ~1 renewal in 5). Now the first
    such connection starts the build in one worker thread and every connection takes the current key meanwhile.
    The build here waits until 5 connections have been served (2 s at most: in the event loop it waits for
    nothing, and the test fails in about 2 s)."""
    context_module.clear_cache()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(serve_tls_over_tcp, echo_line, 0, pki.server_options(), host="127.0.0.1")
        )
        compiled = listeners[0].context
        build = GatedBuild(compiled, wait=2)
        port = listeners[0].socket.getsockname()[1]
        old = compiled.ssl_context
        now = _sessions.clock()
        monkeypatch.setattr("gtls._sessions.clock", lambda: now + _sessions.TICKET_KEY_LIFETIME)
        with trio.fail_after(10):
            async with trio.open_nursery() as clients:
                for _ in range(5):
                    clients.start_soon(round_trip, port, pki.client_options())
            build.gate.set()
            while compiled.ssl_context is old:
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()
    assert len(build.threads) == 1 and build.threads[0] is not threading.main_thread() and build.gate_came == [True]
    context_module.clear_cache()


def test_a_renewal_a_connection_handed_off_ends_before_trio_run_returns(
    pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection that found the key due returns at once; the worker thread building the new context is awaited
    by a system task, so no build is left running after ``trio.run`` returns, and the renewal is over (its lock
    free) even when the run ends at once."""
    context_module.clear_cache()
    compiled = compile_settings(pki.server_options(), "server")
    slot = compiled._slot
    build = slot._renew
    assert build is not None
    built: list[threading.Thread] = []

    def slow_build() -> _sessions.Renewed:
        time.sleep(0.3)
        built.append(threading.current_thread())
        return build()

    slot._renew = slow_build
    old = compiled.ssl_context
    now = _sessions.clock()
    monkeypatch.setattr("gtls._sessions.clock", lambda: now + _sessions.TICKET_KEY_LIFETIME)
    waited: list[float] = []

    async def connect_and_leave() -> None:
        start = time.monotonic()
        assert compiled.new_connection().get_context() is old
        waited.append(time.monotonic() - start)

    trio.run(connect_and_leave)
    assert waited[0] < 0.2 and built and built[0] is not threading.main_thread()
    assert compiled.ssl_context is not old and not slot._lock.locked()
    context_module.clear_cache()


async def _no_worker_thread(*args: object, **kwargs: object) -> object:
    raise RuntimeError("can't start new thread")  # what trio.to_thread.run_sync raises at a thread limit


def test_a_handed_off_renewal_without_a_worker_thread_is_built_in_place(
    pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where no worker thread can be started (a container's pids limit), the renewal a connection handed to a system
    task is built there, in the event loop, as before the hand-off. The system task raised instead, and a system
    task's exception ends trio.run with TrioInternalError; the renewal's lock stayed taken, so the ticket key was
    never renewed again in the process."""
    context_module.clear_cache()
    compiled = compile_settings(pki.server_options(), "server")
    old = compiled.ssl_context
    now = _sessions.clock()
    monkeypatch.setattr("gtls._sessions.clock", lambda: now + _sessions.TICKET_KEY_LIFETIME)
    monkeypatch.setattr(trio.to_thread, "run_sync", _no_worker_thread)

    async def connect() -> None:
        assert compiled.new_connection().get_context() is old

    trio.run(connect)
    assert compiled.ssl_context is not old and not compiled._slot._lock.locked()
    context_module.clear_cache()


def test_a_logging_failure_in_a_handed_off_renewal_does_not_end_trio_run(
    pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The system task logs the renewal's new warnings; a logging setup that raises (a filter with a bug) ended
    trio.run with TrioInternalError, where a renewal built in place raised into the one connection."""
    context_module.clear_cache()
    compiled = compile_settings(pki.server_options(), "server")
    slot = compiled._slot
    fresh = compile_settings(pki.server_options(), "server")._slot.current
    slot._renew = lambda: (fresh, ("a warning the first build did not give",))
    now = _sessions.clock()
    monkeypatch.setattr("gtls._sessions.clock", lambda: now + _sessions.TICKET_KEY_LIFETIME)

    def broken_filter(record: logging.LogRecord) -> bool:
        raise ValueError("a logging filter's bug")

    async def connect() -> None:
        compiled.new_connection()

    config_logger = logging.getLogger("gtls.config")
    config_logger.addFilter(broken_filter)
    try:
        trio.run(connect)
    finally:
        config_logger.removeFilter(broken_filter)
    assert slot.current is fresh and not slot._lock.locked()
    context_module.clear_cache()


async def test_the_serving_loop_renews_in_place_without_a_worker_thread(
    pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The serving loop's renewal in a worker thread: where none can be started, it is built in the event loop, as
    before; serve_tls_over_tcp ended with RuntimeError("can't start new thread") an hour after it started."""
    context_module.clear_cache()
    monkeypatch.setattr("gtls._sessions.TICKET_KEY_LIFETIME", 0.2)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(serve_tls_over_tcp, echo_line, 0, pki.server_options(),
                                                host="127.0.0.1"))
        monkeypatch.setattr(trio.to_thread, "run_sync", _no_worker_thread)
        compiled = listeners[0].context
        old = compiled.ssl_context
        with trio.fail_after(5):
            while compiled.ssl_context is old:
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    context_module.clear_cache()


async def test_a_listener_accepting_by_itself_renews_off_the_event_loop(
    pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``TLSListener`` used without the serving loop renews the key at its first connection after the hour, also
    in a worker thread: a connection already open goes on exchanging data while the new context is built (the build
    here waits, 5 s at most, until it has)."""
    context_module.clear_cache()
    monkeypatch.setattr("gtls._sessions.TICKET_KEY_LIFETIME", 0.2)
    (listener,) = await open_tls_over_tcp_listeners(0, pki.server_options(), host="127.0.0.1")
    build = GatedBuild(listener.context, wait=5)
    port = listener.socket.getsockname()[1]
    old = listener.context.ssl_context

    async def echo(stream: TLSStream) -> None:
        async with stream:
            with contextlib.suppress(trio.BrokenResourceError):  # `late` leaves without a handshake
                await echo_line(stream)

    async def accept_and_echo(nursery: trio.Nursery) -> None:
        while True:
            nursery.start_soon(echo, await listener.accept())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept_and_echo, nursery)
        with trio.fail_after(10):
            early = await open_tls_over_tcp_stream("localhost", port, pki.client_options())
            await trio.sleep(0.3)  # the key is due: the next accept renews it
            late = socket.create_connection(("127.0.0.1", port))
            while not build.threads:
                await trio.sleep(0.02)
            await early.send_all(b"during the build\n")
            assert await early.receive_some() == b"during the build\n"
            build.gate.set()
            while listener.context.ssl_context is old:
                await trio.sleep(0.02)
        late.close()
        await early.aclose()
        assert await round_trip(port, pki.client_options()) == b"hello\n"
        nursery.cancel_scope.cancel()
    await listener.aclose()
    assert build.gate_came == [True]
    context_module.clear_cache()


async def test_stopped_server_closes_its_port(pki: PKI) -> None:
    async with serving_listeners(pki) as listeners:
        port = listeners[0].socket.getsockname()[1]
        assert await round_trip(port, pki.client_options()) == b"hello\n"
    # The caller still holds the listeners (as trio's do, they close when serving ends, not when dropped): nothing
    # listens on the port any more, so the kernel completes no connection that nobody would accept.
    assert [listener.socket.fileno() for listener in listeners] == [-1]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


async def test_configuration_error_opens_no_socket(tmp_path: Path) -> None:
    fds_before = len(os.listdir("/proc/self/fd"))
    broken = TLSOptions.from_mapping(
        {"certificate": str(tmp_path / "missing.pem"), "certificate-key": str(tmp_path / "k.pem"),
         "trusted-ca": str(tmp_path / "ca.pem")}
    )
    with pytest.raises(ConfigError):
        await open_tls_over_tcp_listeners(0, broken, host="127.0.0.1")
    assert len(os.listdir("/proc/self/fd")) == fds_before


async def test_listener_accept_does_not_handshake(pki: PKI) -> None:
    (listener,) = await open_tls_over_tcp_listeners(0, pki.server_options(), host="127.0.0.1")
    assert isinstance(listener, TLSListener)
    async with listener:
        port = listener.socket.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            with trio.fail_after(2):
                stream = await listener.accept()  # returns although the client never says hello
            assert not stream.handshake_done and stream.handshake_timeout == 10.0
            await stream.aclose()


EMFILE_SCRIPT = textwrap.dedent(
    """
    import resource, socket, sys, trio
    from gtls import TLSOptions, serve_tls_over_tcp, open_tls_over_tcp_stream

    server_opts = TLSOptions.from_mapping({"certificate": sys.argv[1], "certificate-key": sys.argv[2],
                                           "trusted-ca": sys.argv[3]})
    client_opts = TLSOptions.from_mapping({"trusted-ca": sys.argv[3]})

    async def echo(stream):
        data = await stream.receive_some()
        await stream.send_all(data)

    async def main():
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(lambda task_status: serve_tls_over_tcp(
                echo, 0, server_opts, host="127.0.0.1", task_status=task_status))
            port = listeners[0].socket.getsockname()[1]
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            import os
            used = len(os.listdir("/proc/self/fd"))
            resource.setrlimit(resource.RLIMIT_NOFILE, (used + 6, hard))
            # Hold client sockets until accept() fails with EMFILE on the server side.
            held = []
            for _ in range(20):
                try:
                    held.append(socket.create_connection(("127.0.0.1", port)))
                except OSError:
                    break
            await trio.sleep(0.5)  # the accept loop hits EMFILE and must pause, not die
            for s in held:
                s.close()
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            with trio.fail_after(10):
                stream = await open_tls_over_tcp_stream("127.0.0.1", port, client_opts)
                await stream.send_all(b"alive")
                assert await stream.receive_some() == b"alive"
                await stream.aclose()
            print("survived")
            nursery.cancel_scope.cancel()

    trio.run(main)
    """
)


def test_accept_loop_survives_emfile(pki: PKI, tmp_path: Path) -> None:
    script = tmp_path / "emfile.py"
    script.write_text(EMFILE_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(pki.server_cert), str(pki.server_key), str(pki.ca_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "survived" in done.stdout
    assert "Too many open files" in done.stderr  # trio's accept loop logged the EMFILE and kept going
    # ... and paused 0.1 s after each: without the pause, the backlog keeps the listener readable and the loop spins,
    # one log line per turn (thousands in the script's 0.5 s; audit 58)
    assert 1 <= done.stderr.count("accept returned EMFILE") <= 40, done.stderr.count("accept returned EMFILE")


async def test_accepted_stream_carries_the_listener_deadline(pki: PKI) -> None:
    """A handler using accept() directly and letting the first receive handshake still gets the deadline."""
    (listener,) = await open_tls_over_tcp_listeners(0, pki.server_options(), host="127.0.0.1", handshake_timeout=0.3)
    async with listener:
        with socket.create_connection(("127.0.0.1", listener.socket.getsockname()[1])):
            stream = await listener.accept()
            started = trio.current_time()
            with pytest.raises(trio.BrokenResourceError) as caught:
                await stream.receive_some()
            await stream.aclose()
    assert isinstance(caught.value.__cause__, HandshakeError) and caught.value.__cause__.reason == "timeout"
    assert 0.25 <= trio.current_time() - started < 2


async def test_listeners_served_by_trio_report_every_handshake(pki: PKI, caplog: pytest.LogCaptureFixture) -> None:
    """Listeners from open_tls_over_tcp_listeners served by trio's own serve_listeners: the listeners'
    on_handshake sees every handshake, whoever runs it (here the handler's first receive); a failure is logged once
    and still reaches the handler, with its traceback, while the event holds a frameless copy."""
    events: list[HandshakeEvent] = []
    seen: list[BaseException | bytes] = []

    async def handler(stream: TLSStream) -> None:
        try:
            seen.append(await stream.receive_some())
        except trio.BrokenResourceError as exc:
            seen.append(exc)
        await stream.aclose()

    caplog.set_level(logging.INFO, logger="gtls.server")
    mutual = pki.server_options(tls_mutual="1")
    listeners = await open_tls_over_tcp_listeners(0, mutual, host="127.0.0.1", on_handshake=events.append)
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handler, listeners)
        assert await round_trip(port, pki.client_options(with_cert=True), b"") == b""  # sends nothing, closes
        context = python_context(server=False, ca=pki.ca_file, version="1.2")  # no certificate: refused
        with pytest.raises(OSError):
            await trio.to_thread.run_sync(_python_handshake, port, context)
        await wait_for(lambda: len(seen) == 2 and len(events) == 2)
        nursery.cancel_scope.cancel()
    ok, failed = events
    assert ok.ok and ok.subject == pki.client.cert.subject.rfc4514_string() and ok.tls_version == "TLSv1.3"
    assert not failed.ok and failed.reason == "no-peer-certificate"
    broken = seen[1]
    assert isinstance(broken, trio.BrokenResourceError) and isinstance(broken.__cause__, HandshakeError)
    assert broken.__cause__.reason == "no-peer-certificate" and broken.__cause__.__traceback__ is not None
    assert failed.error is not broken.__cause__ and failed.error is not None
    assert failed.error.__traceback__ is None and str(failed.error) == str(broken.__cause__)
    logged = [r.getMessage() for r in caplog.records if r.name == "gtls.server"]
    assert len(logged) == 1 and logged[0].startswith("handshake failed: no-peer-certificate peer=127.0.0.1:")


async def test_accepted_streams_keep_the_listeners_cap(pki: PKI) -> None:
    """max_handshakes holds for streams from accept() too: two clients stalled inside their ClientHello, one
    handshake in flight and the other waiting for the slot; both dropped at the deadline that covers the wait."""
    (listener,) = await open_tls_over_tcp_listeners(0, pki.server_options(), host="127.0.0.1", max_handshakes=1,
                                                    handshake_timeout=1.0)
    limiter = listener.handshaker.limiter
    assert limiter is not None
    causes: list[BaseException | None] = []

    async def first_use(stream: TLSStream) -> None:
        with pytest.raises(trio.BrokenResourceError) as caught:
            await stream.receive_some()
        causes.append(caught.value.__cause__)
        await stream.aclose()

    async with listener, trio.open_nursery() as nursery:
        port = listener.socket.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as one, socket.create_connection(("127.0.0.1", port)) as two:
            for staller in (one, two):
                staller.sendall(b"\x16\x03\x01\x02\x00\x01")  # a handshake record header and one byte of body
                nursery.start_soon(first_use, await listener.accept())
            await wait_for(lambda: limiter.statistics().tasks_waiting == 1)
            assert limiter.borrowed_tokens == 1
            await wait_for(lambda: len(causes) == 2)
    assert [getattr(cause, "reason", None) for cause in causes] == ["timeout", "timeout"]


@pytest.mark.parametrize("fillers", [3, 1100])
async def test_mutual_server_advertises_ca_names_only_when_they_fit(pki: PKI, tmp_path: Path, fillers: int) -> None:
    """A certificate request carries at most 64 KiB of CA names. Within that the server lists its trusted CAs; past
    it (a large trusted-ca bundle) it lists none, with a warning, instead of failing every mutual handshake with
    internal_error."""
    from gtls import compile_context, direct
    from gtls.testing import CA, write_pem

    extra = [CA.root(f"filler CA {i} with a name long enough to count") for i in range(fillers)]
    bundle = write_pem(tmp_path / "bundle.pem", pki.root.cert_pem, *(ca.cert_pem for ca in extra))
    compiled = compile_context(direct(pki.server_options(trusted_ca=str(bundle), tls_mutual=True), "server"))
    too_many = [w for w in compiled.warnings if "more than a TLS certificate request can carry" in w]
    assert bool(too_many) == (fillers > 3), compiled.warnings
    events: list[HandshakeEvent] = []
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(lambda task_status: serve_tls_over_tcp(
            echo_line, 0, compiled, host="127.0.0.1", on_handshake=events.append, task_status=task_status))
        port = listeners[0].socket.getsockname()[1]
        assert await round_trip(port, pki.client_options(with_cert=True)) == b"hello\n"
        result = await openssl_client(port, ca=pki.ca_file, cert=pki.client_cert, key=pki.client_key,
                                      chain=pki.intermediate_file, servername="localhost", send=b"hi\n")
        nursery.cancel_scope.cancel()
    assert result.ok, result.stderr
    if fillers > 3:
        assert "No client certificate CA names sent" in result.stdout
    else:
        assert "Acceptable client certificate CA names" in result.stdout
        assert "filler CA 2 with a name long enough to count" in result.stdout
    assert [e.ok for e in events] == [True, True], [e.describe() for e in events]


async def test_one_peers_reset_does_not_break_the_other_connections(pki: PKI) -> None:
    """OpenSSL's error queue is per thread: a send that fails with ECONNRESET left its entry there (pyOpenSSL does
    not take it off), and the next step of every other connection in the thread then misread its own state
    (``EAGAIN`` as an error, close_notify as a protocol error). Healthy peers (Python's ssl in threads) keep
    working across another peer's reset in the middle of a large response."""
    async def handler(stream: TLSStream) -> None:
        while data := await stream.receive_some():
            for _ in range(200 if data == b"big" else 1):  # 12.5 MiB for "big": the resetter leaves mid-send
                await stream.send_all(b"z" * 65536 if data == b"big" else data)

    context = python_context(server=False, ca=pki.ca_file)
    ready, go = threading.Semaphore(0), threading.Event()
    answers: dict[int, object] = {}

    def healthy(port: int, index: int) -> None:
        with context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5)) as conn:
            conn.sendall(b"a")
            conn.recv(10)
            ready.release()
            go.wait(10)
            try:  # two exchanges: the server's read after the first echo is the step that misread the queue
                replies = []
                for message in (b"ping", b"pong"):
                    conn.sendall(message)
                    replies.append(conn.recv(10))
                answers[index] = replies
            except OSError as exc:
                answers[index] = exc

    def resetter(port: int) -> None:
        with context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5)) as conn:
            conn.sendall(b"big")
            conn.recv(100)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # closed with SO_LINGER 0: a reset while the server is still sending

    async with serving(pki, handler) as port:
        threads = [threading.Thread(target=healthy, args=(port, i), daemon=True) for i in range(3)]
        for thread in threads:
            thread.start()
        for _ in threads:
            await trio.to_thread.run_sync(ready.acquire)
        await trio.to_thread.run_sync(resetter, port)
        await trio.sleep(0.3)  # the server's send to the reset peer has failed by now
        go.set()
        for thread in threads:
            await trio.to_thread.run_sync(thread.join, 10)
    assert answers == {i: [b"ping", b"pong"] for i in range(3)}


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


async def _cancellable_server(nursery: trio.Nursery, pki: PKI, handler: Callable[[TLSStream], Awaitable[None]]
                              ) -> tuple[int, trio.CancelScope]:
    """serve_tls_over_tcp in ``nursery`` under a cancel scope of its own: (its port, the scope that stops it)."""
    scope = trio.CancelScope()

    async def run(task_status: trio.TaskStatus[list[TLSListener]]) -> None:
        with scope:
            await serve_tls_over_tcp(handler, 0, pki.server_options(), host="127.0.0.1", task_status=task_status)

    listeners = await nursery.start(run)
    return listeners[0].socket.getsockname()[1], scope


async def test_the_port_closes_at_once_while_handlers_wind_down(pki: PKI) -> None:
    """As trio's serve_listeners: cancelling the server stops accepting immediately, even while a handler still
    runs its (shielded) cleanup; the kernel must not go on completing connections nobody will serve."""

    async def slow_to_stop(stream: TLSStream) -> None:
        try:
            await stream.receive_some()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(1.0)

    async with trio.open_nursery() as nursery:
        port, scope = await _cancellable_server(nursery, pki, slow_to_stop)
        client = await open_tls_over_tcp_stream("127.0.0.1", port, pki.client_options())
        await trio.sleep(0.1)  # the handler is waiting
        scope.cancel()
        await trio.sleep(0.1)
        assert await trio.to_thread.run_sync(_refused, port)  # the handler is still in its 1 s cleanup
        await client.aclose()


@pytest.mark.parametrize("how", ["cancelled", "raises"])
async def test_a_handler_that_does_not_finish_ends_without_close_notify(pki: PKI, how: str) -> None:
    """A clean close_notify says "that was everything". A handler cut off mid-response (the server cancelled, or
    the handler raising) must not end its connection that way: the client sees a truncation, as with trio."""

    async def partial(stream: TLSStream) -> None:
        await stream.send_all(b"partial-response")
        if how == "raises":
            raise RuntimeError("a bug half-way through the response")
        await trio.sleep_forever()

    received: list[bytes] = []
    with pytest.raises(BaseExceptionGroup) if how == "raises" else contextlib.nullcontext():
        async with trio.open_nursery() as nursery:
            port, scope = await _cancellable_server(nursery, pki, partial)
            client = await open_tls_over_tcp_stream("127.0.0.1", port, pki.client_options())
            if how == "cancelled":
                received.append(await client.receive_some())
                scope.cancel()
            with trio.fail_after(5), pytest.raises(trio.BrokenResourceError) as cut:
                while data := await client.receive_some():  # bounded by fail_after
                    received.append(data)
            await client.aclose()
    assert b"".join(received) == b"partial-response"
    assert classify_ending(cut.value).word == "truncated"


async def test_aclose_forcefully_sends_no_close_notify(pki: PKI) -> None:
    """``trio.aclose_forcefully`` (aclose in a cancelled scope) is an abort: the peer sees a truncation."""
    got: list[BaseException] = []

    async def abandon(stream: TLSStream) -> None:
        await stream.send_all(b"partial")
        await trio.aclose_forcefully(stream)

    async with serving(pki, abandon) as port:
        client = await open_tls_over_tcp_stream("127.0.0.1", port, pki.client_options())
        assert await client.receive_some() == b"partial"
        with trio.fail_after(5), pytest.raises(trio.BrokenResourceError) as cut:
            await client.receive_some()
        got.append(cut.value)
        await client.aclose()
    assert classify_ending(got[0]).word == "truncated"


async def test_a_listener_closed_under_the_server_is_a_closed_resource_error(pki: PKI) -> None:
    with pytest.raises(BaseExceptionGroup) as group:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                lambda task_status: serve_tls_over_tcp(echo_line, 0, pki.server_options(), host="127.0.0.1",
                                                       task_status=task_status))
            listeners[0].socket.close()
    assert group.value.subgroup(trio.ClosedResourceError) is not None
    assert group.value.subgroup(OSError) is None


async def test_a_log_handler_that_raises_does_not_take_the_server_down(pki: PKI) -> None:
    """Any peer makes the server log (a failed handshake, an abnormal end). An application's handler whose emit()
    raises lost that line; it used to stop the port for everyone (as a raising on_handshake hook does not)."""

    class Raising(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raise RuntimeError("log sink down")

    handler = Raising()
    try:
        async with serving(pki) as port:
            logging.getLogger("gtls").addHandler(handler)  # once serving: what a peer makes it log
            plain = await trio.open_tcp_stream("127.0.0.1", port)
            async with plain:
                await plain.send_all(b"GET / HTTP/1.0\r\n\r\n")  # handshake failed: not-tls, logged
                with contextlib.suppress(trio.BrokenResourceError), trio.fail_after(5):
                    while await plain.receive_some():
                        pass
            with trio.fail_after(10):
                assert await round_trip(port, pki.client_options()) == b"hello\n"
    finally:
        logging.getLogger("gtls").removeHandler(handler)


async def test_an_explicit_handshake_failure_is_what_trio_code_catches(pki: PKI) -> None:
    """trio code written for SSLStream does ``try: await stream.do_handshake() except trio.BrokenResourceError``
    (hypercorn, trio's examples). A gtls failure there was only a HandshakeError: it escaped such a handler and
    stopped trio.serve_listeners at the first plaintext client. It is a BrokenResourceError too, reason kept."""
    caught: list[BaseException] = []
    served: list[bytes] = []

    async def handler(stream: TLSStream) -> None:
        try:
            await stream.do_handshake()
        except trio.BrokenResourceError as exc:
            caught.append(exc)
            await trio.aclose_forcefully(stream)
            return
        served.append(await stream.receive_some())
        await stream.aclose()

    listeners = await open_tls_over_tcp_listeners(0, pki.server_options(), host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handler, listeners)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as plain:
            plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await wait_for(lambda: len(caught) == 1)
        assert await round_trip(port, pki.client_options(), b"after") == b""  # the server goes on
        await wait_for(lambda: len(served) == 1)
        nursery.cancel_scope.cancel()
    error = caught[0]
    assert isinstance(error, HandshakeError) and error.reason == "not-tls"
    assert served == [b"after"]


class CountingListener(trio.abc.Listener[trio.abc.Stream]):
    """A listener wrapper of the kind services write (counting, PROXY headers): not a trio.SocketListener."""

    def __init__(self, inner: trio.SocketListener) -> None:
        self.inner = inner
        self.accepted = 0

    async def accept(self) -> trio.abc.Stream:
        stream = await self.inner.accept()
        self.accepted += 1
        return trio.StapledStream(stream, stream)  # any Stream, not a SocketStream: the memory-BIO driver

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_listener_wrapping_any_trio_listener_serves_like_trio_sslistener(pki: PKI) -> None:
    """TLSListener read ``transport_listener.socket`` at construction, so only a trio.SocketListener could be
    wrapped; trio.SSLListener takes any Listener. Now any works, through trio.serve_listeners."""
    tcp = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    counting = CountingListener(tcp)
    listener = TLSListener(counting, pki.server_options())
    with pytest.raises(AttributeError):
        listener.socket  # noqa: B018 - no socket to show
    port = tcp.socket.getsockname()[1]

    async def echo(stream: TLSStream) -> None:
        async with stream:
            await stream.send_all(await stream.receive_some())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, echo, [listener])
        for message in (b"one", b"two"):
            assert await round_trip(port, pki.client_options(), message) == message
        nursery.cancel_scope.cancel()
    assert counting.accepted == 2
    await listener.aclose()


async def test_a_failure_over_a_transport_without_an_address_is_logged_as_peer_unknown(
    pki: PKI, caplog: pytest.LogCaptureFixture
) -> None:
    """A listener of streams that are not sockets has no peer address to log; the line said ``peer=?``."""
    caplog.set_level(logging.WARNING, logger="gtls.server")
    events: list[HandshakeEvent] = []
    tcp = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    listener = TLSListener(CountingListener(tcp), pki.server_options(), on_handshake=events.append)

    async def handler(stream: TLSStream) -> None:  # the first receive runs the handshake, as with trio's SSLListener
        async with stream:
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.receive_some()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handler, [listener])
        with trio.socket.socket() as plain:
            await plain.connect(tcp.socket.getsockname())
            await plain.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            with trio.fail_after(5):
                while not events:
                    await trio.sleep(0.02)
        nursery.cancel_scope.cancel()
    await listener.aclose()
    assert [(e.reason, e.peer) for e in events] == [("not-tls", None)]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("handshake failed:")]
    assert len(lines) == 1 and lines[0].startswith("handshake failed: not-tls peer=unknown: "), lines
    assert events[0].describe().startswith("unknown handshake failed: not-tls: ")


async def test_a_listener_wrapping_a_users_listener_takes_the_handshake_policy_and_logs_warnings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """TLSListener(listener, settings) is the documented way to wrap a listener of one's own, but its deadline, cap
    and hook could only be set through an undocumented Handshaker, and the settings' load-time warnings (here: a
    chain that does not end at a root) were never logged, as open_tls_over_tcp_listeners logs them."""
    fresh = write_pki(tmp_path / "pki")
    fresh.server_key.chmod(0o640)  # a warning naming this test's own file: each warning is logged once per process
    caplog.set_level(logging.WARNING, logger="gtls.config")
    events: list[HandshakeEvent] = []
    tcp = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    listener = TLSListener(tcp, fresh.server_options(), handshake_timeout=0.5, on_handshake=events.append)
    port = tcp.socket.getsockname()[1]

    async def echo(stream: TLSStream) -> None:
        async with stream:
            with contextlib.suppress(trio.BrokenResourceError):  # trio.serve_listeners stops on what escapes
                await stream.send_all(await stream.receive_some())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, echo, [listener])
        with trio.socket.socket() as silent:
            await silent.connect(("127.0.0.1", port))
            assert await round_trip(port, fresh.client_options()) == b"hello\n"
            with trio.fail_after(5):
                while len(events) < 2:
                    await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    await listener.aclose()
    assert sorted((e.ok, e.reason) for e in events) == [(False, "timeout"), (True, None)]
    assert [r for r in caplog.records if f"{fresh.server_key} is readable by its group" in r.getMessage()], caplog.text


async def test_send_eof_on_a_tls12_connection_does_not_stop_the_server(pki: PKI) -> None:
    """A handler written for any HalfCloseableStream calls send_eof; on TLS 1.2 that is refused, and the refusal is
    this connection's own failure (logged), not the server's: the next client is served."""
    answered: list[str] = []

    async def handler(stream: TLSStream) -> None:
        await stream.send_all(await stream.receive_some())
        answered.append(str(stream.tls_version))
        await stream.send_eof()  # refused on TLS 1.2, escapes the handler

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(serve_tls_over_tcp, handler, 0, pki.server_options(),
                                                host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        tls12 = python_context(server=False, ca=pki.ca_file, version="1.2")
        for context in (tls12, tls12, python_context(server=False, ca=pki.ca_file, version="1.3")):
            echoed, _, _, _ = await trio.to_thread.run_sync(
                partial(python_ssl_client, port, context, message=b"ping", server_hostname="localhost"))
            assert echoed == b"ping"
        await wait_for(lambda: len(answered) == 3)
        nursery.cancel_scope.cancel()
    assert answered == ["TLSv1.2", "TLSv1.2", "TLSv1.3"]



async def test_a_client_certificate_with_an_empty_subject_is_named_alike_accepted_or_refused(
    pki: PKI, tmp_path: Path
) -> None:
    """A client certificate with no subject (RFC 5280 allows it with a critical subjectAltName) is "(empty subject)"
    in a success event as in a refusal's; a success event gave "" there, which reads as no certificate in a
    ``if event.subject:`` and left the client out of the event's log line."""
    events: list[HandshakeEvent] = []
    stray_root = CA.root("stray root")  # the server does not trust it
    for issuer in (pki.intermediate, stray_root):
        nameless = issuer.leaf(dns=("client.test",), eku=("client",))
        client = pki.client_options(certificate=str(nameless.write_chain(tmp_path / "nameless.pem")),
                                    certificate_key=str(nameless.write_key(tmp_path / "nameless.key")))
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(serve_tls_over_tcp, echo_line, 0, pki.server_options(
                tls_mutual="1"), host="127.0.0.1", on_handshake=events.append))
            with contextlib.suppress(trio.BrokenResourceError, HandshakeError):
                await round_trip(listeners[0].socket.getsockname()[1], client)
            await settled()
            nursery.cancel_scope.cancel()
    accepted, refused = events
    assert accepted.ok and accepted.subject == "(empty subject)"
    assert accepted.describe().endswith(" client (empty subject)")
    assert not refused.ok and refused.reason == "untrusted" and refused.subject == "(empty subject)"
