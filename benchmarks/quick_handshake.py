"""Quick side-by-side: server CPU per full ECDSA P-256 handshake, gtls vs trio's SSLStream (a developer check; the
full harness is ``gtls bench``).

Each server runs in its own process with the same echo handler and the same PKI; ``openssl s_time -new`` processes
load it for a few seconds; the server's CPU (utime + stime from ``/proc/PID/stat``) over that window is divided by
the handshakes s_time completed. Servers alternate over several rounds and the medians are compared.

    python benchmarks/quick_handshake.py [--rounds 3] [--seconds 4] [--procs 2] [--tls 1.3|1.2] [--server gtls]
        [--baseline DIR] [--trio-libdir DIR]

``--baseline DIR`` adds a third server: gtls imported from another checkout (e.g. ``git worktree add DIR REV``), so
a change is judged against its parent in the same interleaved run rather than across runs on a noisy machine.
``--trio-libdir DIR`` runs trio's server with ``LD_LIBRARY_PATH=DIR`` (another OpenSSL 3 for Python's ``ssl``; see
``breakdown.py``).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
#: Set by --trio-libdir: where trio's server finds its libssl.so.3 / libcrypto.so.3.
TRIO_LIBDIR: str | None = None
VERBOSE = "-v" in sys.argv

SERVER_CODE = r"""
import sys, trio
kind, cert, key, ca = sys.argv[1:5]

async def echo(stream):
    try:
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass

async def main():
    if kind == "gtls":
        import gtls
        options = gtls.TLSOptions.from_mapping({"certificate": cert, "certificate-key": key, "trusted-ca": ca})
        serve = lambda task_status: gtls.serve_tls_over_tcp(echo, 0, options, host="127.0.0.1",
                                                            task_status=task_status)
    else:
        import ssl
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        serve = lambda task_status: trio.serve_ssl_over_tcp(echo, 0, context, host="127.0.0.1",
                                                           task_status=task_status)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(serve)
        sock = getattr(listeners[0], "socket", None) or listeners[0].transport_listener.socket
        print(sock.getsockname()[1], flush=True)

trio.run(main)
"""


def cpu_seconds(pid: int) -> float:
    user, system = cpu_split(pid)
    return user + system


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def write_pki(directory: Path) -> tuple[Path, Path, Path]:
    from gtls.testing import CA

    root = CA.root("quick bench root")
    leaf = root.leaf("localhost", dns=("localhost",))
    return (
        leaf.write_cert(directory / "cert.pem"),
        leaf.write_key(directory / "key.pem"),
        root.write_cert(directory / "ca.pem"),
    )


def s_time_load(port: int, seconds: int, procs: int, tls: str = "1.3") -> int:
    """Handshakes completed by ``procs`` ``openssl s_time -new`` processes loading ``port`` for ``seconds``."""
    flag = "-tls1_3" if tls == "1.3" else "-tls1_2"
    loaders = [
        subprocess.Popen(
            ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", flag, "-time", str(seconds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(procs)
    ]
    try:
        handshakes = 0
        for loader in loaders:
            out, _ = loader.communicate(timeout=seconds + 30)
            match = re.search(r"(\d+) connections in [\d.]+s", out)
            handshakes += int(match.group(1)) if match else 0
        return handshakes
    finally:
        for loader in loaders:
            loader.kill()
            loader.wait(timeout=10)


def measure(kind: str, files: tuple[Path, Path, Path], seconds: int, procs: int, tls: str,
            baseline: str | None = None) -> float:
    env = {**os.environ, "LD_LIBRARY_PATH": TRIO_LIBDIR} if kind == "trio" and TRIO_LIBDIR else None
    if kind == "base":
        env = {**os.environ, "PYTHONPATH": baseline or ""}
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER_CODE, "gtls" if kind == "base" else kind, *map(str, files)],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        before = cpu_split(server.pid)
        handshakes = s_time_load(port, seconds, procs, tls)
        after = cpu_split(server.pid)
        user, system = after[0] - before[0], after[1] - before[1]
        per = 1000 / max(handshakes, 1)
        if VERBOSE:
            print(f"  {kind}: {handshakes} handshakes, user {user * per:.3f} ms + system {system * per:.3f} ms each")
        return (user + system) * per
    finally:
        server.kill()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--tls", choices=["1.3", "1.2"], default="1.3")
    parser.add_argument("-v", action="store_true", help="print each measurement with its user/system split")
    parser.add_argument("--server", choices=["gtls", "trio"], help="measure only this one (for profiling)")
    parser.add_argument("--baseline", metavar="DIR", help="also measure gtls imported from this checkout")
    parser.add_argument("--trio-libdir", metavar="DIR", help="LD_LIBRARY_PATH for trio's server (another OpenSSL 3)")
    args = parser.parse_args()
    global TRIO_LIBDIR
    TRIO_LIBDIR = args.trio_libdir
    kinds = [args.server] if args.server else ["gtls", "trio"]
    if args.baseline:
        kinds.append("base")
    results: dict[str, list[float]] = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        files = write_pki(Path(tmp))
        for round_no in range(args.rounds):
            order = kinds if round_no % 2 == 0 else kinds[::-1]
            for kind in order:
                results[kind].append(measure(kind, files, args.seconds, args.procs, args.tls, args.baseline))
                time.sleep(0.2)
    for kind, values in results.items():
        print(f"{kind:5} server CPU per handshake: {statistics.median(values):.3f} ms  "
              f"(rounds: {', '.join(f'{v:.3f}' for v in values)})")
    if "gtls" in results and "trio" in results:
        for kind in [k for k in kinds if k != "trio"]:
            ratio = statistics.median(results[kind]) / statistics.median(results["trio"])
            print(f"{kind} / trio = {ratio:.2f}")


if __name__ == "__main__":
    main()
