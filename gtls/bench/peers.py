"""The servers measured side by side: ``gtls serve``, trio's ``SSLStream``, ``openssl s_server`` and nginx.

Each peer is started as its own process tree, pinned to the server core, with the same certificates, protocol
version, client-certificate and CRL settings, and answers on 127.0.0.1. ``echo`` peers hold many connections at once
and send bytes back, so they take part in the bulk and idle-memory scenarios; ``openssl s_server`` serves one
connection at a time and is measured for handshakes only.
"""

from __future__ import annotations

import abc
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .pki import ScenarioPKI
from .procstat import process_tree
from .scenarios import TLSSetup

SERVER_CORE = 0
START_TIMEOUT = 20.0
NGINX_ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")


class PeerUnavailable(Exception):
    """A peer cannot run here (not installed, or it failed to start); the benchmark goes on without it."""


def two_cores() -> bool:
    return len(os.sched_getaffinity(0)) >= 2


def pinned_to(cores: set[int]) -> Callable[[], None] | None:
    """A ``preexec_fn`` pinning the child to ``cores`` (no pinning on a single-core machine)."""
    if not two_cores():
        return None
    return lambda: os.sched_setaffinity(0, cores)


def load_cores() -> set[int]:
    """Every core but the server's, for the load processes."""
    cores = set(os.sched_getaffinity(0))
    return cores - {SERVER_CORE} if len(cores) >= 2 else cores


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class RunningServer:
    impl: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def pids(self) -> list[int]:
        """The server's process tree now (nginx: master and worker); a measurement reads it once and keeps it."""
        return process_tree(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _log_tail(log: Path) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
    except OSError:
        return ""


def _launch(impl: str, argv: Sequence[str], workdir: Path, port: int | None,
            env: Mapping[str, str] | None = None) -> RunningServer:
    """Start ``argv``; wait for ``listening on HOST:PORT`` in its stdout, or for ``port`` to accept."""
    log = workdir / f"{impl}.log"
    out = workdir / f"{impl}.out"
    with open(log, "wb") as err_file, open(out, "wb") as out_file:
        process = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out_file, stderr=err_file, cwd=workdir,
            preexec_fn=pinned_to({SERVER_CORE}), env=env,
        )
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise PeerUnavailable(f"{impl} exited with {process.returncode}: {_log_tail(log) or _log_tail(out)}")
            if port is None:
                for line in out.read_text(errors="replace").splitlines():
                    if line.startswith("listening on "):
                        return RunningServer(impl, process, int(line.rsplit(":", 1)[1]), log)
            else:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    return RunningServer(impl, process, port, log)
                except OSError:
                    pass
            time.sleep(0.05)
        raise PeerUnavailable(f"{impl} did not start within {START_TIMEOUT:.0f} s: {_log_tail(log)}")
    except BaseException:
        process.kill()
        process.wait(5)
        raise


class Peer(abc.ABC):
    name = ""
    echo = True  # holds concurrent connections and echoes data

    def unavailable(self) -> str | None:
        """Why this peer cannot run here, or ``None``."""
        return None

    @abc.abstractmethod
    def start(self, pki: ScenarioPKI, setup: TLSSetup, workdir: Path) -> RunningServer:
        """Start the server for ``setup``; ``PeerUnavailable`` when it does not come up."""


class GtlsPeer(Peer):
    name = "gtls"

    def start(self, pki: ScenarioPKI, setup: TLSSetup, workdir: Path) -> RunningServer:
        argv = [
            sys.executable, "-m", "gtls", "serve", "--listen", "127.0.0.1:0", "--quiet",
            "--certificate", f"{pki.server_cert},{pki.intermediate}", "--certificate-key", str(pki.server_key),
            "--trusted-ca", str(pki.root), "--sec-protocol", "TLSv13" if setup.version == "1.3" else "TLSv12",
        ]
        if setup.mutual:
            argv += ["--tls-mutual", "1"]
        if setup.crl:
            argv += ["--tls-crl", str(pki.crl)]
        return _launch(self.name, argv, workdir, None)


