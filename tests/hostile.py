"""Hostile TLS clients for tests (no tests here): hand-built bytes on raw sockets, and a pyOpenSSL memory-BIO client
whose every byte on the wire the test controls. All blocking, meant for threads; every socket has a timeout and
every loop a bound. 127.0.0.1 only.

* hand-built records: ``sslv2_client_hello``, ``legacy_client_hello`` (TLS 1.0/1.1), ``oversized_record``,
  ``truncated_record``, ``http_request``, ``random_bytes``;
* sockets: ``dial``, ``reset`` (RST via SO_LINGER 0), ``send_slowly`` (one byte per write);
* ``MemoryClient``: a real TLS client (pyOpenSSL, memory BIOs) driven over a raw socket, for ClientHellos written one
  byte at a time, renegotiation, corrupted or garbage records after the handshake; ``MemoryServer``, its server
  counterpart for records no server API sends unasked;
* ``correct_echo``: the well-behaved client that must keep succeeding meanwhile;
* ``find_line``: the log line of one peer in a shared server's output (``LineReader``), whatever came before it;
* ``library_server``: ``serve_tls_over_tcp`` in its own thread and trio loop (shared by many sync tests), recording
  its ``on_handshake`` events and its ``gtls.server`` log records.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import random
import socket
import ssl
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from OpenSSL import SSL

from gtls.options import TLSOptions
from gtls.server import HandshakeEvent, serve_tls_over_tcp
from gtls.stream import TLSStream
from tests.peers import LOCALHOST, LineReader

#: Bound on any single socket operation of a hostile client.
IO_TIMEOUT = 5.0
#: Largest record length a TLS 1.2 peer may announce (2^14 + 2048 for ciphertext); anything above is oversized.
MAX_RECORD = 2**14 + 2048

_ALERT = 0x15
_HANDSHAKE = 0x16
_APPLICATION_DATA = 0x17


# --- hand-built bytes ----------------------------------------------------------------------------------------------


def record(content_type: int, body: bytes, version: int = 0x0301) -> bytes:
    """One TLS record: type, legacy version, 16-bit length, body."""
    return struct.pack("!BHH", content_type, version, len(body)) + body


def legacy_client_hello(version: int) -> bytes:
    """A ClientHello offering only ``version`` (0x0301 TLS 1.0, 0x0302 TLS 1.1): no supported_versions extension,
    CBC suites of that era, the P-256 group. What an old client sends."""
    suites = [0xC009, 0xC013, 0xC00A, 0xC014, 0x002F, 0x0035]
    extensions = (
        struct.pack("!HHHH", 0x000A, 4, 2, 0x0017)  # supported_groups: secp256r1
        + struct.pack("!HHBB", 0x000B, 2, 1, 0)  # ec_point_formats: uncompressed
    )
    body = (
        struct.pack("!H", version)
        + random.Random(version).randbytes(32)
        + b"\x00"  # no session id
        + struct.pack("!H", 2 * len(suites))
        + b"".join(struct.pack("!H", suite) for suite in suites)
        + b"\x01\x00"  # compression: null only
        + struct.pack("!H", len(extensions))
        + extensions
    )
    message = struct.pack("!B", 1) + len(body).to_bytes(3, "big") + body
    return record(_HANDSHAKE, message, version)


def sslv2_client_hello() -> bytes:
    """An SSLv2-compatible ClientHello (the old two-byte header with the top bit set) from a TLS 1.0 client."""
    specs = [0x00002F, 0x000035, 0x00000A, 0x010080, 0x0700C0]  # TLS suites and SSLv2 kinds, 3 bytes each
    challenge = random.Random(2).randbytes(16)
    body = (
        struct.pack("!BHHHH", 1, 0x0301, 3 * len(specs), 0, len(challenge))
        + b"".join(spec.to_bytes(3, "big") for spec in specs)
        + challenge
    )
    return struct.pack("!H", 0x8000 | len(body)) + body


def oversized_record(content_type: int = _HANDSHAKE) -> bytes:
    """A record header announcing more than any TLS peer may send, and the first bytes of its body."""
    return struct.pack("!BHH", content_type, 0x0303, MAX_RECORD + 1) + b"\x01" * 64


def truncated_record() -> bytes:
    """A handshake record header announcing 512 bytes, followed by 20 of them (the sender then closes)."""
    return struct.pack("!BHH", _HANDSHAKE, 0x0301, 512) + b"\x01\x00\x01\xfc" + b"\x03\x03" + bytes(14)


def http_request() -> bytes:
    return b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: hostile\r\n\r\n"


def random_bytes(seed: int, size: int = 512) -> bytes:
    """Reproducible noise (a fixed seed, so a failure can be replayed)."""
    return random.Random(seed).randbytes(size)


# --- sockets -------------------------------------------------------------------------------------------------------


def dial(port: int, *, timeout: float = IO_TIMEOUT) -> socket.socket:
    sock = socket.create_connection((LOCALHOST, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def local_port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def reset(sock: socket.socket) -> None:
    """Close with a TCP RST instead of a FIN (SO_LINGER on, zero seconds)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def send_slowly(sock: socket.socket, data: bytes, *, pause: float = 0.0) -> None:
    """Write ``data`` one byte per ``send`` (TCP_NODELAY on, so each byte is its own segment)."""
    for index in range(len(data)):
        sock.sendall(data[index : index + 1])
        if pause:
            time.sleep(pause)


