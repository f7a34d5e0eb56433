"""Load and resource exhaustion (issue #7 parts 2 and 3), in the default run: many concurrent connections held open,
sequential handshakes with the server's descriptors and memory sampled, a flood of stalled connections against the
handshake cap and deadline, and the accept loop under EMFILE, against ``gtls serve`` and the library listener.

Servers run as subprocesses where their own /proc gauges or descriptor limit matter; clients are Python's ``ssl``
(blocking) and gtls's trio client. The long versions are in ``test_soak.py`` (``python3 -m pytest -m soak``).
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from gtls import TLSStream, serve_tls_over_tcp
from tests.listener_server import task_count
from tests.loadtools import (
    ListenerStats,
    client_context,
    fd_count,
    handshake_echo,
    hold_connections,
    limited_serve,
    listener_server,
    listener_stats,
    partial_client_hello,
    reason_lines,
    rss_kib,
    sequential_handshakes,
    serve_args,
    settle,
    settle_async,
    stalled_sockets,
    wait_at_least,
    wait_for_reasons,
)
from tests.peers import PKI, LineReader, Running, gtls_serve, write_pki

CONCURRENT = 1000
SEQUENTIAL = 1500
WARM_UP = 300
#: RSS growth allowed over the sequential run after warm-up. A leak of one connection's state (OpenSSL SSL object,
#: buffers, stream and task: about 30 KiB, measured as the RSS cost per concurrent connection) would add ~35 MiB
#: over 1,200 handshakes; 8 MiB leaves room for allocator noise and still catches any leak of >= 7 KiB/handshake.
RSS_GROWTH_KIB = 8 * 1024


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return write_pki(tmp_path_factory.mktemp("load-pki"))


# --- 1,000 concurrent connections --------------------------------------------------------------------------------


def test_thousand_concurrent_connections_against_gtls_serve(pki: PKI) -> None:
    with gtls_serve(*serve_args(pki, "--quiet")) as server:
        pid = server.process.pid
        baseline = fd_count(pid)
        during: list[int] = []
        held = trio.run(lambda: hold_connections(server.port, pki.client_options(), CONCURRENT,
                                                 while_held=lambda: during.append(fd_count(pid))))
        assert held.failures == [] and held.echoed == CONCURRENT
        assert during and during[0] >= baseline + CONCURRENT  # really all open at once on the server
        assert settle(lambda: fd_count(pid), baseline) == baseline
        assert server.process.poll() is None


@asynccontextmanager
async def library_server(pki: PKI, handlers: trio.Nursery) -> AsyncIterator[int]:
    async def echo(stream: TLSStream) -> None:
        try:
            while data := await stream.receive_some():
                await stream.send_all(data)
        except trio.BrokenResourceError:
            pass

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(lambda task_status: serve_tls_over_tcp(
            echo, 0, pki.server_options(), host="127.0.0.1", handler_nursery=handlers, task_status=task_status))
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


async def test_thousand_concurrent_connections_against_the_library_listener(pki: PKI) -> None:
    """Server and clients in this trio run: the connection tasks and every descriptor come back to the baseline."""
    async with trio.open_nursery() as handlers, library_server(pki, handlers) as port:
        await handshake_echo_async(port, pki)  # warm-up: compiled contexts and caches are not per-connection state
        await settle_async(lambda: len(handlers.child_tasks), 0)
        tasks, fds = task_count(), fd_count()
        during: list[tuple[int, int]] = []
        held = await hold_connections(port, pki.client_options(), CONCURRENT,
                                      while_held=lambda: during.append((len(handlers.child_tasks), fd_count())))
        assert held.failures == [] and held.echoed == CONCURRENT
        # While held: one handler task per connection, and two descriptors each (client and server side).
        assert during == [(CONCURRENT, fds + 2 * CONCURRENT)]
        assert await settle_async(lambda: len(handlers.child_tasks), 0) == 0
        assert await settle_async(fd_count, fds) == fds
        assert task_count() == tasks


async def handshake_echo_async(port: int, pki: PKI) -> None:
    held = await hold_connections(port, pki.client_options(), 1, while_held=lambda: None)
    assert held.echoed == 1, held.failures


# --- sequential handshakes: descriptors and memory ---------------------------------------------------------------


def test_sequential_handshakes_keep_fds_and_memory_flat(pki: PKI) -> None:
    with gtls_serve(*serve_args(pki, "--quiet")) as server:
        pid = server.process.pid
        baseline = fd_count(pid)
        context = client_context(pki)
        samples = sequential_handshakes(server.port, context, WARM_UP, pid=pid, sample_every=WARM_UP,
                                        fd_target=baseline)
        sequential_handshakes(server.port, context, SEQUENTIAL - WARM_UP, pid=pid, sample_every=300,
                              fd_target=baseline, samples=samples)
        assert [fds for _, fds, _ in samples.points] == [baseline] * len(samples.points), samples.describe()
        assert samples.rss_growth() < RSS_GROWTH_KIB, samples.describe()
        assert server.process.poll() is None


# --- a flood of stalled connections ------------------------------------------------------------------------------

STALLED = 1000  # of each kind: silent, and half a ClientHello
FLOOD_TIMEOUT = 1.0
CLIENT_DELAY = 0.3
CLIENTS = 6
#: RSS per stalled connection allowed at the flood's peak. Measured ~25 KiB with --max-handshakes 50 (the cap keeps
#: the half-hello connections from growing handshake buffers; without it ~52 KiB): twice the measurement.
STALLED_KIB = 50


class Peak:
    """Samples a process's fds and RSS every 20 ms in a thread and keeps the maxima."""

    def __init__(self, pid: int) -> None:
        self.pid, self.fds, self.rss = pid, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for _ in range(3000):  # bounded: 60 s at most
            if self._stop.is_set():
                return
            self.fds, self.rss = max(self.fds, fd_count(self.pid)), max(self.rss, rss_kib(self.pid))
            time.sleep(0.02)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def flood(port: int, pki: PKI, stderr: LineReader, pid: int, baseline: int
          ) -> tuple[Peak, list[float | BaseException]]:
    """STALLED silent + STALLED half-hello connections at once; once the server holds them all, CLIENTS correct
    clients connect, one every 0.1 s, while the stallers are still pending. Returns the peak gauges and each
    correct client's latency (or error).

    The correct clients start CLIENT_DELAY after the last staller was accepted: the deadline also covers the wait
    for a handshake slot, and the slots go first come first served, so a client arriving right behind the burst
    waits for every staller's deadline, which ends just before its own, and can time out (see readme-parts/load.md).
    """
    context = client_context(pki)
    latencies: list[float | BaseException] = []

    def correct_client(delay: float) -> None:
        time.sleep(delay)
        started = time.monotonic()
        try:
            handshake_echo(port, context, timeout=3 * FLOOD_TIMEOUT)
            latencies.append(time.monotonic() - started)
        except Exception as exc:  # noqa: BLE001 - asserted on by the test
            latencies.append(exc)

    already = len(reason_lines(stderr.drain(0), "timeout"))
    clients = [threading.Thread(target=correct_client, args=(CLIENT_DELAY + 0.1 * i,)) for i in range(CLIENTS)]
    with Peak(pid) as peak, stalled_sockets(port, STALLED), \
            stalled_sockets(port, STALLED, payload=partial_client_hello(pki)):
        assert wait_at_least(lambda: fd_count(pid), baseline + 2 * STALLED) >= baseline + 2 * STALLED
        for client in clients:
            client.start()
        for client in clients:
            client.join(10)
        assert wait_for_reasons(stderr, "timeout", already + 2 * STALLED) == already + 2 * STALLED
    return peak, latencies


