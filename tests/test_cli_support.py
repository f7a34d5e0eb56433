"""Helpers for the CLI tests: run ``python -m gtls`` and real ``openssl`` peers as subprocesses (no tests here).

Every process started here is bounded in time and killed in a ``finally``; servers bind 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "certs-fixtures"
OPENSSL = "openssl"
#: Upper bound for any single CLI run or wait in these tests.
STEP_TIMEOUT = 20.0


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


class _LineReader:
    """Collects a pipe's lines in a thread so waits can be bounded without blocking reads."""

    def __init__(self, pipe: object) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(pipe,), daemon=True)
        self._thread.start()

    def _pump(self, pipe: object) -> None:
        for line in iter(pipe.readline, ""):  # type: ignore[attr-defined]
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, predicate: object, timeout: float = STEP_TIMEOUT) -> str:
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
            if predicate(line):  # type: ignore[operator]
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
    process: subprocess.Popen[str]
    stdout: _LineReader
    stderr: _LineReader
    host: str = "127.0.0.1"
    port: int = 0
    extra: dict[str, str] = field(default_factory=dict)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``signum`` and wait for the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(timeout)


def _kill(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


@contextlib.contextmanager
def gtls_serve(*args: str, env: dict[str, str] | None = None) -> Iterator[Running]:
    """``gtls serve ARGS`` until it prints ``listening on HOST:PORT``; killed on exit."""
    process = subprocess.Popen([sys.executable, "-m", "gtls", "serve", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env or gtls_env(),
                               cwd=REPO)
    try:
        running = Running(process, _LineReader(process.stdout), _LineReader(process.stderr))
        try:
            line = running.stdout.wait_for(lambda text: text.startswith("listening on "))
        except AssertionError as exc:
            raise AssertionError(f"{exc}; stderr: {running.stderr.drain()}") from None
        host, _, port = line.removeprefix("listening on ").rpartition(":")
        running.host, running.port = host.strip("[]"), int(port)
        yield running
    finally:
        _kill(process)


@contextlib.contextmanager
def openssl_server(*args: str) -> Iterator[Running]:
    """``openssl s_server -accept 127.0.0.1:0 ARGS`` until it reports its port; killed on exit."""
    process = subprocess.Popen([OPENSSL, "s_server", "-accept", "127.0.0.1:0", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
    try:
        running = Running(process, _LineReader(process.stdout), _LineReader(process.stderr))
        line = running.stdout.wait_for(lambda text: text.startswith("ACCEPT"))
        running.port = int(line.rpartition(":")[2])
        yield running
    finally:
        _kill(process)


def openssl_client(port: int, *args: str, send: bytes = b"", timeout: float = STEP_TIMEOUT,
                   host: str = "127.0.0.1") -> subprocess.CompletedProcess[bytes]:
    """``openssl s_client`` with ``send`` on stdin; returns when it exits (it exits on stdin EOF + peer close)."""
    return subprocess.run([OPENSSL, "s_client", "-connect", f"{host}:{port}", "-ign_eof", *args], input=send,
                          capture_output=True, timeout=timeout)


@contextlib.contextmanager
def tcp_server(behaviour: str) -> Iterator[int]:
    """A raw TCP server on 127.0.0.1 for failure cases: ``silent`` (accepts, says nothing), ``close`` (accepts,
    reads the ClientHello, closes) or ``http`` (answers plaintext HTTP). Serves connections until closed."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            conn.settimeout(2)
            if behaviour == "silent":
                held.append(conn)
                continue
            with contextlib.suppress(OSError):
                conn.recv(4096)
                if behaviour == "http":
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


def closed_port() -> int:
    """A loopback port with nothing listening (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (asserts there is exactly one)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one stderr line, got {lines!r}"
    return lines[0]


def write_list(path: Path, items: Sequence[bytes]) -> Path:
    path.write_bytes(b"".join(items))
    return path


@dataclass
class EchoResult:
    returncode: int
    stdout: list[str]
    stderr: list[str]
    echoed: bool


def openssl_echo(port: int, text: str, *args: str, host: str = "127.0.0.1",
                 timeout: float = STEP_TIMEOUT) -> EchoResult:
    """Connect ``openssl s_client``, send ``text`` and a newline, wait until the same line comes back, then close
    stdin (s_client quits). ``echoed`` says whether the line came back before the peer closed or the timeout.

    ``-quiet`` because without it s_client 3.0 stops showing data after a TLS 1.3 post-handshake record when it
    sent a client certificate ("read R BLOCK"); ``-no_ign_eof`` undoes the ``-ign_eof`` that ``-quiet`` implies."""
    process = subprocess.Popen([OPENSSL, "s_client", "-connect", f"{host}:{port}", "-quiet", "-no_ign_eof", *args],
                               stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = _LineReader(process.stdout), _LineReader(process.stderr)
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
        _kill(process)


def copy_fixtures(dest: Path) -> Path:
    """A copy of ``certs-fixtures/`` with private keys at mode 0600: git does not keep file modes, and gtls refuses
    key files other users can read, so tests must not depend on the checkout's modes."""
    import shutil

    copy = Path(shutil.copytree(FIXTURES, dest / "certs-fixtures"))
    for key in [*copy.glob("certs/*privkey.pem"), *copy.glob("demo/*-key.pem")]:
        key.chmod(0o600)
    return copy