def read_until_closed(sock: socket.socket, *, limit: int = 1 << 20) -> bytes:
    """Everything the peer sends until it closes (EOF or reset), at most ``limit`` bytes."""
    received = b""
    while len(received) < limit:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        received += chunk
    return received


# --- a TLS client with every wire byte under the test's control ----------------------------------------------------


class _MemoryPeer:
    """What both hand-driven pyOpenSSL peers share: their traffic secrets (for records protected by hand) and the
    output OpenSSL wrote into memory."""

    conn: SSL.Connection
    secrets: dict[str, bytes]
    records_sent: int

    def flush(self) -> None:
        raise NotImplementedError

    def send(self, data: bytes) -> None:
        """One application record (``records_sent`` counts them, for records protected by hand after them)."""
        assert len(data) <= 16384, "one record per send: records_sent counts them"
        self.conn.send(data)
        self.records_sent += 1
        self.flush()

    def _keylog(self, _conn: SSL.Connection, line: bytes) -> None:
        label, _random, secret = line.decode("ascii").split()
        self.secrets[label] = bytes.fromhex(secret)

    def pending_output(self) -> bytes:
        chunks = []
        for _ in range(64):
            try:
                chunks.append(self.conn.bio_read(65536))
            except SSL.WantReadError:
                break
        return b"".join(chunks)