def test_flood_of_stalled_connections_is_bounded_and_does_not_starve_clients(pki: PKI) -> None:
    args = serve_args(pki, "--max-handshakes", "50", "--handshake-timeout", str(FLOOD_TIMEOUT))
    with gtls_serve(*args) as server:
        pid = server.process.pid
        baseline = fd_count(pid)
        context = client_context(pki)
        for _ in range(50):  # warm-up, so the idle RSS includes what every connection reuses
            handshake_echo(server.port, context)
        idle_rss = rss_kib(pid)
        first, latencies = flood(server.port, pki, server.stderr, pid, baseline)
        assert first.fds >= baseline + 2 * STALLED  # all stalled connections were accepted at once
        per_connection = (first.rss - idle_rss) / (2 * STALLED)
        assert per_connection < STALLED_KIB, f"{per_connection:.1f} KiB per stalled connection"
        # Correct clients kept being served during the flood: each completed within its own time limit (three
        # handshake deadlines; measured: under one). Not a timing assertion, a liveness one: a starved client times out.
        assert len(latencies) == CLIENTS and all(isinstance(latency, float) for latency in latencies), latencies
        assert settle(lambda: fd_count(pid), baseline) == baseline
        # Later floods reuse the memory of earlier ones: the peak plateaus (measured: +50 MiB in the first flood,
        # about +15 MiB more in the second as the allocator spreads out, then flat). A leak of a third of the
        # per-connection cost would add 16 MiB per flood.
        second, _ = flood(server.port, pki, server.stderr, pid, baseline)
        third, _ = flood(server.port, pki, server.stderr, pid, baseline)
        assert third.rss < second.rss + 16 * 1024, (first.rss, second.rss, third.rss)
        assert settle(lambda: fd_count(pid), baseline) == baseline
        assert len(reason_lines(server.stderr.drain(0), "timeout")) == 6 * STALLED  # each stalled one, nothing else
        assert server.process.poll() is None