class TrioPeer(Peer):
    """trio's ``SSLStream`` server on Python's ``ssl``. ``libdir``: a folder with another OpenSSL 3's
    ``libssl.so.3`` and ``libcrypto.so.3``, put first on ``LD_LIBRARY_PATH`` so that trio runs on the same OpenSSL
    series as gtls (``gtls bench --trio-libdir``); the trio connector client uses it too."""

    name = "trio"

    def __init__(self, libdir: str | None = None) -> None:
        self.libdir = libdir

    def env(self) -> dict[str, str] | None:
        if not self.libdir:
            return None
        return {**os.environ, "LD_LIBRARY_PATH": self.libdir}

    def openssl_version(self) -> str:
        """The OpenSSL Python's ``ssl`` loads in this peer's processes."""
        if not self.libdir:
            return ssl.OPENSSL_VERSION
        found = subprocess.run([sys.executable, "-c", "import ssl; print(ssl.OPENSSL_VERSION)"], env=self.env(),
                               capture_output=True, text=True, timeout=60)
        return found.stdout.strip() or f"unknown (import ssl failed with {self.libdir})"

    def unavailable(self) -> str | None:
        if self.libdir and not Path(self.libdir, "libssl.so.3").exists():
            return f"--trio-libdir {self.libdir} has no libssl.so.3"
        return None

    def start(self, pki: ScenarioPKI, setup: TLSSetup, workdir: Path) -> RunningServer:
        argv = [
            sys.executable, "-m", "gtls.bench.trio_server", "--chain", str(pki.server_chain),
            "--key", str(pki.server_key), "--ca", str(pki.root), "--version", setup.version,
        ]
        if setup.mutual:
            argv.append("--mutual")
        if setup.crl:
            argv += ["--crl", str(pki.crl)]
        return _launch(self.name, argv, workdir, None, self.env())


class OpenSSLPeer(Peer):
    """``openssl s_server -www``: ``-rev`` would print a connection summary (~75 writes) per handshake to stderr."""

    name = "openssl"
    echo = False  # s_server is iterative: one connection at a time

    def unavailable(self) -> str | None:
        return None if shutil.which("openssl") else "the openssl command is not installed"

    def start(self, pki: ScenarioPKI, setup: TLSSetup, workdir: Path) -> RunningServer:
        port = free_port()
        argv = [
            "openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(pki.server_cert),
            "-cert_chain", str(pki.intermediate), "-key", str(pki.server_key),
            "-tls1_3" if setup.version == "1.3" else "-tls1_2", "-www", "-quiet",
        ]
        if setup.mutual:
            # -verify_quiet: -quiet alone leaves s_server printing every client chain it verifies (~3 % CPU).
            argv += ["-Verify", "4", "-verify_return_error", "-verify_quiet", "-CAfile", str(pki.root)]
        if setup.crl:
            argv += ["-CRL", str(pki.crl), "-crl_check"]
        return _launch(self.name, argv, workdir, port)


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


class NginxPeer(Peer):
    """nginx (Debian ``nginx-light``) as the C reference: an ``http {}`` server, one worker, its own temp prefix.

    nginx-light ships the stream module only as a separate package, but it does include the HTTP echo module, so
    the ``http {}`` server echoes POST bodies (``echo_request_body``); a handshake-only client never sends a request.
    """

    name = "nginx"

    def unavailable(self) -> str | None:
        if nginx_binary() is None:
            return "nginx is not installed (benchmarks/setup.sh installs nginx-light)"
        return None

    def config(self, pki: ScenarioPKI, setup: TLSSetup, workdir: Path, port: int) -> str:
        client_auth = ""
        if setup.mutual:
            client_auth = f"ssl_verify_client on; ssl_verify_depth 4; ssl_client_certificate {pki.root};"
        if setup.crl:
            client_auth += f" ssl_crl {pki.crl};"
        echo = "echo_read_request_body; echo_request_body;" if NGINX_ECHO_MODULE.exists() else "return 200 ok;"
        load = f"load_module {NGINX_ECHO_MODULE};" if NGINX_ECHO_MODULE.exists() else ""
        temp = " ".join(f"{kind}_temp_path {workdir}/{kind};" for kind in ("client_body", "proxy", "fastcgi",
                                                                          "uwsgi", "scgi"))
        return f"""
{"user root;" if os.geteuid() == 0 else ""}
{load}
worker_processes 1;
daemon off;
master_process on;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    {temp}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {pki.server_chain};
        ssl_certificate_key {pki.server_key};
        ssl_protocols {"TLSv1.3" if setup.version == "1.3" else "TLSv1.2"};
        {client_auth}
        location / {{ client_max_body_size 0; client_body_buffer_size 16m; {echo} }}
    }}
}}
"""

    def start(self, pki: ScenarioPKI, setup: TLSSetup, workdir: Path) -> RunningServer:
        binary = nginx_binary()
        if binary is None:
            raise PeerUnavailable(self.unavailable() or "nginx missing")
        port = free_port()
        prefix = workdir / "nginx"
        prefix.mkdir(exist_ok=True)
        conf = prefix / "nginx.conf"
        conf.write_text(self.config(pki, setup, prefix, port))
        argv = [binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "nginx.log")]
        return _launch(self.name, argv, workdir, port)


ALL_PEERS: tuple[Peer, ...] = (GtlsPeer(), TrioPeer(), OpenSSLPeer(), NginxPeer())
