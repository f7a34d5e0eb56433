"""Helpers for the load, soak and resource-exhaustion tests (no tests here).

* process gauges read from ``/proc``: ``fd_count``, ``rss_kib``, and ``settle`` (poll a gauge until it reaches a
  value or a deadline passes);
* ``limited_serve``: ``gtls serve`` started with a lowered RLIMIT_NOFILE (``preexec_fn``), otherwise like
  ``tests.peers.gtls_serve``;
* clients: ``serve_args`` (flags for a ``write_pki`` PKI), ``client_context`` (Python ``ssl``),
  ``handshake_echo`` / ``sequential_handshakes`` (one blocking client after the other, with gauge samples),
  ``hold_connections`` (many concurrent trio clients held open together), ``stalled_sockets`` (plain TCP sockets
  that send nothing, or a partial ClientHello, and wait).

Every wait is bounded in time, every loop in count; sockets are closed and processes killed in ``finally``.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import trio

from gtls import TLSOptions, TLSStream, open_tls_over_tcp_stream
from tests.peers import LOCALHOST, PKI, REPO, LineReader, Running, gtls_env, kill_process

# --- process gauges ----------------------------------------------------------------------------------------------


def fd_count(pid: int | None = None) -> int:
    """Open file descriptors of ``pid`` (default: this process), from /proc/PID/fd."""
    return len(os.listdir(f"/proc/{pid or 'self'}/fd"))


def rss_kib(pid: int | None = None) -> int:
    """Resident set size of ``pid`` (default: this process) in KiB, from the VmRSS line of /proc/PID/status."""
    with open(f"/proc/{pid or 'self'}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


def settle(gauge: Callable[[], int], target: int, *, timeout: float = 10.0, interval: float = 0.05) -> int:
    """Poll ``gauge()`` until it is at most ``target`` or ``timeout`` passes; returns the last reading (so the
    caller asserts on the real value). Closing is asynchronous on the server side, hence the wait."""
    deadline = time.monotonic() + timeout
    value = gauge()
    while value > target and time.monotonic() < deadline:
        time.sleep(interval)
        value = gauge()
    return value


async def settle_async(gauge: Callable[[], int], target: int, *, timeout: float = 10.0,
                       interval: float = 0.05) -> int:
    """``settle`` for trio code: sleeps with trio so in-process servers keep running meanwhile."""
    with trio.move_on_after(timeout):
        while gauge() > target:
            await trio.sleep(interval)
    return gauge()


# --- gtls serve with a lowered descriptor limit ------------------------------------------------------------------


def nofile_limit(limit: int) -> Callable[[], None]:
    """A ``preexec_fn`` setting RLIMIT_NOFILE (soft and hard) of the child to ``limit``."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return apply


@contextlib.contextmanager
def server_process(cmd: Sequence[str], *, nofile: int | None = None, timeout: float = 20.0) -> Iterator[Running]:
    """Run ``cmd`` (stdin a pipe) until it prints ``listening on HOST:PORT``, with RLIMIT_NOFILE = ``nofile`` if
    given (set in the child before exec, so the whole process lives under it); killed on exit.
    (``tests.peers.gtls_serve`` takes no ``preexec_fn``, hence this twin.)"""
    process = subprocess.Popen(
        list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.PIPE, text=True,
        env=gtls_env(), cwd=REPO, preexec_fn=nofile_limit(nofile) if nofile is not None else None,
    )
    try:
        running = Running(process, LineReader(process.stdout), LineReader(process.stderr))
        try:
            line = running.stdout.wait_for(lambda text: text.startswith("listening on "), timeout)
        except AssertionError as exc:
            raise AssertionError(f"{cmd} did not start: {exc}; stderr: {running.stderr.drain()}") from None
        running.port = int(line.rpartition(":")[2])
        yield running
    finally:
        kill_process(process)


def limited_serve(*args: str, nofile: int) -> contextlib.AbstractContextManager[Running]:
    """``gtls serve ARGS`` under RLIMIT_NOFILE = ``nofile``."""
    return server_process([sys.executable, "-m", "gtls", "serve", *args], nofile=nofile)


