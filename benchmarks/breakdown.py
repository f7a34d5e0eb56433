#!/usr/bin/env python3
"""Where a server's handshake CPU and idle-connection memory go, gtls vs trio's SSLStream, side by side.

    python benchmarks/breakdown.py cpu [--handshakes 300] [--baseline DIR] [--close-notify]   # per handshake
    python benchmarks/breakdown.py memory [--connections 1000]   # bytes per idle connection, native vs Python

Both servers are the ones ``quick_handshake.py`` runs (same echo handler, same ECDSA P-256 PKI, TLS 1.3).

``cpu`` runs each server under ``valgrind --tool=callgrind`` and counts the instructions its process executes for
N sequential handshakes from a Python ``ssl`` client that closes without close_notify, as ``openssl s_time``
does. Instruction counts do not depend on what else the machine is doing (the same binary and inputs give the
same count), so this is the way to judge a change to the Python side of the handshake path on a noisy 2-core
machine, where CPU-time ratios move by 5 % between runs. Instructions are not time (cryptographic code runs
more instructions per cycle than the interpreter), so ``gtls bench`` stays the measurement of record; the split by
library shows what each side could still save: OpenSSL's own share is the floor for any runtime built on it.
``--baseline DIR`` adds gtls imported from another checkout (``git worktree add DIR REV``), as in
``quick_handshake.py``. ``--close-notify`` makes the client end each connection as ``gtls bench``'s load client
does: send close_notify and close at once, without reading the server's tickets or its close_notify (the server
then reads the alert, answers it, and finds the socket gone).

``--trio-libdir DIR`` runs trio's server with ``LD_LIBRARY_PATH=DIR``: a directory holding another OpenSSL 3's
``libssl.so.3`` and ``libcrypto.so.3`` (Python's ``ssl`` loads them instead of the system's), so that both servers
run the same OpenSSL series and the ratio is the runtimes' alone. ``cryptography``'s wheel links its OpenSSL
statically, so the other way round is not possible without building it.

``memory`` opens N connections that finish their handshakes and stay idle, then asks the server (SIGUSR1) for its
resident set size and its malloc heap in use (glibc ``mallinfo2``). Growth per connection of the malloc heap is
native state (OpenSSL's connection, plus Python objects over 512 bytes); the rest of the RSS growth is Python's
small-object arenas.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quick_handshake  # noqa: E402  (same servers, same PKI)

KINDS = ("gtls", "trio")
#: Libraries as callgrind names their objects, grouped for the report.
GROUPS = (
    ("OpenSSL", re.compile(r"_rust\.abi3\.so|libssl|libcrypto")),
    ("Python", re.compile(r"libpython|python3")),
    ("libc", re.compile(r"libc\.so")),
)

MEMORY_PROBE = r"""
import ctypes, signal, sys

class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

_libc = ctypes.CDLL("libc.so.6")
_libc.mallinfo2.restype = _MallInfo2

def _report(signum, frame):
    rss = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS"))
    info = _libc.mallinfo2()
    print(f"probe rss_kib={rss} malloc_in_use={info.uordblks + info.hblkhd}", file=sys.stderr, flush=True)

signal.signal(signal.SIGUSR1, _report)
"""


def client_context(ca: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


def handshakes(port: int, context: ssl.SSLContext, count: int, close_notify: bool = False) -> None:
    """``count`` sequential handshakes, each closed without close_notify (like ``openssl s_time``) or, with
    ``close_notify``, after sending one without waiting for the server's (like ``gtls.bench.loadgen``)."""
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
            tls = context.wrap_socket(raw, server_hostname="localhost")
            if close_notify:
                tls.setblocking(False)
                try:
                    tls.unwrap()  # sends close_notify, then would wait for the server's
                except (ssl.SSLWantReadError, ssl.SSLError, OSError):
                    pass
            tls.close()


def start_server(argv: list[str], stderr: int | None = subprocess.DEVNULL, env: dict[str, str] | None = None
                 ) -> tuple[subprocess.Popen[str], int]:
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    assert server.stdout is not None
    line = server.stdout.readline()
    if not line.strip().isdigit():
        server.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return server, int(line)