class MemoryClient(_MemoryPeer):
    """A pyOpenSSL client over memory BIOs, moving bytes over ``sock`` itself. It does not verify the server (the
    tests here are about what the server does with the client's bytes)."""

    def __init__(self, sock: socket.socket, *, max_version: int | None = None) -> None:
        context = SSL.Context(SSL.TLS_METHOD)
        if max_version is not None:
            context.set_max_proto_version(max_version)
        self.secrets: dict[str, bytes] = {}  # TLS 1.3 traffic secrets by keylog label, for hand-made records
        context.set_keylog_callback(self._keylog)
        self.sock = sock
        self.conn = SSL.Connection(context, None)
        self.conn.set_connect_state()
        self.conn.set_tlsext_host_name(b"localhost")
        self.records_sent = 0  # application records written since the handshake (each send is one record)


    def flush(self, *, one_byte_writes: bool = False) -> None:
        data = self.pending_output()
        if one_byte_writes:
            send_slowly(self.sock, data)
        elif data:
            self.sock.sendall(data)

    def pull(self) -> None:
        """Feed the next bytes from the server to OpenSSL; EOFError when the server closed."""
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("the server closed the connection")
        self.conn.bio_write(data)

    def handshake(self, *, one_byte_writes: bool = False) -> None:
        for _ in range(50):
            try:
                self.conn.do_handshake()
            except SSL.WantReadError:
                self.flush(one_byte_writes=one_byte_writes)
                self.pull()
                continue
            self.flush(one_byte_writes=one_byte_writes)
            return
        raise AssertionError("the handshake did not finish within 50 round trips")

    def send_tls13_alerts(self, *descriptions: int, level: int = 1) -> None:
        """Send alerts (TLS 1.3 only; warning level unless ``level=2``) that OpenSSL's client API cannot send, such
        as user_canceled (90) before close_notify (0), as Java does: records protected by hand with the client's
        traffic keys (RFC 8446 §7.3, §5.2), numbered after the records this client sent."""
        alerts = [(_ALERT, bytes([level, description])) for description in descriptions]
        self.sock.sendall(tls13_records(self.conn, self.secrets["CLIENT_TRAFFIC_SECRET_0"], self.records_sent,
                                        alerts))
        self.records_sent += len(alerts)

    def send_tls12_alert(self, level: int, description: int) -> None:
        """Send an alert (TLS 1.2, AES-GCM suites) that OpenSSL's client API cannot send, such as an unprompted
        no_renegotiation warning or a close_notify at fatal level: a record protected by hand with the client's
        write key (RFC 5246 §6.3, RFC 5288), numbered after its Finished and the records this client sent."""
        # record 0 under these keys was the Finished
        self.sock.sendall(tls12_records(self.conn, "client", 1 + self.records_sent,
                                        [(_ALERT, bytes([level, description]))]))
        self.records_sent += 1

    def receive(self) -> bytes:
        for _ in range(50):
            try:
                data: bytes = self.conn.recv(65536)
                return data
            except SSL.WantReadError:
                self.flush()
                self.pull()
        raise AssertionError("no application data within 50 reads")

    def echo(self, data: bytes) -> bytes:
        self.send(data)
        received = b""
        for _ in range(50):
            if len(received) >= len(data):
                break
            received += self.receive()
        return received

    def hello(self) -> bytes:
        """The ClientHello this client sends, without sending it."""
        try:
            self.conn.do_handshake()
        except SSL.WantReadError:
            pass
        return self.pending_output()

    def receive_corrupted(self) -> SSL.Error:
        """Read the next record with one bit of it flipped: OpenSSL rejects it and answers the server with a
        fatal ``bad_record_mac`` alert (which this sends). Returns the client's own error."""
        data = bytearray(self.sock.recv(65536))
        if not data:
            raise EOFError("the server closed the connection")
        data[-1] ^= 0x01
        self.conn.bio_write(bytes(data))
        try:
            self.conn.recv(65536)
        except SSL.Error as exc:
            self.flush()
            return exc
        raise AssertionError("OpenSSL accepted a corrupted record")

    def renegotiate(self) -> SSL.Error | None:
        """Start a TLS 1.2 renegotiation and drive it until OpenSSL gives up (its error) or finishes (None)."""
        if not self.conn.renegotiate():
            raise AssertionError("OpenSSL refused to start a renegotiation (TLS 1.3 or renegotiation disabled)")
        for _ in range(20):
            try:
                self.conn.do_handshake()
            except SSL.WantReadError:
                self.flush()
                try:
                    self.pull()
                except EOFError:
                    return None
                continue
            except SSL.Error as exc:
                self.flush()  # the fatal alert OpenSSL sends when it gives up
                return exc
            self.flush()
            if not self.conn.renegotiate_pending():
                return None
        raise AssertionError("the renegotiation neither finished nor failed")