# --- EMFILE ------------------------------------------------------------------------------------------------------

NOFILE = 64


def emfile_cycle(port: int, pki: PKI, stderr: LineReader, pid: int, baseline: int) -> None:
    """Hold plain connections until the server's accept fails with EMFILE, with a correct client waiting in the
    backlog; then free the descriptors: the waiting client and new ones are served, fds return to the baseline."""
    context = client_context(pki)
    outcome: list[object] = []
    # The pauses of an earlier cycle may have logged after its last read: such a line would pass for this cycle's
    # first EMFILE before the server reached the limit (seen on a loaded machine).
    stderr.drain(0)
    with stalled_sockets(port, NOFILE + 16) as held:
        stderr.wait_for(lambda line: "EMFILE" in line, 10)
        deadline = time.monotonic() + 10
        while fd_count(pid) < NOFILE and time.monotonic() < deadline:  # bounded: the log may run ahead of /proc
            time.sleep(0.05)
        assert fd_count(pid) == NOFILE  # at the limit: every slot taken
        waiting = threading.Thread(target=lambda: outcome.append(handshake_echo(port, context, timeout=15)))
        waiting.start()
        time.sleep(0.5)  # several pauses of 0.1 s go by with the client in the backlog
        pauses_before = sum("EMFILE" in line for line in stderr.drain(0))
        assert outcome == [] and waiting.is_alive()
        for sock in held:
            sock.close()
        held.clear()
        waiting.join(15)
    assert len(outcome) == 1, "the client waiting in the backlog was not served after recovery"
    for _ in range(20):
        handshake_echo(port, context)
    assert settle(lambda: fd_count(pid), baseline) == baseline
    # The loop pauses 0.1 s per EMFILE instead of spinning: a handful of log lines for 0.5 s, not thousands.
    assert 2 <= pauses_before <= 20


def test_gtls_serve_survives_emfile_and_recovers(pki: PKI) -> None:
    with limited_serve(*serve_args(pki, "--quiet", "--handshake-timeout", "30"), nofile=NOFILE) as server:
        pid = server.process.pid
        baseline = fd_count(pid)
        handshake_echo(server.port, client_context(pki))
        for _ in range(2):  # twice: recovery leaves nothing behind that makes the next exhaustion worse
            emfile_cycle(server.port, pki, server.stderr, pid, baseline)
        assert server.process.poll() is None
        pause = next(line for line in server.stderr.drain(0) if "EMFILE" in line)
        assert "Too many open files" in pause and "retrying in 0.1 seconds" in pause


def idle_stats(server: Running) -> ListenerStats:
    """The listener server's stats once its last connection task has ended (bounded wait)."""
    stats = listener_stats(server)
    for _ in range(100):
        if stats.handlers == 0:
            break
        time.sleep(0.05)
        stats = listener_stats(server)
    return stats


def test_library_listener_survives_emfile_and_recovers(pki: PKI) -> None:
    with listener_server(pki, nofile=NOFILE, handshake_timeout=30) as server:
        pid = server.process.pid
        handshake_echo(server.port, client_context(pki))
        before = idle_stats(server)  # its fds count includes the one listing /proc/self/fd
        emfile_cycle(server.port, pki, server.stderr, pid, fd_count(pid))
        after = idle_stats(server)
        assert after.handlers == 0 and after.tasks == before.tasks and after.fds == before.fds
        assert server.process.poll() is None
        assert any(line.startswith("gtls.server: accept returned EMFILE") for line in server.stderr.drain(0))


def test_held_connections_keep_working_through_emfile(pki: PKI) -> None:
    """Connections established before the descriptors ran out keep echoing while accept is paused."""
    with limited_serve(*serve_args(pki, "--quiet", "--handshake-timeout", "30"), nofile=NOFILE) as server:
        pid = server.process.pid
        context = client_context(pki)
        established: list[ssl.SSLSocket] = []
        try:
            for _ in range(5):
                raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
                established.append(context.wrap_socket(raw, server_hostname="localhost"))
            with stalled_sockets(server.port, NOFILE):
                server.stderr.wait_for(lambda line: "EMFILE" in line, 10)
                assert fd_count(pid) == NOFILE
                for conn in established:
                    conn.sendall(b"still here\n")
                    assert conn.recv(64) == b"still here\n"
        finally:
            for conn in established:
                conn.close()
        assert server.process.poll() is None

