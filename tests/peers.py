"""Real peers and helpers for every test module (no tests here). Servers bind 127.0.0.1 only; every subprocess is
killed in a ``finally``; every loop and wait is bounded in count and time.

* PKIs on disk: ``write_pki`` (root → intermediate → server / client leaves), ``copy_fixtures`` (``certs-fixtures/``
  with keys at 0600);
* ``openssl`` processes: ``s_server`` (raw arguments) and ``openssl_server`` (keyword form) on a free port,
  ``s_client`` (blocking) and ``openssl_client`` (async, for trio tests), ``openssl_session`` (interactive),
  ``openssl_echo`` (one line through an echo server);
* Python's ``ssl``: ``python_context`` / ``trio_ssl_context``, ``python_ssl_server``, ``python_ssl_client``;
* gtls contexts over blocking sockets: ``client_handshake``, ``gtls_server``, ``close``;
* scripted plain-TCP peers: ``raw_server`` with ``silent``, ``close_after_hello``, ``plaintext_reply``;
* the ``gtls`` command: ``run_gtls``, ``gtls_serve``, ``gtls_env``, ``error_line``, ``closed_port``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio
import trio.testing
from OpenSSL import SSL

from gtls.context import CompiledContext
from gtls.errors import HandshakeError
from gtls.options import TLSOptions
from gtls.stream import TLSStream
from gtls.testing import CA, Certified, KeyType

OPENSSL = "/usr/bin/openssl" if os.path.exists("/usr/bin/openssl") else "openssl"
LOCALHOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "certs-fixtures"
#: Upper bound for any single command run or wait.
STEP_TIMEOUT = 20.0
#: ``sec-protocol`` for each TLS version an interop matrix runs.
SEC_PROTOCOL = {"1.2": "TLSv12", "1.3": "TLSv13"}
#: The interop matrix: (version, key type, mutual TLS), as ``pytest.mark.parametrize`` arguments.
INTEROP_MATRIX = [
    pytest.param(version, key, mutual, id=f"tls{version}-{key}-{'mutual' if mutual else 'simple'}")
    for version in ("1.3", "1.2")
    for key in ("ec", "rsa")
    for mutual in (False, True)
]


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


async def settled(timeout: float = 5.0) -> None:
    """Until every task of this run waits and nothing is left to read: a server has then handled all that its
    clients sent (each handshake's event recorded) and can be cancelled without cutting one short."""
    with trio.fail_after(timeout):
        await trio.testing.wait_all_tasks_blocked()


def serial_zero_identity(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate of serial 0 for ``localhost`` (RFC 5280 forbids it, OpenSSL accepts it, a few roots
    of the system bundles have one; cryptography warns on reading it) and its key, made by the openssl command
    (gtls.testing will not make one)."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-subj", f"/CN={name}", "-addext", "subjectAltName=DNS:localhost",
                    "-set_serial", "0", "-days", "30", "-out", str(cert)], check=True, capture_output=True, timeout=30)
    return cert, key


def _der(tag: int, value: bytes) -> bytes:
    size = len(value)
    if size < 128:
        return bytes([tag, size]) + value
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + value


def _der_items(data: bytes) -> list[tuple[int, bytes]]:
    """The (tag, value) items of one level of DER."""
    items, index = [], 0
    while index < len(data):
        tag, size, index = data[index], data[index + 1], index + 2
        if size & 0x80:
            count = size & 0x7F
            size, index = int.from_bytes(data[index:index + count], "big"), index + count
        items.append((tag, data[index:index + size]))
        index += size
    return items


def version_4_certificate(cert: Certified, issuer: CA) -> bytes:
    """``cert`` re-signed by ``issuer`` with its version field set to 3 (an "X.509 v4"): OpenSSL reads and verifies
    it, cryptography refuses to load it (``InvalidVersion``). PEM."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    [(_, body)] = _der_items(cert.cert.public_bytes(serialization.Encoding.DER))
    (tbs_tag, tbs), (alg_tag, alg), (sig_tag, _) = _der_items(body)
    fields = _der_items(tbs)
    fields[0] = (fields[0][0], bytes.fromhex("020103"))  # [0] EXPLICIT INTEGER 3
    new_tbs = _der(tbs_tag, b"".join(_der(tag, value) for tag, value in fields))
    key = issuer.key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    signature = key.sign(new_tbs, ec.ECDSA(hashes.SHA256()))
    der = _der(0x30, new_tbs + _der(alg_tag, alg) + _der(sig_tag, b"\x00" + signature))
    return ssl.DER_cert_to_PEM_cert(der).encode()


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


def copy_fixtures(dest: Path) -> Path:
    """A copy of ``certs-fixtures/`` with private keys at mode 0600: git does not keep file modes, and gtls refuses
    key files other users can read, so tests must not depend on the checkout's modes."""
    copy = Path(shutil.copytree(FIXTURES, dest / "certs-fixtures"))
    for key in [*copy.glob("certs/*privkey.pem"), *copy.glob("demo/*-key.pem")]:
        key.chmod(0o600)
    return copy