class MemoryServer(_MemoryPeer):
    """A pyOpenSSL TLS 1.3 (or, with ``tls12``, TLS 1.2) server over memory BIOs, moving bytes over ``sock`` itself,
    that can send after its handshake what no server API sends unasked (an unsolicited post-handshake
    CertificateRequest, a stream of session tickets or HelloRequests)."""

    def __init__(self, sock: socket.socket, cert: Path, key: Path, *, tls12: bool = False) -> None:
        context = SSL.Context(SSL.TLS_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION if tls12 else SSL.TLS1_3_VERSION)
        if tls12:
            context.set_max_proto_version(SSL.TLS1_2_VERSION)
        self.tls12 = tls12
        context.use_certificate_chain_file(str(cert))
        context.use_privatekey_file(str(key))
        self.secrets: dict[str, bytes] = {}
        context.set_keylog_callback(self._keylog)
        self.sock = sock
        self.conn = SSL.Connection(context, None)
        self.conn.set_accept_state()
        self.records_sent = 0  # records under the server's application traffic keys


    def handshake(self) -> None:
        for _ in range(50):
            try:
                self.conn.do_handshake()
            except SSL.WantReadError:
                self.sock.sendall(self.pending_output())
                data = self.sock.recv(65536)
                if not data:
                    raise EOFError("the client closed the connection") from None
                self.conn.bio_write(data)
                continue
            # What the last step wrote (its session tickets) is the first records under the new keys: count them.
            # In TLS 1.2 it is the ChangeCipherSpec and the Finished, record 0 under the new keys.
            last = self.pending_output()
            self.records_sent = 1 if self.tls12 else _count_records(last)
            self.sock.sendall(last)
            return
        raise AssertionError("the handshake did not finish within 50 round trips")

    def flush(self) -> None:
        self.sock.sendall(self.pending_output())

    def send_handshake_message(self, message: bytes) -> None:
        """One handshake message in a record protected by hand with the server's traffic keys."""
        self.send_protected([(_HANDSHAKE, message)])

    def send_protected(self, contents: list[tuple[int, bytes]]) -> None:
        """Records of (content type, plaintext) protected by hand with the server's keys, after those it sent."""
        if self.tls12:
            wire = tls12_records(self.conn, "server", self.records_sent, contents)
        else:
            wire = tls13_records(self.conn, self.secrets["SERVER_TRAFFIC_SECRET_0"], self.records_sent, contents)
        self.sock.sendall(wire)
        self.records_sent += len(contents)

    def read_alert(self) -> str | None:
        """The client's alert as OpenSSL reports it, or None when the connection ends without one (bounded)."""
        for _ in range(50):
            try:
                self.conn.recv(65536)
                continue
            except SSL.WantReadError:
                pass
            except SSL.Error as exc:
                return str(exc)
            data = self.sock.recv(65536)
            if not data:
                return None
            self.conn.bio_write(data)
        return None


# --- hostile servers (for ``tests.peers.raw_server``) -----------------------------------------------------------------

#: How long, and how many bytes, a flooding server goes on for at most (it stops earlier when the client leaves).
FLOOD_SECONDS = 5.0
FLOOD_BYTES = 256 << 20


def hello_request() -> bytes:
    """A HelloRequest (RFC 5246 §7.4.1.1): a client skips it during its handshake and refuses it after one."""
    return bytes([0]) + (0).to_bytes(3, "big")


def session_ticket(nonce: int = 0) -> bytes:
    """A TLS 1.3 NewSessionTicket (RFC 8446 §4.6.1): lifetime, age_add, nonce, ticket, no extensions."""
    body = struct.pack(">IIB", 7200, nonce, 1) + bytes([nonce & 0xFF]) + struct.pack(">H", 32) + bytes(32) + b"\0\0"
    return bytes([4]) + len(body).to_bytes(3, "big") + body