def listener_server(pki: PKI, *, nofile: int | None = None, handshake_timeout: float = 10.0
                    ) -> contextlib.AbstractContextManager[Running]:
    """``tests/listener_server.py``: the library's ``serve_tls_over_tcp`` in a process of its own."""
    script = REPO / "tests" / "listener_server.py"
    cmd = [sys.executable, str(script), ",".join(str(p) for p in pki.server_chain_files), str(pki.server_key),
           str(pki.ca_file), "--handshake-timeout", str(handshake_timeout)]
    return server_process(cmd, nofile=nofile)


@dataclass(frozen=True)
class ListenerStats:
    tasks: int  # every trio task of the server process
    handlers: int  # connection tasks alive
    fds: int


def listener_stats(server: Running) -> ListenerStats:
    """Ask a ``listener_server`` for its task and descriptor counts."""
    assert server.process.stdin is not None
    server.process.stdin.write("stats\n")
    server.process.stdin.flush()
    line = server.stdout.wait_for(lambda text: text.startswith("stats "), 10)
    fields = dict(item.split("=") for item in line.split()[1:])
    return ListenerStats(int(fields["tasks"]), int(fields["handlers"]), int(fields["fds"]))


# --- clients -----------------------------------------------------------------------------------------------------


def serve_args(pki: PKI, *extra: str, mutual: bool = False) -> list[str]:
    """``gtls serve`` flags for ``pki`` on a free loopback port."""
    args = ["--listen", f"{LOCALHOST}:0", "--certificate", ",".join(str(p) for p in pki.server_chain_files),
            "--certificate-key", str(pki.server_key), "--trusted-ca", str(pki.ca_file)]
    if mutual:
        args.append("--tls-mutual")
    return [*args, *extra]


def client_context(pki: PKI, *, with_cert: bool = False) -> ssl.SSLContext:
    """A verifying Python ``ssl`` client context (host name ``localhost``), with the client chain if asked."""
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    if with_cert:
        context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    return context