# --- processes ---------------------------------------------------------------------------------------------------


class LineReader:
    """Collects a text pipe's lines in a thread so waits can be bounded without blocking reads."""

    def __init__(self, pipe: object) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(pipe,), daemon=True)
        self._thread.start()

    def _pump(self, pipe: object) -> None:
        try:
            for line in iter(pipe.readline, ""):  # type: ignore[attr-defined]
                self._queue.put(line.rstrip("\n"))
        except (ValueError, OSError):  # the pipe was closed under us while the process was being stopped: its end
            pass
        self._queue.put(None)

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = STEP_TIMEOUT) -> str:
        """The first new line for which ``predicate(line)`` holds; AssertionError on EOF or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting; lines so far: {self.lines}")
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"stream ended; lines: {self.lines}")
            self.lines.append(line)
            if predicate(line):
                return line

    def drain(self, timeout: float = 2.0) -> list[str]:
        """Everything until EOF (the process has exited) or the timeout."""
        self._thread.join(timeout)
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return self.lines
            if line is not None:
                self.lines.append(line)


@dataclass
class Running:
    """A server process that announced its address."""

    process: subprocess.Popen[str]
    stdout: LineReader
    stderr: LineReader
    host: str = LOCALHOST
    port: int = 0

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``signum`` and wait for the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(timeout)


def kill_process(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


@contextlib.contextmanager
def _server_process(cmd: Sequence[str], prefix: str, *, env: dict[str, str] | None = None,
                    cwd: Path | None = None) -> Iterator[Running]:
    """Start ``cmd`` and wait until it prints a line starting with ``prefix`` and ending in ``HOST:PORT``."""
    process = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.PIPE,
                               text=True, env=env, cwd=cwd)
    try:
        running = Running(process, LineReader(process.stdout), LineReader(process.stderr))
        try:
            line = running.stdout.wait_for(lambda text: text.startswith(prefix))
        except AssertionError as exc:
            raise AssertionError(f"{cmd[0]} did not start: {exc}; stderr: {running.stderr.drain()}") from None
        host, _, port = line.removeprefix(prefix).rpartition(":")
        running.host, running.port = host.strip(" []") or LOCALHOST, int(port)
        yield running
    finally:
        kill_process(process)


# --- openssl processes -------------------------------------------------------------------------------------------


def s_server(*args: str | Path) -> contextlib.AbstractContextManager[Running]:
    """``openssl s_server -accept 127.0.0.1:0 ARGS`` until it reports its port; killed on exit."""
    return _server_process([OPENSSL, "s_server", "-accept", f"{LOCALHOST}:0", *map(str, args)], "ACCEPT")


def openssl_server(
    *,
    cert: Path,
    key: Path,
    ca: Path | None = None,
    chain: Path | None = None,
    verify_client: bool = False,
    args: Sequence[str] = (),
    www: bool = True,
) -> contextlib.AbstractContextManager[Running]:
    """``s_server`` from keywords. ``www`` answers ``GET /`` with a status page, so a client can check data flow;
    ``verify_client`` demands a client certificate (``-Verify 1``); ``chain`` holds the intermediates to send after
    ``cert``."""
    cmd: list[str | Path] = ["-cert", cert, "-key", key, "-naccept", "1000"]
    if ca is not None:
        cmd += ["-CAfile", ca]
    if chain is not None:
        cmd += ["-cert_chain", chain]
    if verify_client:
        cmd += ["-Verify", "1", "-verify_return_error"]
    if www:
        cmd.append("-www")
    return s_server(*cmd, *args)


def s_client(port: int, *args: str | Path, timeout: float = 15.0, send: bytes = b""
             ) -> subprocess.CompletedProcess[str]:
    """``openssl s_client`` to 127.0.0.1:port; returns when it exits (stdin EOF ends it after the handshake)."""
    result = subprocess.run(
        [OPENSSL, "s_client", "-connect", f"{LOCALHOST}:{port}", *map(str, args)],
        input=send,
        capture_output=True,
        timeout=timeout,
    )
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(errors="replace"),
                                       result.stderr.decode(errors="replace"))


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


@dataclass
class EchoResult:
    returncode: int
    stdout: list[str]
    stderr: list[str]
    echoed: bool


def openssl_echo(port: int, text: str, *args: str, host: str = LOCALHOST,
                 timeout: float = STEP_TIMEOUT) -> EchoResult:
    """Connect ``openssl s_client``, send ``text`` and a newline, wait until the same line comes back, then close
    stdin (s_client quits). ``echoed`` says whether the line came back before the peer closed or the timeout.

    ``-quiet`` because without it s_client 3.0 stops showing data after a TLS 1.3 post-handshake record when it
    sent a client certificate ("read R BLOCK"); ``-no_ign_eof`` undoes the ``-ign_eof`` that ``-quiet`` implies."""
    process = subprocess.Popen([OPENSSL, "s_client", "-connect", f"{host}:{port}", "-quiet", "-no_ign_eof", *args],
                               stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = LineReader(process.stdout), LineReader(process.stderr)
        assert process.stdin is not None
        echoed = False
        try:
            process.stdin.write(text + "\n")
            process.stdin.flush()
            out.wait_for(lambda line: line == text, timeout)
            echoed = True
        except (AssertionError, OSError):
            pass
        with contextlib.suppress(OSError):
            process.stdin.close()
        returncode = process.wait(timeout)
        return EchoResult(returncode, out.drain(), err.drain(), echoed)
    finally:
        kill_process(process)


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


def wrap_client(context: ssl.SSLContext, raw: socket.socket, server_hostname: str = "localhost") -> ssl.SSLSocket:
    """``context.wrap_socket(raw)`` for a server that may reset the connection meanwhile (one stopping). CPython's
    ssl leaves the SSLSocket it built unclosed when the socket reports a reset between its ``getpeername`` and
    ``recv(1)`` checks; a reference cycle through the exception keeps it until some later garbage collection, whose
    ResourceWarning then fails whatever test runs there. It is closed here before the error goes on."""
    try:
        return context.wrap_socket(raw, server_hostname=server_hostname)
    except OSError as exc:
        traceback = exc.__traceback__
        while traceback is not None:  # the frames of SSLSocket._create: its ``self``
            built = traceback.tb_frame.f_locals.get("self")
            if isinstance(built, ssl.SSLSocket):
                built.close()
            traceback = traceback.tb_next
        raise


def send_key_update(obj: ssl.SSLObject, *, update_requested: bool) -> None:
    """Make a Python-ssl peer send a TLS 1.3 KeyUpdate, which ``ssl`` has no method for: libssl's SSL_key_update on
    the ``SSL *`` inside the object (after ``PyObject_HEAD`` and the socket weak reference in CPython's
    PySSLSocket), checked to be the live TLS 1.3 connection before it is used."""
    libssl = ctypes.CDLL("libssl.so.3")  # the library Python's ssl module runs on (already loaded)
    libssl.SSL_version.argtypes = libssl.SSL_is_server.argtypes = [ctypes.c_void_p]
    libssl.SSL_key_update.argtypes = [ctypes.c_void_p, ctypes.c_int]
    pointer = ctypes.c_void_p.from_address(id(obj._sslobj) + 24).value  # type: ignore[attr-defined]
    assert libssl.SSL_version(pointer) == 0x0304 and bool(libssl.SSL_is_server(pointer)) == obj.server_side, \
        "not the SSL * of this TLS 1.3 SSLObject: this Python's PySSLSocket layout differs"
    assert libssl.SSL_key_update(pointer, 1 if update_requested else 0) == 1


def python_key_update_client(port: int, ca: Path, payload: bytes, expect: int, *, every: int = 65536) -> bytes:
    """A Python-ssl TLS 1.3 client (memory BIOs over a non-blocking socket, in the calling thread) that streams
    ``payload`` while reading ``expect`` bytes, asking for new keys (KeyUpdate, update_requested) after every
    ``every`` bytes it sends; returns what it read. Bounded: 60 s."""
    context = python_context(server=False, ca=ca, version="1.3")
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    deadline = time.monotonic() + 60
    with socket.create_connection((LOCALHOST, port), timeout=10) as sock:
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                incoming.write(sock.recv(65536) or b"")
        sock.sendall(outgoing.read())
        sock.setblocking(False)
        got, unsent, offset, since = bytearray(), b"", 0, 0
        while (offset < len(payload) or unsent or len(got) < expect) and time.monotonic() < deadline:
            if not unsent and offset < len(payload):
                obj.write(payload[offset:offset + 16384])
                offset += 16384
                since += 16384
                if since >= every and offset < len(payload):
                    send_key_update(obj, update_requested=True)
                    since = 0
                unsent = outgoing.read()
            readable, writable, _ = select.select([sock], [sock] if unsent else [], [], 1.0)
            if writable:
                with contextlib.suppress(BlockingIOError):
                    unsent = unsent[sock.send(unsent):]
            if readable:
                data = sock.recv(16384)  # a slow reader: the server's sends keep waiting for the socket
                time.sleep(0.0005)
                assert data, f"the server closed after {len(got)} bytes"
                incoming.write(data)
                with contextlib.suppress(ssl.SSLWantReadError):
                    while chunk := obj.read(65536):
                        got += chunk
                unsent += outgoing.read()  # our own answers (to its KeyUpdate) go out in order
        sock.settimeout(10)  # then wait for the server's close_notify: closing first would reset its last writes
        with contextlib.suppress(ssl.SSLZeroReturnError):
            while time.monotonic() < deadline:
                try:
                    chunk = obj.read(65536)
                except ssl.SSLWantReadError:
                    data = sock.recv(65536)
                    if not data:
                        break
                    incoming.write(data)
                    continue
                if not chunk:
                    break
                got += chunk
        return bytes(got)


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
    state = PythonServer(0)

    def serve_one(raw: socket.socket) -> None:
        raw.settimeout(timeout)
        try:
            with context.wrap_socket(raw, server_side=True) as conn:
                state.versions.append(str(conn.version()))
                _echo_once(conn, until)
                with contextlib.suppress(OSError):
                    conn.unwrap()
        except OSError as exc:  # ssl.SSLError included
            state.errors.append(exc)

    with _threaded_server(serve_one) as state.port:
        yield state


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
def _threaded_server(handle: Callable[[socket.socket], None]) -> Iterator[int]:
    """A TCP server on 127.0.0.1 running ``handle(conn)`` for each connection in its own thread; the connection is
    closed afterwards and OSErrors it raises are dropped. Yields the port."""
    listener = socket.create_server((LOCALHOST, 0))
    listener.settimeout(0.1)
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def run(conn: socket.socket) -> None:
        try:
            handle(conn)
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


@contextlib.contextmanager
def raw_server(behaviour: Callable[[socket.socket], None]) -> Iterator[int]:
    """A plain TCP server on 127.0.0.1 running ``behaviour(conn)`` for each connection in its own thread; the
    connection is closed afterwards. Yields the port."""

    def run(conn: socket.socket) -> None:
        conn.settimeout(10)
        behaviour(conn)

    with _threaded_server(run) as port:
        yield port


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


def closed_port() -> int:
    """A loopback port with nothing listening (bound then released)."""
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


# --- gtls contexts over blocking sockets (SO_RCVTIMEO/SO_SNDTIMEO bound every wait) ---------------------------------


IO_TIMEOUT = 5.0


def _bound(sock: socket.socket, seconds: float = IO_TIMEOUT) -> None:
    """Blocking socket whose reads and writes give up after ``seconds`` (OpenSSL's socket BIO honours these)."""
    sock.settimeout(None)
    timeval = struct.pack("ll", int(seconds), int((seconds % 1) * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


def client_handshake(
    compiled: CompiledContext, port: int, *, server_hostname: str | None = None
) -> tuple[SSL.Connection | None, HandshakeError | None]:
    """One gtls-context client handshake against 127.0.0.1:port: (connection, None) or (None, error)."""
    sock = socket.create_connection((LOCALHOST, port), timeout=IO_TIMEOUT)
    _bound(sock)
    conn = compiled.new_connection(sock, server_hostname=server_hostname)
    try:
        conn.do_handshake()
        compiled.established(conn)
    except SSL.Error as exc:
        sock.close()
        return None, compiled.handshake_failure(conn, exc)
    except HandshakeError as exc:
        sock.close()
        return None, exc
    return conn, None


def close(conn: SSL.Connection | None) -> None:
    if conn is None:
        return
    with contextlib.suppress(SSL.Error, OSError):
        conn.shutdown()
    conn.close()  # Connection forwards close() to its socket


@dataclass
class Outcome:
    ok: bool
    error: HandshakeError | None = None
    peer_chain: list[bytes] = field(default_factory=list)
    reused: bool = False
    warnings: list[str] = field(default_factory=list)


@dataclass
class GtlsServer:
    port: int
    outcomes: list[Outcome]


@contextlib.contextmanager
def gtls_server(compiled: CompiledContext, *, max_connections: int = 20, deadline: float = 30.0,
                close_after_handshake: bool = False) -> Iterator[GtlsServer]:
    """A thread accepting connections on a gtls server context: handshake, read until the peer closes (or not, with
    ``close_after_handshake``), close."""
    listener = socket.create_server((LOCALHOST, 0))
    listener.settimeout(0.2)
    outcomes: list[Outcome] = []
    stop = threading.Event()

    def serve() -> None:
        end = time.monotonic() + deadline
        served = 0
        while not stop.is_set() and time.monotonic() < end and served < max_connections:
            try:
                sock, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            served += 1
            _bound(sock, 3.0)
            conn = compiled.new_connection(sock)
            try:
                conn.do_handshake()
                warnings = compiled.established(conn)
                chain = conn.get_peer_cert_chain(as_cryptography=True) or []
                outcome = Outcome(True, peer_chain=[c.fingerprint(_sha256()) for c in chain], warnings=warnings)
                outcome.reused = _reused(conn)
                outcomes.append(outcome)
                with contextlib.suppress(SSL.Error, OSError):
                    for _ in range(0 if close_after_handshake else 100):  # bounded: until the peer closes
                        if not conn.recv(4096):
                            break
            except SSL.Error as exc:
                outcomes.append(Outcome(False, compiled.handshake_failure(conn, exc)))
            finally:
                with contextlib.suppress(SSL.Error, OSError):
                    conn.shutdown()
                sock.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield GtlsServer(listener.getsockname()[1], outcomes)
    finally:
        stop.set()
        thread.join(10)
        listener.close()


def _sha256() -> object:
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


def _reused(conn: SSL.Connection) -> bool:
    from gtls import _binding  # pyOpenSSL has no public session_reused

    return _binding.session_reused(conn)


# --- the gtls command --------------------------------------------------------------------------------------------


#: Where a command that falls back to the demo PKI by mistake would write it: never the user's data folder.
_STRAY_DATA_DIR = Path(tempfile.gettempdir()) / "gtls-cli-tests-data"


def gtls_env(data_dir: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["GTLS_DATA_DIR"] = str(data_dir if data_dir is not None else _STRAY_DATA_DIR)
    return env


def run_gtls(*args: str, env: dict[str, str] | None = None, timeout: float = STEP_TIMEOUT,
             cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real command to completion (``subprocess.run`` kills it when the timeout expires)."""
    return subprocess.run([sys.executable, "-m", "gtls", *args], capture_output=True, text=True, timeout=timeout,
                          env=env or gtls_env(), cwd=cwd or REPO, stdin=subprocess.DEVNULL)


def gtls_serve(*args: str, env: dict[str, str] | None = None) -> contextlib.AbstractContextManager[Running]:
    """``gtls serve ARGS`` until it prints ``listening on HOST:PORT``; killed on exit."""
    return _server_process([sys.executable, "-m", "gtls", "serve", *args], "listening on ", env=env or gtls_env(),
                           cwd=REPO)


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The error line of a failed command: its one stderr line that is not a warning, which comes last (warnings
    gathered on the way are printed before it: they often name its cause)."""
    return last_error_line(result.stderr.splitlines())


def last_error_line(lines: list[str]) -> str:
    lines = [line for line in lines if line.strip()]
    assert lines and all(line.startswith("gtls: warning: ") for line in lines[:-1]), \
        f"expected warnings then one error line, got {lines!r}"
    return lines[-1]


async def echo_line(stream: TLSStream) -> None:
    """A gtls server handler: read up to a newline, echo it back, return (the listener closes the stream)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = await stream.receive_some()
        if not chunk:
            return
        data += chunk
    await stream.send_all(data)