#: Set by --trio-libdir: where trio's server finds its libssl.so.3 / libcrypto.so.3.
TRIO_LIBDIR: str | None = None


def server_env(kind: str, baseline: str | None = None) -> dict[str, str] | None:
    if kind == "base":
        return {**os.environ, "PYTHONPATH": baseline or ""}
    if kind == "trio" and TRIO_LIBDIR:
        return {**os.environ, "LD_LIBRARY_PATH": TRIO_LIBDIR}
    return None


def openssl_versions() -> str:
    """Which OpenSSL each server runs."""
    gtls_version = subprocess.run(
        [sys.executable, "-c", "from OpenSSL import SSL; print(SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode())"],
        capture_output=True, text=True, check=True).stdout.strip()
    trio_version = subprocess.run([sys.executable, "-c", "import ssl; print(ssl.OPENSSL_VERSION)"],
                                  env=server_env("trio"), capture_output=True, text=True, check=True).stdout.strip()
    return f"gtls: {gtls_version}; trio: {trio_version}"


# --- cpu -------------------------------------------------------------------------------------------------------


def callgrind_once(kind: str, files: tuple[Path, Path, Path], script: Path, count: int, out: Path,
                   baseline: str | None, close_notify: bool) -> None:
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
            sys.executable, str(script), "gtls" if kind == "base" else kind, *map(str, files)]
    server, port = start_server(argv, env=server_env(kind, baseline))
    try:
        context = client_context(files[2])
        handshakes(port, context, 20, close_notify)  # warm-up: lazy set-up is not per-handshake work
        subprocess.run(["callgrind_control", "-i", "on", str(server.pid)], check=True, capture_output=True)
        handshakes(port, context, count, close_notify)
        time.sleep(0.5)  # the last connection's end is handled
        subprocess.run(["callgrind_control", "-i", "off", str(server.pid)], check=True, capture_output=True)
    finally:
        server.terminate()
        server.wait(timeout=120)


def instructions_by_group(out: Path) -> dict[str, int]:
    text = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", str(out)],
                          capture_output=True, text=True, check=True).stdout
    groups: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        match = re.match(r"\s*([\d,]+) \([\s\d.]+%\)\s+(.*?)(?: \[(.*)\])?$", line)
        if match is None:
            continue
        count = int(match.group(1).replace(",", ""))
        if "PROGRAM TOTALS" in line:
            groups["total"] = count
            continue
        obj = match.group(3) or ""
        groups[next((name for name, pattern in GROUPS if pattern.search(obj)), "other")] += count
    return dict(groups)


def run_cpu(count: int, baseline: str | None, close_notify: bool) -> None:
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install valgrind")
    per: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        files = quick_handshake.write_pki(directory)
        script = directory / "server.py"  # a file, not -c: callgrind's output header keeps the command line
        script.write_text(quick_handshake.SERVER_CODE)
        kinds = [*KINDS, "base"] if baseline else list(KINDS)
        for kind in kinds:
            out = directory / f"callgrind.{kind}.out"
            callgrind_once(kind, files, script, count, out, baseline, close_notify)
            per[kind] = {group: value / count / 1000 for group, value in instructions_by_group(out).items()}
    names = ["total", *(name for name, _ in GROUPS), "other"]
    ending = "close_notify sent" if close_notify else "no close_notify"
    print(f"thousands of instructions per handshake ({count} TLS 1.3 ECDSA P-256 handshakes, {ending}, server "
          f"process; {openssl_versions()})")
    print(f"{'':10}" + "".join(f"{kind:>10}" for kind in kinds) + f"{'gtls/trio':>11}")
    for name in names:
        gtls_value, trio_value = per["gtls"].get(name, 0.0), per["trio"].get(name, 0.0)
        ratio = f"{gtls_value / trio_value:11.2f}" if trio_value else f"{'–':>11}"
        print(f"{name:10}" + "".join(f"{per[kind].get(name, 0.0):10.0f}" for kind in kinds) + ratio)
    floor = per["gtls"].get("OpenSSL", 0.0) / per["trio"]["total"]
    print(f"gtls's OpenSSL instructions alone are {floor:.2f} × trio's whole handshake")


