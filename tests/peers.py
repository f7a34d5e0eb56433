"""Real TLS peers for the transport tests (and anyone else's): no tests here.

* ``write_pki`` — a test PKI on disk (root, intermediate, server and client leaves) from ``gtls.testing``;
* ``openssl_server`` — ``openssl s_server`` on 127.0.0.1 with a free port (context manager, killed on exit);
* ``openssl_client`` — ``openssl s_client`` run to completion (async, for trio tests) with a bounded time;
* ``python_ssl_server`` / ``python_ssl_client`` — Python's blocking ``ssl`` module in threads;
* ``trio_ssl_context`` — an ``ssl.SSLContext`` for trio's ``SSLStream`` peers;
* ``raw_server`` — a plain TCP server running a scripted behaviour (silent, close, plaintext) for failure tests.

Every subprocess is killed in a ``finally``; every loop is bounded in count and time; servers bind 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio

from gtls.options import TLSOptions
from gtls.testing import CA, Certified, KeyType

OPENSSL = "/usr/bin/openssl" if os.path.exists("/usr/bin/openssl") else "openssl"
LOCALHOST = "127.0.0.1"


# --- PKI ---------------------------------------------------------------------------------------------------------


@dataclass
class PKI:
    """Files of a small test PKI: root → intermediate → server / client leaves."""

    dir: Path
    root: CA
    intermediate: CA
    server: Certified
    client: Certified
    ca_file: Path  # trusted-ca: the root only
    server_cert: Path  # leaf and intermediate, scrambled across two files
    server_key: Path
    client_cert: Path
    client_key: Path
    server_chain_files: tuple[Path, ...] = field(default=())
    intermediate_file: Path | None = None  # for openssl's -cert_chain (its -cert reads one certificate)

    def server_options(self, **extra: object) -> TLSOptions:
        mapping: dict[str, object] = {
            "certificate": ",".join(str(p) for p in self.server_chain_files),
            "certificate-key": str(self.server_key),
            "trusted-ca": str(self.ca_file),
        }
        mapping.update({k.replace("_", "-"): v for k, v in extra.items()})
        return TLSOptions.from_mapping(mapping)

    def client_options(self, *, with_cert: bool = False, **extra: object) -> TLSOptions:
        mapping: dict[str, object] = {"trusted-ca": str(self.ca_file)}
        if with_cert:
            mapping["certificate"] = str(self.client_cert)
            mapping["certificate-key"] = str(self.client_key)
        mapping.update({k.replace("_", "-"): v for k, v in extra.items()})
        return TLSOptions.from_mapping(mapping)


def write_pki(directory: Path, *, key_type: KeyType = "ec", server_dns: Sequence[str] = ("localhost",)) -> PKI:
    """Write a PKI under ``directory``. The server's chain is split over two files in scrambled order
    (intermediate first), which gtls must reorder leaf first; the client file holds leaf + intermediate."""
    directory.mkdir(parents=True, exist_ok=True)
    root = CA.root("gtls transport test root", key_type=key_type)
    inter = root.intermediate("gtls transport test intermediate", key_type=key_type)
    server = inter.leaf(server_dns[0] if server_dns else "server", dns=server_dns, key_type=key_type)
    client = inter.leaf("client.test", dns=("client.test",), key_type=key_type)
    ca_file = root.write_cert(directory / "ca.pem")
    inter_file = inter.write_cert(directory / "inter.pem")
    leaf_file = server.write_cert(directory / "server-leaf.pem")
    server_key = server.write_key(directory / "server.key")
    client_cert = client.write_chain(directory / "client.pem")
    client_key = client.write_key(directory / "client.key")
    # A single-file chain too, for peers that want one file (openssl, Python ssl).
    server_cert = server.write_chain(directory / "server.pem")
    return PKI(
        dir=directory,
        root=root,
        intermediate=inter,
        server=server,
        client=client,
        ca_file=ca_file,
        server_cert=server_cert,
        server_key=server_key,
        client_cert=client_cert,
        client_key=client_key,
        server_chain_files=(inter_file, leaf_file),
        intermediate_file=inter_file,
    )


# --- openssl processes -------------------------------------------------------------------------------------------


@dataclass
class OpenSSLServer:
    port: int
    process: subprocess.Popen[bytes]
    lines: queue.Queue[bytes]

    def output(self, timeout: float = 2.0) -> str:
        """Everything the server printed so far (waits up to ``timeout`` for more to arrive)."""
        chunks: list[bytes] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunks.append(self.lines.get(timeout=0.05))
            except queue.Empty:
                if chunks:
                    break
        return b"".join(chunks).decode("utf-8", "replace")


def _pump(stream: object, sink: queue.Queue[bytes]) -> None:
    assert hasattr(stream, "readline")
    for line in iter(stream.readline, b""):
        sink.put(line)


@contextlib.contextmanager
def openssl_server(
    *,
    cert: Path,
    key: Path,
    ca: Path | None = None,
    chain: Path | None = None,
    verify_client: bool = False,
    args: Sequence[str] = (),
    www: bool = True,
    startup_timeout: float = 10.0,
) -> Iterator[OpenSSLServer]:
    """``openssl s_server`` on 127.0.0.1 (free port). ``www`` answers ``GET /`` with a status page, so a client
    can check data flow; ``verify_client`` demands a client certificate (``-Verify 1``); ``chain`` holds the
    intermediates to send after ``cert``."""
    cmd = [OPENSSL, "s_server", "-accept", f"{LOCALHOST}:0", "-cert", str(cert), "-key", str(key), "-naccept", "1000"]
    if ca is not None:
        cmd += ["-CAfile", str(ca)]
    if chain is not None:
        cmd += ["-cert_chain", str(chain)]
    if verify_client:
        cmd += ["-Verify", "1", "-verify_return_error"]
    if www:
        cmd.append("-www")
    cmd += list(args)
    process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: queue.Queue[bytes] = queue.Queue()
    threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True).start()
    try:
        port = None
        deadline = time.monotonic() + startup_timeout
        seen: list[bytes] = []
        while port is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.1)
            except queue.Empty:
                if process.poll() is not None:
                    break
                continue
            seen.append(line)
            if line.startswith(b"ACCEPT"):
                port = int(line.split(b":")[-1])
        if port is None:
            raise RuntimeError(f"openssl s_server did not start: {b''.join(seen).decode(errors='replace')}")
        yield OpenSSLServer(port, process, lines)
    finally:
        process.kill()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


@dataclass
class ClientResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


async def openssl_client(
    port: int,
    *,
    ca: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    chain: Path | None = None,
    servername: str | None = None,
    args: Sequence[str] = (),
    send: bytes = b"",
    timeout: float = 15.0,
) -> ClientResult:
    """Run ``openssl s_client`` against 127.0.0.1:``port`` to completion; ``send`` goes to its stdin, and it
    keeps reading after stdin ends (``-ign_eof``) until the server closes. Killed after ``timeout``."""
    cmd = [OPENSSL, "s_client", "-connect", f"{LOCALHOST}:{port}", "-ign_eof"]
    if ca is not None:
        cmd += ["-CAfile", str(ca), "-verify_return_error"]
    if cert is not None:
        cmd += ["-cert", str(cert)]
    if key is not None:
        cmd += ["-key", str(key)]
    if chain is not None:
        cmd += ["-cert_chain", str(chain)]
    cmd += ["-servername", servername] if servername else ["-noservername"]
    cmd += list(args)
    with trio.fail_after(timeout):
        done = await trio.run_process(cmd, stdin=send, capture_stdout=True, capture_stderr=True, check=False)
    return ClientResult(done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"))


class OpenSSLSession:
    """A running ``openssl s_client`` that reads command letters (``R`` renegotiate, ``K``/``k`` key update)."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.output = b""

    async def send(self, data: bytes) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(data)

    async def expect(self, marker: bytes, timeout: float = 10.0) -> bytes:
        """Read the client's output until ``marker`` appears (or fail after ``timeout``); returns all output."""
        assert self.process.stdout is not None
        with trio.fail_after(timeout):
            while marker not in self.output:
                chunk = await self.process.stdout.receive_some(65536)
                if not chunk:
                    raise AssertionError(f"s_client ended before {marker!r}: {self.output.decode(errors='replace')}")
                self.output += chunk
        return self.output