def answer_hello_with(data: bytes) -> Callable[[socket.socket], None]:
    """A server that reads the ClientHello, answers with ``data`` and closes (after reading what comes back)."""

    def behaviour(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        read_until_closed(conn)

    return behaviour


def server_hello(client_hello: bytes, *, supported_version: int) -> bytes:
    """A ServerHello record answering ``client_hello`` (its session id echoed, TLS_AES_128_GCM_SHA256, an X25519 key
    share) whose supported_versions extension selects ``supported_version``."""
    session = client_hello[44 : 44 + client_hello[43]]  # record and handshake headers, version, random, length
    extensions = (struct.pack(">HHH", 43, 2, supported_version)
                  + struct.pack(">HHHH", 51, 36, 0x001D, 32) + bytes(range(32)))
    body = (struct.pack(">H", 0x0303) + random.Random(0).randbytes(32) + bytes([len(session)]) + session
            + struct.pack(">HB", 0x1301, 0) + struct.pack(">H", len(extensions)) + extensions)
    return record(_HANDSHAKE, bytes([2]) + len(body).to_bytes(3, "big") + body, 0x0303)


def answer_with_server_hello(supported_version: int, *, then_reset: bool = False) -> Callable[[socket.socket], None]:
    """A server answering the ClientHello with ``server_hello``, then closing (after reading what comes back), or
    with ``then_reset`` resetting the connection at once (the client's alert then meets the reset)."""

    def behaviour(conn: socket.socket) -> None:
        conn.sendall(server_hello(conn.recv(65536), supported_version=supported_version))
        if then_reset:
            reset(conn)  # behind the data: Linux still delivers the ServerHello, and then fails writes
            return
        conn.shutdown(socket.SHUT_WR)
        read_until_closed(conn)

    return behaviour


def _flood(sock: socket.socket, chunk: Callable[[], bytes], seconds: float, limit: int) -> None:
    """Write ``chunk()`` until the peer leaves, ``seconds`` pass or ``limit`` bytes went; then reset."""
    sock.settimeout(1.0)
    deadline = time.monotonic() + seconds
    sent = 0
    with contextlib.suppress(OSError):
        while sent < limit and time.monotonic() < deadline:
            data = chunk()
            sock.sendall(data)
            sent += len(data)
    with contextlib.suppress(OSError):
        reset(sock)


def flood_after_hello(unit: bytes, *, seconds: float = FLOOD_SECONDS, limit: int = FLOOD_BYTES
                      ) -> Callable[[socket.socket], None]:
    """A server that reads the ClientHello, then answers with ``unit`` (records) over and over."""
    chunk = unit * max(1, 16384 // len(unit))

    def behaviour(conn: socket.socket) -> None:
        conn.recv(65536)
        _flood(conn, lambda: chunk, seconds, limit)

    return behaviour


def flood_after_handshake(cert: Path, key: Path, message: bytes, *, tls12: bool = False,
                          seconds: float = FLOOD_SECONDS, limit: int = FLOOD_BYTES) -> Callable[[socket.socket], None]:
    """A server that completes a real handshake (``MemoryServer``), then sends the handshake ``message`` over and
    over, in records protected with its keys: messages that carry no application data."""

    def behaviour(conn: socket.socket) -> None:
        server = MemoryServer(conn, cert, key, tls12=tls12)
        server.handshake()
        batch = [(_HANDSHAKE, message * max(1, 4096 // len(message)))] * 16

        def chunk() -> bytes:
            first = server.records_sent
            server.records_sent += len(batch)
            if tls12:
                return tls12_records(server.conn, "server", first, batch)
            return tls13_records(server.conn, server.secrets["SERVER_TRAFFIC_SECRET_0"], first, batch)

        _flood(conn, chunk, seconds, limit)

    return behaviour


def certificate_request() -> bytes:
    """A TLS 1.3 post-handshake CertificateRequest (RFC 8446 §4.3.2): a context and signature_algorithms."""
    algorithms = struct.pack(">HHH", 4, 0x0403, 0x0804)  # ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256
    extensions = struct.pack(">HH", 13, len(algorithms)) + algorithms
    body = b"\x01\x01" + struct.pack(">H", len(extensions)) + extensions
    return bytes([13]) + len(body).to_bytes(3, "big") + body


def tls13_records(conn: SSL.Connection, secret: bytes, first: int, contents: list[tuple[int, bytes]]) -> bytes:
    """TLS 1.3 records (RFC 8446 §5.2, §7.3) of (content type, plaintext) under ``secret``'s keys, numbered from
    ``first`` (AES-GCM suites only)."""
    cipher = conn.get_cipher_name() or ""
    algorithm: hashes.HashAlgorithm = hashes.SHA384() if cipher.endswith("SHA384") else hashes.SHA256()
    assert cipher.startswith("TLS_AES_"), f"AES-GCM suites only, not {cipher}"
    key = _expand_label(algorithm, secret, b"key", 32 if "256" in cipher else 16)
    iv = _expand_label(algorithm, secret, b"iv", 12)
    wire = b""
    for number, (content_type, plaintext) in enumerate(contents, start=first):
        inner = plaintext + bytes([content_type])
        header = bytes([_APPLICATION_DATA, 3, 3]) + struct.pack(">H", len(inner) + 16)
        nonce = bytes(a ^ b for a, b in zip(iv, number.to_bytes(12, "big"), strict=True))
        wire += header + AESGCM(key).encrypt(nonce, inner, header)
    return wire


def tls12_records(conn: SSL.Connection, sender: str, first: int, contents: list[tuple[int, bytes]]) -> bytes:
    """TLS 1.2 records (RFC 5246 §6.3, RFC 5288) of (content type, plaintext) under the write keys of ``sender``
    (``"client"`` or ``"server"``), numbered from ``first`` (AES-GCM suites only)."""
    cipher = conn.get_cipher_name() or ""
    assert "-GCM-" in cipher, f"AES-GCM suites only, not {cipher}"
    digest = hashlib.sha384 if cipher.endswith("SHA384") else hashlib.sha256
    size = 32 if "AES256" in cipher else 16
    keys = _prf12(digest, conn.master_key(), b"key expansion", conn.server_random() + conn.client_random(),
                  2 * size + 8)
    side = 0 if sender == "client" else 1  # key block: client key, server key, client IV, server IV
    key, salt = keys[side * size : (side + 1) * size], keys[2 * size + 4 * side : 2 * size + 4 * side + 4]
    wire = b""
    for index, (content_type, plaintext) in enumerate(contents):
        number = struct.pack(">Q", first + index)
        aad = number + bytes([content_type, 3, 3]) + struct.pack(">H", len(plaintext))
        wire += record(content_type, number + AESGCM(key).encrypt(salt + number, plaintext, aad), 0x0303)
    return wire


def _prf12(digest: Callable[[], Any], secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """The TLS 1.2 PRF (RFC 5246 §5): P_hash over label + seed."""
    seed = label + seed
    block, out = seed, b""
    while len(out) < length:
        block = hmac.new(secret, block, digest).digest()
        out += hmac.new(secret, block + seed, digest).digest()
    return out[:length]


def _count_records(data: bytes) -> int:
    count, offset = 0, 0
    while offset + 5 <= len(data):
        offset += 5 + struct.unpack(">H", data[offset + 3 : offset + 5])[0]
        count += 1
    return count


def _expand_label(algorithm: hashes.HashAlgorithm, secret: bytes, label: bytes, length: int) -> bytes:
    """HKDF-Expand-Label of RFC 8446 §7.1, with an empty context."""
    full = b"tls13 " + label
    info = struct.pack(">H", length) + bytes([len(full)]) + full + b"\x00"
    return HKDFExpand(algorithm, length, info).derive(secret)


def client_hello(*, max_version: int | None = None) -> bytes:
    """A valid ClientHello from pyOpenSSL (not sent anywhere)."""
    with socket.socket() as unused:
        return MemoryClient(unused, max_version=max_version).hello()


def correct_echo(port: int, ca: Path, message: bytes = b"ping\n") -> bytes:
    """A careful client (Python's ssl, verifying ``localhost``): handshake, send ``message``, read the echo, close
    with close_notify. Returns what came back."""
    context = ssl.create_default_context(cafile=str(ca))
    with dial(port) as raw, context.wrap_socket(raw, server_hostname="localhost") as conn:
        conn.sendall(message)
        received = b""
        for _ in range(100):
            if len(received) >= len(message):
                break
            chunk = conn.recv(65536)
            if not chunk:
                break
            received += chunk
        conn.unwrap()
        return received


# --- shared server logs --------------------------------------------------------------------------------------------


def find_line(reader: LineReader, predicate: Callable[[str], bool], timeout: float = 10.0) -> str:
    """The first line, already read or still to come, for which ``predicate`` holds (several tests share one
    server, so lines of other peers may have been read past already)."""
    for line in list(reader.lines):
        if predicate(line):
            return line
    return reader.wait_for(predicate, timeout)


def peer_line(reader: LineReader, port: int, marker: str, timeout: float = 10.0) -> str:
    """``connection from 127.0.0.1:PORT: MARKER…`` of the gtls serve log."""
    prefix = f"connection from {LOCALHOST}:{port}: {marker}"
    return find_line(reader, lambda line: line.startswith(prefix), timeout)


# --- the library listener in a thread ------------------------------------------------------------------------------


@dataclass
class LibraryServer:
    """What a ``serve_tls_over_tcp`` running in a thread reported. Lists are appended by the server thread."""

    port: int = 0
    events: list[HandshakeEvent] = field(default_factory=list)
    records: list[logging.LogRecord] = field(default_factory=list)
    failure: list[BaseException] = field(default_factory=list)

    def wait_for(self, find: Callable[[], object], timeout: float = 10.0) -> object:
        """Poll ``find()`` until it returns something truthy (bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = find()
            if found:
                return found
            if self.failure:
                raise AssertionError(f"the server stopped: {self.failure!r}")
            time.sleep(0.02)
        raise AssertionError(f"timed out; events {self.events!r}; log {[r.getMessage() for r in self.records]!r}")

    def event(self, port: int, timeout: float = 10.0) -> HandshakeEvent:
        peer = f"{LOCALHOST}:{port}"
        found = self.wait_for(lambda: next((e for e in list(self.events) if e.peer == peer), None), timeout)
        assert isinstance(found, HandshakeEvent)
        return found

    def log_line(self, text: str, timeout: float = 10.0) -> str:
        """The first ``gtls.server`` message containing ``text``."""
        found = self.wait_for(
            lambda: next((m for m in (r.getMessage() for r in list(self.records)) if text in m), None), timeout)
        return str(found)


class _Collect(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record)


@contextlib.contextmanager
def library_server(
    handler: Callable[[TLSStream], Awaitable[object]], settings: TLSOptions, *, handshake_timeout: float
) -> Iterator[LibraryServer]:
    """``serve_tls_over_tcp(handler, 0, settings)`` on 127.0.0.1 in a thread with its own trio loop; stopped (and
    the thread joined) on exit. An exception escaping the server is kept in ``.failure``."""
    state = LibraryServer()
    logger = logging.getLogger("gtls.server")
    collect = _Collect(state.records)
    old_level = logger.level
    logger.addHandler(collect)
    logger.setLevel(logging.INFO)
    ready = threading.Event()
    token: list[trio.lowlevel.TrioToken] = []
    stop: list[trio.CancelScope] = []

    async def main() -> None:
        with trio.CancelScope() as scope:
            stop.append(scope)
            token.append(trio.lowlevel.current_trio_token())
            async with trio.open_nursery() as nursery:
                listeners = await nursery.start(lambda task_status: serve_tls_over_tcp(
                    handler, 0, settings, host=LOCALHOST, handshake_timeout=handshake_timeout,
                    on_handshake=state.events.append, task_status=task_status))
                state.port = int(listeners[0].socket.getsockname()[1])
                ready.set()

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # kept for the test to see; the thread must not die silently
            state.failure.append(exc)
        finally:
            ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        if not ready.wait(20) or state.failure:
            raise AssertionError(f"the library server did not start: {state.failure!r}")
        yield state
    finally:
        if token and thread.is_alive():
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(stop[0].cancel, trio_token=token[0])
        thread.join(10)
        logger.removeHandler(collect)
        logger.setLevel(old_level)