# --- memory ----------------------------------------------------------------------------------------------------


def probe(server: subprocess.Popen[str]) -> dict[str, int]:
    assert server.stderr is not None
    server.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        line = server.stderr.readline()
        if line.startswith("probe "):
            return {key: int(value) for key, value in (item.split("=") for item in line.split()[1:])}
    raise RuntimeError("the server did not answer the memory probe")


def memory_once(kind: str, files: tuple[Path, Path, Path], script: Path, count: int) -> dict[str, float]:
    server, port = start_server([sys.executable, str(script), kind, *map(str, files)], stderr=subprocess.PIPE,
                                env=server_env(kind))
    held: list[ssl.SSLSocket] = []
    try:
        context = client_context(files[2])
        handshakes(port, context, 3)
        time.sleep(0.3)
        before = probe(server)
        for _ in range(count):
            raw = socket.create_connection(("127.0.0.1", port), timeout=30)
            held.append(context.wrap_socket(raw, server_hostname="localhost"))
        time.sleep(1.0)  # the server finishes its post-handshake work (TLS 1.3 tickets)
        after = probe(server)
    finally:
        for conn in held:
            conn.close()
        server.terminate()
        server.wait(timeout=30)
    rss = (after["rss_kib"] - before["rss_kib"]) * 1024 / count
    native = (after["malloc_in_use"] - before["malloc_in_use"]) / count
    return {"rss": rss, "malloc": native, "python_arenas": rss - native}


def run_memory(count: int, rounds: int) -> None:
    results: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        files = quick_handshake.write_pki(directory)
        script = directory / "server.py"
        script.write_text(MEMORY_PROBE + quick_handshake.SERVER_CODE)
        for round_no in range(rounds):
            for kind in KINDS if round_no % 2 == 0 else KINDS[::-1]:
                results[kind].append(memory_once(kind, files, script, count))
    print(f"bytes per idle connection ({count} connections, median of {rounds} rounds, server process; "
          f"{openssl_versions()})")
    print(f"{'':34}" + "".join(f"{kind:>10}" for kind in KINDS) + f"{'gtls/trio':>11}")
    rows = (("RSS growth", "rss"), ("malloc heap (native + big objects)", "malloc"),
            ("rest: Python small-object arenas", "python_arenas"))
    for label, key in rows:
        values = {kind: sorted(r[key] for r in results[kind])[len(results[kind]) // 2] for kind in KINDS}
        print(f"{label:34}" + "".join(f"{values[kind]:10.0f}" for kind in KINDS)
              + f"{values['gtls'] / values['trio']:11.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    cpu = sub.add_parser("cpu", help="callgrind instructions per handshake, by library")
    cpu.add_argument("--handshakes", type=int, default=300)
    cpu.add_argument("--baseline", metavar="DIR", help="also count gtls imported from this checkout")
    cpu.add_argument("--close-notify", action="store_true",
                     help="the client sends close_notify before closing, as gtls bench's load client does")
    memory = sub.add_parser("memory", help="bytes per idle connection: RSS, malloc heap, Python arenas")
    memory.add_argument("--connections", type=int, default=1000)
    memory.add_argument("--rounds", type=int, default=3)
    for command in (cpu, memory):
        command.add_argument("--trio-libdir", metavar="DIR",
                             help="LD_LIBRARY_PATH for trio's server: another OpenSSL 3 for Python's ssl")
    args = parser.parse_args()
    global TRIO_LIBDIR
    TRIO_LIBDIR = args.trio_libdir
    if args.what == "cpu":
        run_cpu(args.handshakes, args.baseline, args.close_notify)
    else:
        run_memory(args.connections, args.rounds)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")  # the same dict layouts each run: repeatable counts
    main()
