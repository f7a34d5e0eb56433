"""The load client: one process, standard library only, run by the benchmark as separate processes.

``python -m gtls.bench.loadgen MODE …`` prints one JSON object on stdout.

* ``handshake``: sequential handshakes until ``--duration`` ends (or ``--max`` is reached), with per-handshake
  latency (TCP connect to handshake done), resumption when asked, and this process's own CPU time;
* ``bulk``: one stream sending ``--total`` bytes in ``--write-size`` writes while reading the echo back; with
  ``--http`` the bytes go as HTTP/1.0 POST bodies to an echo location (nginx), one request per connection;
* ``idle``: open ``--count`` connections, finish their handshakes, print ``ready`` and hold them until stdin closes.

TLS runs on ``ssl.SSLObject`` over memory BIOs so the client decides every write: after a handshake it sends
close_notify and closes without waiting, the same for every server.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import select
import socket
import ssl
import sys
import time
from typing import Any

SERVER_NAME = "localhost"
RECV_SIZE = 262144
PLAIN_READ = 65536  # one TLS record is at most 16 KiB of plaintext
PING = b"GET / HTTP/1.0\r\n\r\n"  # answered by every peer: echoed, reversed (s_server -rev) or an HTTP response


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def client_context(args: argparse.Namespace) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(args.ca)
    version = ssl.TLSVersion.TLSv1_3 if args.version == "1.3" else ssl.TLSVersion.TLSv1_2
    context.minimum_version = context.maximum_version = version
    if args.cert:
        context.load_cert_chain(args.cert, args.key)
    return context


class Connection:
    """A blocking TCP socket carrying an ``SSLObject``."""

    def __init__(self, context: ssl.SSLContext, port: int, session: ssl.SSLSession | None, timeout: float) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname=SERVER_NAME, session=session)

    def flush(self) -> None:
        pending = self.outgoing.read()
        if pending:
            self.sock.sendall(pending)

    def fill(self) -> None:
        data = self.sock.recv(RECV_SIZE)
        if not data:
            raise ConnectionError("server closed the connection")
        self.incoming.write(data)

    def handshake(self) -> None:
        for _ in range(1000):  # a handshake takes a few flights; bound the loop anyway
            try:
                self.tls.do_handshake()
                self.flush()
                return
            except ssl.SSLWantReadError:
                self.flush()
                self.fill()
        raise ConnectionError("handshake did not finish")

    def ping(self) -> None:
        """Send a short request and wait for any answer; in TLS 1.3 this also reads the session tickets.

        nginx finishes the handshake even when the client certificate fails verification and answers the request
        with 400 instead, so a 400 counts as a rejection.
        """
        self.tls.write(PING)
        self.flush()
        for _ in range(1000):
            try:
                answer = self.tls.read(RECV_SIZE)
                if answer.startswith(b"HTTP/1.1 400"):
                    raise ConnectionError(f"server rejected the client: {answer.splitlines()[0]!r}")
                if answer:
                    return
                raise ConnectionError("server closed before answering")
            except ssl.SSLWantReadError:
                self.fill()
        raise ConnectionError("no answer")

    def close(self) -> None:
        try:
            self.tls.unwrap()
        except (ssl.SSLError, ValueError):
            pass  # unwrap wants the peer's close_notify, which a closing client does not wait for
        try:
            self.flush()
        except OSError:
            pass
        self.sock.close()


def run_handshakes(args: argparse.Namespace) -> dict[str, Any]:
    context = client_context(args)
    session: ssl.SSLSession | None = None
    latencies: list[float] = []
    failures = reused = 0
    errors: dict[str, int] = {}
    if args.check:
        # In TLS 1.3 a client finishes its handshake before the server has checked its certificate: one round trip
        # proves the server accepted this client, so every later handshake is one the server completes as well.
        probe = Connection(context, args.port, None, args.timeout)
        try:
            probe.handshake()
            probe.ping()
        finally:
            probe.close()
    if args.start_at:
        time.sleep(max(0.0, args.start_at - time.time()))
    cpu_start, started = cpu_now(), time.perf_counter()
    deadline = started + args.duration
    while time.perf_counter() < deadline and len(latencies) + failures < args.max:
        begin = time.perf_counter()
        conn: Connection | None = None
        try:
            conn = Connection(context, args.port, session if args.resume else None, args.timeout)
            conn.handshake()
            latencies.append(time.perf_counter() - begin)
            if conn.tls.session_reused:
                reused += 1
            elif args.resume:
                conn.ping()  # fetch a session (a TLS 1.3 ticket arrives after the handshake) for the next ones
                session = conn.tls.session
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            failures += 1
            kind = f"{type(exc).__name__}: {str(exc)[:80]}"
            errors[kind] = errors.get(kind, 0) + 1
        finally:
            if conn is not None:
                conn.close()
    elapsed = time.perf_counter() - started
    return {
        "handshakes": len(latencies),
        "failures": failures,
        "errors": dict(list(errors.items())[:5]),
        "reused": reused,
        "elapsed": elapsed,
        "cpu": cpu_now() - cpu_start,
        "latencies_ms": [round(v * 1000, 4) for v in latencies],
    }


def pump(conn: Connection, payload: bytes, total: int, write_size: int, until_eof: bool, deadline: float) -> int:
    """Write ``payload`` (``total`` bytes) in ``write_size`` writes while reading; return the bytes read.

    Reading stops after ``total`` bytes, or at EOF with ``until_eof``. An echo peer has at most 1 MiB in flight so
    neither side's buffers grow without bound; an HTTP peer answers only after the whole body, so it gets it all.
    """
    window = total if until_eof else 1 << 20
    conn.sock.setblocking(False)
    view = memoryview(payload)
    # Reuse one receive buffer and read plaintext a record at a time: allocating 256 KiB per call would go through
    # mmap and make the client, not the server, the bottleneck.
    buffer = bytearray(RECV_SIZE)
    buffer_view = memoryview(buffer)
    written = received = 0
    out = bytearray()
    eof = False
    while (received < total or until_eof) and not eof:
        if time.perf_counter() > deadline:
            raise TimeoutError("bulk transfer did not finish in time")
        while written < total and written - received < window and len(out) < 4 * write_size:
            chunk = min(write_size, total - written)
            conn.tls.write(view[written : written + chunk])
            written += chunk
            out += conn.outgoing.read()
        readable, writable, _ = select.select([conn.sock], [conn.sock] if out else [], [], 1.0)
        if writable:
            try:
                del out[: conn.sock.send(out)]  # deleting a bytearray's head is O(1) in CPython
            except BlockingIOError:
                pass
        if readable:
            try:
                count = conn.sock.recv_into(buffer)
            except BlockingIOError:
                continue
            if not count:
                break
            conn.incoming.write(buffer_view[:count])
            while True:
                try:
                    plain = conn.tls.read(PLAIN_READ)
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    eof = True
                    break
                if not plain:
                    eof = True
                    break
                received += len(plain)
    conn.sock.setblocking(True)
    return received


def run_bulk(args: argparse.Namespace) -> dict[str, Any]:
    context = client_context(args)
    write_size = args.write_size
    body = os.urandom(min(args.total, 8 << 20))
    cpu_start, started = cpu_now(), time.perf_counter()
    deadline = started + args.timeout
    moved = 0
    if args.http:
        # nginx answers after the whole body: one POST per connection, bodies of --http-body bytes.
        while moved < args.total:
            size = min(args.http_body, args.total - moved)
            request = b"POST / HTTP/1.0\r\nContent-Length: %d\r\n\r\n" % size + body[:size]
            conn = Connection(context, args.port, None, args.timeout)
            try:
                conn.handshake()
                received = pump(conn, request, len(request), write_size, True, deadline)
            finally:
                conn.close()
            if received < size:
                raise ConnectionError(f"HTTP echo returned {received} bytes for a {size}-byte body")
            moved += size
    else:
        conn = Connection(context, args.port, None, args.timeout)
        try:
            conn.handshake()
            payload = (body * (args.total // len(body) + 1))[: args.total]
            moved = pump(conn, payload, args.total, write_size, False, deadline)
        finally:
            conn.close()
    return {"bytes": moved, "elapsed": time.perf_counter() - started, "cpu": cpu_now() - cpu_start}


def run_idle(args: argparse.Namespace) -> dict[str, Any]:
    context = client_context(args)
    held: list[Connection] = []
    try:
        for _ in range(args.count):
            conn = Connection(context, args.port, None, args.timeout)
            held.append(conn)
            conn.handshake()
        print("ready", flush=True)
        sys.stdin.readline()  # the benchmark reads the server's memory, then closes our stdin
    finally:
        for conn in held:
            conn.close()
    return {"connections": len(held)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gtls.bench.loadgen")
    parser.add_argument("mode", choices=("handshake", "bulk", "idle"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--cert", help="client chain file, for mutual TLS")
    parser.add_argument("--key")
    parser.add_argument("--version", choices=("1.2", "1.3"), default="1.3")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--check", action="store_true", help="first prove the server answers after a handshake")
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--max", type=int, default=100_000)
    parser.add_argument("--start-at", type=float, default=0.0, help="wall-clock time to start at (time.time())")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--write-size", type=int, default=16384)
    parser.add_argument("--total", type=int, default=32 << 20)
    parser.add_argument("--http", action="store_true")
    parser.add_argument("--http-body", type=int, default=8 << 20)
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args(argv)
    runners = {"handshake": run_handshakes, "bulk": run_bulk, "idle": run_idle}
    print(json.dumps(runners[args.mode](args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