def handshake_echo(port: int, context: ssl.SSLContext, *, session: ssl.SSLSession | None = None,
                   timeout: float = 10.0) -> tuple[ssl.SSLSession | None, bool]:
    """One connection: handshake, send a line, read it back, close. Returns (session, session_reused); raises if
    the line does not come back whole. The session is taken after the echo, when TLS 1.3 tickets have arrived."""
    line = b"ping\n"
    with (
        socket.create_connection((LOCALHOST, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname="localhost", session=session) as conn,
    ):
        conn.sendall(line)
        data = b""
        for _ in range(16):  # a short line comes back in one or two records
            chunk = conn.recv(64)
            if not chunk:
                break
            data += chunk
            if data == line:
                break
        if data != line:
            raise AssertionError(f"echo came back as {data!r}")
        return conn.session, conn.session_reused


@dataclass
class Samples:
    """Gauge readings of one server process: (handshakes done, fds, RSS KiB) per sample."""

    points: list[tuple[int, int, int]] = field(default_factory=list)
    reused: int = 0

    def take(self, done: int, pid: int, fd_target: int | None = None) -> None:
        """One reading; with ``fd_target``, first give the server up to 2 s to close what the client closed."""
        fds = settle(lambda: fd_count(pid), fd_target, timeout=2.0) if fd_target is not None else fd_count(pid)
        self.points.append((done, fds, rss_kib(pid)))

    def rss_growth(self, start: int = 0) -> int:
        """KiB of RSS gained from sample ``start`` to the last one."""
        return self.points[-1][2] - self.points[start][2]

    def describe(self) -> str:
        return ", ".join(f"{done}: {fds} fds {rss} KiB" for done, fds, rss in self.points)


def sequential_handshakes(port: int, context: ssl.SSLContext, count: int, *, pid: int, sample_every: int,
                          fd_target: int | None = None, resume: bool = False,
                          samples: Samples | None = None) -> Samples:
    """``count`` connections one after the other (each handshakes and echoes once), sampling the server's fds and
    RSS every ``sample_every`` connections (once its fds are back to ``fd_target``, so they compare). With
    ``resume``, every connection offers the session of the one before (``Samples.reused`` counts the hits)."""
    samples = samples if samples is not None else Samples()
    session: ssl.SSLSession | None = None
    for done in range(1, count + 1):
        new_session, reused = handshake_echo(port, context, session=session if resume else None)
        samples.reused += reused
        if resume and new_session is not None:
            session = new_session
        if done % sample_every == 0:
            samples.take(done, pid, fd_target)
    return samples


@dataclass
class Held:
    """Outcome of ``hold_connections``."""

    echoed: int = 0
    failures: list[BaseException] = field(default_factory=list)


async def hold_connections(port: int, settings: TLSOptions, count: int, *, while_held: Callable[[], object],
                           connect_limit: int = 100, timeout: float = 30.0) -> Held:
    """Open ``count`` TLS connections (at most ``connect_limit`` handshakes from here at once), echo one line on
    each, hold them all open, call ``while_held()`` once every connection has echoed, then close them all
    (close_notify). Failures are collected, not raised; ``timeout`` bounds the whole run."""
    held = Held()
    all_echoed = trio.Event()
    release = trio.Event()
    limiter = trio.CapacityLimiter(connect_limit)

    async def one() -> None:
        stream: TLSStream | None = None
        try:
            async with limiter:
                stream = await open_tls_over_tcp_stream(LOCALHOST, port, settings, server_hostname="localhost")
                await stream.send_all(b"ping\n")
                data = b""
                while len(data) < 5:  # bounded: each receive returns at least one byte or ends the loop
                    chunk = await stream.receive_some()
                    if not chunk:
                        break
                    data += chunk
                if data != b"ping\n":
                    raise AssertionError(f"echo came back as {data!r}")
            held.echoed += 1
            if held.echoed == count:
                all_echoed.set()
            await release.wait()
        except Exception as exc:  # noqa: BLE001 - collected and asserted on by the test
            held.failures.append(exc)
            if held.echoed + len(held.failures) == count:
                all_echoed.set()
        finally:
            if stream is not None:
                with contextlib.suppress(Exception):
                    await stream.aclose()

    with trio.fail_after(timeout):
        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(one)
            await all_echoed.wait()
            if not held.failures:
                while_held()
            release.set()
    return held


@contextlib.contextmanager
def stalled_sockets(port: int, count: int, *, payload: bytes = b"") -> Iterator[list[socket.socket]]:
    """``count`` plain TCP connections to 127.0.0.1:``port`` that send ``payload`` (maybe nothing) and then wait;
    all closed on exit. Connecting goes on even when the server stops accepting (the kernel backlog takes them)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection((LOCALHOST, port), timeout=5)
            sockets.append(sock)
            if payload:
                sock.sendall(payload)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def partial_client_hello(pki: PKI) -> bytes:
    """The first half of a real ClientHello (made by Python's ssl in memory, never sent whole)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_context(pki).wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    return hello[: len(hello) // 2]


def reason_lines(lines: Sequence[str], reason: str) -> list[str]:
    """``gtls serve`` log lines reporting a failed handshake with ``reason``."""
    return [line for line in lines if f": failed: {reason}:" in line]


def wait_for_reasons(reader: LineReader, reason: str, count: int, timeout: float = 10.0) -> int:
    """Poll a ``gtls serve`` stderr reader until ``count`` lines report ``reason`` (or ``timeout`` passes); returns
    the count reached."""
    deadline = time.monotonic() + timeout
    while (seen := len(reason_lines(reader.drain(0), reason))) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return seen


def wait_at_least(gauge: Callable[[], int], target: int, timeout: float = 10.0) -> int:
    """Poll ``gauge()`` until it reaches ``target`` or ``timeout`` passes; returns the last reading."""
    deadline = time.monotonic() + timeout
    while (value := gauge()) < target and time.monotonic() < deadline:
        time.sleep(0.02)
    return value
