#!/usr/bin/env python3
"""How low can a Python server's CPU per handshake go on this machine? Minimal servers beside gtls, trio and nginx.

    python benchmarks/floor.py [--rounds 3] [--seconds 4] [--procs 2]

Every server makes full TLS 1.3 ECDSA P-256 handshakes with the same certificate and is loaded by ``openssl s_time
-new`` processes; its CPU (utime + stime) over the load is divided by the handshakes completed, rounds interleaved
as in ``quick_handshake.py``, ratios from the same run:

* ``blocking``: pyOpenSSL, one connection at a time, blocking ``accept``/``do_handshake``/``recv``/``close`` — the
  least Python per handshake that any server could run (it serves nobody else meanwhile);
* ``epoll``: pyOpenSSL on non-blocking sockets under an edge-triggered ``select.epoll`` loop in plain Python, no
  tasks, no objects of its own per connection — the least a server serving many connections at once could run;
* ``gtls``: ``serve_tls_over_tcp`` with an echo handler, as in ``quick_handshake.py``;
* ``trio``: ``trio.serve_ssl_over_tcp`` with Python's ``ssl``, the same handler;
* ``nginx``: one process, an ``http {}`` server (skipped when nginx is not installed).

What it tells: the distance from ``epoll`` to ``gtls`` is what running each connection on trio (its tasks,
scheduler and waits) and gtls's per-connection objects cost; the distance from ``blocking`` to ``epoll`` is what
serving connections concurrently costs at all. The minimal servers verify nothing and handle no failure: they are
floors, not servers.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quick_handshake  # noqa: E402  (PKI, gtls and trio servers, CPU reading)

MINIMAL_SETUP = r"""
import select, socket, sys
from OpenSSL import SSL
cert, key = sys.argv[1:3]
ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
ctx.use_certificate_chain_file(cert)
ctx.use_privatekey_file(key)
ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
"""

BLOCKING_SERVER = MINIMAL_SETUP + r"""
listening = socket.create_server(("127.0.0.1", 0), backlog=512)
print(listening.getsockname()[1], flush=True)
while True:
    sock, _ = listening.accept()
    conn = SSL.Connection(ctx, sock)
    conn.set_accept_state()
    try:
        conn.do_handshake()
        conn.recv(65536)
    except (SSL.Error, OSError):
        pass
    sock.close()
"""

EPOLL_SERVER = MINIMAL_SETUP + r"""
listening = socket.create_server(("127.0.0.1", 0), backlog=512)
listening.setblocking(False)
print(listening.getsockname()[1], flush=True)
poll = select.epoll()
poll.register(listening.fileno(), select.EPOLLIN)
connections = {}  # fd -> [socket, SSL.Connection, handshake done]

def step(fd):
    entry = connections[fd]
    sock, conn, done = entry
    try:
        if not done:
            conn.do_handshake()
            entry[2] = True
        while conn.recv(65536):
            pass
    except SSL.WantReadError:
        return
    except (SSL.Error, OSError):
        pass
    del connections[fd]
    sock.close()

while True:
    for fd, _ in poll.poll(-1, 256):
        if fd != listening.fileno():
            if fd in connections:
                step(fd)
            continue
        while True:
            try:
                sock, _ = listening.accept()
            except BlockingIOError:
                break
            sock.setblocking(False)
            conn = SSL.Connection(ctx, sock)
            conn.set_accept_state()
            connections[sock.fileno()] = [sock, conn, False]
            poll.register(sock.fileno(), select.EPOLLIN | select.EPOLLET)
            step(sock.fileno())
"""

NGINX_CONF = """
worker_processes 1;
daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/nginx.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.3;
        location / {{ return 200 ok; }}
    }}
}}
"""


def server_argv(kind: str, files: tuple[Path, Path, Path], workdir: Path) -> tuple[list[str], int | None]:
    """The command of one server, and its port when fixed in advance (nginx, which prints none)."""
    cert, key, ca = (str(path) for path in files)
    if kind == "blocking":
        return [sys.executable, "-c", BLOCKING_SERVER, cert, key], None
    if kind == "epoll":
        return [sys.executable, "-c", EPOLL_SERVER, cert, key], None
    if kind in ("gtls", "trio"):
        return [sys.executable, "-c", quick_handshake.SERVER_CODE, kind, cert, key, ca], None
    port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=workdir, port=port, cert=cert, key=key))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    return [nginx, "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "nginx.log")], port


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def measure(kind: str, files: tuple[Path, Path, Path], workdir: Path, seconds: int, procs: int) -> float:
    """Server CPU milliseconds per handshake over one load window."""
    argv, port = server_argv(kind, files, workdir)
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        if port is None:
            assert server.stdout is not None
            port = int(server.stdout.readline())
        wait_for_port(port)
        before = quick_handshake.cpu_seconds(server.pid)
        handshakes = quick_handshake.s_time_load(port, seconds, procs)
        used = quick_handshake.cpu_seconds(server.pid) - before
        return used * 1000 / max(handshakes, 1)
    finally:
        server.kill()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--procs", type=int, default=2)
    args = parser.parse_args()
    kinds = ["blocking", "epoll", "gtls", "trio"]
    if shutil.which("nginx") or Path("/usr/sbin/nginx").exists():
        kinds.append("nginx")
    else:
        print("nginx not installed (benchmarks/setup.sh): its column is skipped")
    results: dict[str, list[float]] = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        files = quick_handshake.write_pki(workdir)
        for round_no in range(args.rounds):
            order = kinds[round_no % len(kinds):] + kinds[:round_no % len(kinds)]
            for kind in order:
                results[kind].append(measure(kind, files, workdir, args.seconds, args.procs))
                time.sleep(0.2)
    medians = {kind: statistics.median(values) for kind, values in results.items()}
    references = [kind for kind in ("nginx", "trio") if kind in medians]
    print(f"server CPU per TLS 1.3 ECDSA P-256 handshake, ms (median of {args.rounds} rounds, openssl s_time load)")
    print(f"{'':10}{'median':>8}  " + "".join(f"{'/ ' + ref:>9}" for ref in references) + "  rounds")
    for kind, median in medians.items():
        ratios = "".join(f"{median / medians[ref]:9.2f}" for ref in references)
        rounds = ", ".join(f"{value:.3f}" for value in results[kind])
        print(f"{kind:10}{median:8.3f}  {ratios}  {rounds}")


if __name__ == "__main__":
    main()