@contextlib.asynccontextmanager
async def openssl_session(
    port: int, *, ca: Path | None = None, args: Sequence[str] = ()
) -> AsyncIterator[OpenSSLSession]:
    """``openssl s_client`` kept open for an interactive exchange; killed on exit."""
    cmd = [OPENSSL, "s_client", "-connect", f"{LOCALHOST}:{port}", "-noservername", *args]
    if ca is not None:
        cmd += ["-CAfile", str(ca), "-verify_return_error"]
    process = await trio.lowlevel.open_process(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                               stderr=subprocess.STDOUT)
    try:
        yield OpenSSLSession(process)
    finally:
        process.kill()
        with trio.move_on_after(5):
            await process.wait()


# --- Python ssl peers (blocking, in threads) ---------------------------------------------------------------------


def python_context(
    *,
    server: bool,
    ca: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    require_client_cert: bool = False,
    version: str | None = None,
    check_hostname: bool = False,
) -> ssl.SSLContext:
    """An ``ssl.SSLContext`` for a Python-ssl or trio-SSLStream peer; ``version`` pins ``"1.2"`` or ``"1.3"``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    if not server:
        context.check_hostname = check_hostname
        context.verify_mode = ssl.CERT_REQUIRED if ca is not None else ssl.CERT_NONE
    if ca is not None:
        context.load_verify_locations(str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key) if key else None)
    if server and require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
    if version is not None:
        pinned = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[version]
        context.minimum_version = context.maximum_version = pinned
    return context


trio_ssl_context = python_context


@dataclass
class PythonServer:
    port: int
    errors: list[BaseException] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)


def _echo_once(conn: ssl.SSLSocket, until: bytes) -> None:
    data = b""
    for _ in range(10_000):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
        if data.endswith(until):
            break
    conn.sendall(data)


@contextlib.contextmanager
def python_ssl_server(
    context: ssl.SSLContext, *, until: bytes = b"\n", timeout: float = 10.0
) -> Iterator[PythonServer]:
    """A threaded Python-ssl server: each connection handshakes, echoes one message ending in ``until``, then
    closes with close_notify. Handshake and other errors are collected in ``server.errors``."""
    listener = socket.create_server((LOCALHOST, 0))
    listener.settimeout(0.1)
    state = PythonServer(listener.getsockname()[1])
    stop = threading.Event()

    def serve_one(raw: socket.socket) -> None:
        raw.settimeout(timeout)
        try:
            with context.wrap_socket(raw, server_side=True) as conn:
                state.versions.append(str(conn.version()))
                _echo_once(conn, until)
                with contextlib.suppress(OSError):
                    conn.unwrap()
        except (OSError, ssl.SSLError) as exc:
            state.errors.append(exc)
        finally:
            raw.close()

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve_one, args=(raw,), daemon=True).start()

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def python_ssl_client(
    port: int,
    context: ssl.SSLContext,
    *,
    message: bytes = b"hello\n",
    server_hostname: str | None = None,
    timeout: float = 10.0,
    session: ssl.SSLSession | None = None,
) -> tuple[bytes, str | None, ssl.SSLSession | None, bool]:
    """Connect with Python's ssl module, send ``message`` and read until the server closes.
    Returns (data, negotiated version, session, session_reused). Raises the ``ssl`` errors as they come."""
    with (
        socket.create_connection((LOCALHOST, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname, session=session) as conn,
    ):
        conn.sendall(message)
        data = b""
        for _ in range(10_000):
            try:
                chunk = conn.recv(65536)
            except ssl.SSLEOFError:
                break
            if not chunk:
                break
            data += chunk
            if len(data) >= len(message):
                break
        return data, conn.version(), conn.session, conn.session_reused


# --- scripted plain-TCP peers ------------------------------------------------------------------------------------


@contextlib.contextmanager
def raw_server(behaviour: Callable[[socket.socket], None]) -> Iterator[int]:
    """A plain TCP server on 127.0.0.1 running ``behaviour(conn)`` for each connection in its own thread; the
    connection is closed afterwards. Yields the port."""
    listener = socket.create_server((LOCALHOST, 0))
    listener.settimeout(0.1)
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def run(conn: socket.socket) -> None:
        try:
            conn.settimeout(10)
            behaviour(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=run, args=(conn,), daemon=True)
            threads.append(thread)
            thread.start()

    acceptor = threading.Thread(target=accept_loop, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        acceptor.join(timeout=5)
        listener.close()
        for thread in threads:
            thread.join(timeout=5)


def silent(stop_after: float) -> Callable[[socket.socket], None]:
    """Accept and say nothing for ``stop_after`` seconds (or until the peer leaves)."""

    def behaviour(conn: socket.socket) -> None:
        conn.settimeout(stop_after)
        with contextlib.suppress(OSError):
            for _ in range(1000):
                if not conn.recv(65536):
                    return

    return behaviour


def close_after_hello(conn: socket.socket) -> None:
    """Read the ClientHello, then close without a word (EOF mid-handshake)."""
    conn.recv(65536)


def plaintext_reply(conn: socket.socket) -> None:
    """Answer like an HTTP server that does not speak TLS."""
    conn.recv(65536)
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
