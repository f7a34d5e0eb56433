"""Real TLS peers for the PKI/context tests: ``openssl s_server`` / ``s_client`` processes and gtls contexts driven
with pyOpenSSL over plain blocking sockets (SO_RCVTIMEO/SO_SNDTIMEO bound every wait). 127.0.0.1 only."""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from OpenSSL import SSL

from gtls.context import CompiledContext
from gtls.errors import HandshakeError

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
IO_TIMEOUT = 5.0


def _bound(sock: socket.socket, seconds: float = IO_TIMEOUT) -> None:
    """Blocking socket whose reads and writes give up after ``seconds`` (OpenSSL's socket BIO honours these)."""
    sock.settimeout(None)
    timeval = struct.pack("ll", int(seconds), int((seconds % 1) * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


@dataclass
class OpenSSLServer:
    process: subprocess.Popen[bytes]
    port: int


@contextlib.contextmanager
def openssl_server(*args: str | Path, ready_timeout: float = 10.0) -> Iterator[OpenSSLServer]:
    """``openssl s_server -accept 127.0.0.1:0 ARGS`` until it prints its port; killed on exit."""
    process = subprocess.Popen(
        [OPENSSL, "s_server", "-accept", "127.0.0.1:0", *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + ready_timeout
        seen = b""
        port = None
        fd = process.stdout.fileno()
        while port is None and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(fd, 4096)  # unbuffered: select() cannot see data a buffered reader already holds
            if not chunk:
                break
            seen += chunk
            found = re.search(rb"^ACCEPT.*:(\d+)\s*$", seen, re.MULTILINE)
            if found:
                port = int(found.group(1))
        if port is None:
            raise AssertionError(f"openssl s_server did not start: {seen.decode(errors='replace')}")
        yield OpenSSLServer(process, port)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(5)
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()


def client_handshake(
    compiled: CompiledContext, port: int, *, server_hostname: str | None = None
) -> tuple[SSL.Connection | None, HandshakeError | None]:
    """One gtls-context client handshake against 127.0.0.1:port: (connection, None) or (None, error)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
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
    listener = socket.create_server(("127.0.0.1", 0))
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
    from OpenSSL._util import lib  # test-only peek: pyOpenSSL has no public session_reused

    return bool(lib.SSL_session_reused(conn._ssl))


def s_client(port: int, *args: str | Path, timeout: float = 15.0, send: bytes = b""
             ) -> subprocess.CompletedProcess[str]:
    """``openssl s_client`` to 127.0.0.1:port; returns when it exits (stdin EOF ends it after the handshake)."""
    result = subprocess.run(
        [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", *map(str, args)],
        input=send,
        capture_output=True,
        timeout=timeout,
    )
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(errors="replace"),
                                       result.stderr.decode(errors="replace"))
