"""Cost of compiling a context and of the per-handshake name check.

    python benchmarks/context_build.py [--rounds N]

Builds a PKI (root → intermediate → leaf, EC P-256), a 3-CA trusted-ca file and a 1,000-entry CRL in a temporary
folder, then times, on this machine:

* compile_context, cold (cache cleared) and warm (cache hit: files re-read and hashed, nothing parsed);
* new_connection for a client with and without tls-target-name-check=host (the name check's setup cost);
* complete in-memory handshakes (memory BIOs, no sockets) with the name check on and off, with the CRL checked,
  and with tls-crl-expired=warn on an expired CRL (the one configuration with a Python verify callback).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from OpenSSL import SSL

from gtls.context import CompiledContext, clear_cache, compile_context
from gtls.resolve import direct
from gtls.testing import CA, write_pem


def timed(fn: Callable[[], object], rounds: int) -> float:
    """Median seconds per call over ``rounds`` calls (after one warm-up call)."""
    fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def handshake(client: CompiledContext, server: CompiledContext, name: str) -> None:
    c = client.new_connection(server_hostname=name)
    s = server.new_connection()
    for _ in range(20):  # bounded: a TLS 1.3 handshake needs 2-3 flights
        done = 0
        for conn in (c, s):
            try:
                conn.do_handshake()
                done += 1
            except SSL.WantReadError:
                pass
        for src, dst in ((c, s), (s, c)):
            try:
                dst.bio_write(src.bio_read(65536))
            except SSL.WantReadError:
                pass
        if done == 2:
            client.established(c)
            return
    raise RuntimeError("handshake did not finish")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        root = CA.root("bench root")
        inter = root.intermediate("bench inter")
        leaf = inter.leaf("bench.test", dns=["bench.test"])
        write_pem(tmp / "chain.pem", leaf, inter, root)
        leaf.write_key(tmp / "key.pem")
        write_pem(tmp / "cas.pem", root, CA.root("bench other 1"), CA.root("bench other 2"))
        write_pem(tmp / "crl.pem", inter.crl(count=1000).pem)
        day = dt.timedelta(days=1)
        write_pem(tmp / "old-crl.pem", inter.crl(count=1000, this_update=-3 * day, next_update=-day).pem)
        server_opts = {"certificate": str(tmp / "chain.pem"), "certificate-key": str(tmp / "key.pem"),
                       "trusted-ca": str(tmp / "cas.pem"), "tls-crl": str(tmp / "crl.pem"), "tls-mutual": "1"}
        server_resolved = direct(server_opts, "server")

        def cold() -> None:
            clear_cache()
            compile_context(server_resolved)

        results = {
            "compile_context cold (3-cert chain, 3 CAs, 1,000-entry CRL)": timed(cold, rounds),
            "compile_context warm (cache hit)": timed(lambda: compile_context(server_resolved), rounds),
        }
        server = compile_context(direct({k: v for k, v in server_opts.items() if k not in ("tls-crl", "tls-mutual")},
                                        "server"))
        base = {"trusted-ca": str(tmp / "cas.pem")}
        plain = compile_context(direct(base, "client"))
        named = compile_context(direct({**base, "tls-target-name-check": "host"}, "client"))
        crl = compile_context(direct({**base, "tls-target-name-check": "host", "tls-crl": str(tmp / "crl.pem")},
                                     "client"))
        warn = compile_context(direct({**base, "tls-target-name-check": "host", "tls-crl": str(tmp / "old-crl.pem"),
                                       "tls-crl-expired": "warn"}, "client"))
        results["new_connection, no name check"] = timed(lambda: plain.new_connection(server_hostname="bench.test"),
                                                         rounds * 20)
        results["new_connection, name check"] = timed(lambda: named.new_connection(server_hostname="bench.test"),
                                                      rounds * 20)
        for label, client in (("no name check", plain), ("name check", named), ("name check + CRL", crl),
                              ("name check + expired CRL, warn (verify callback)", warn)):
            results[f"in-memory handshake, {label}"] = timed(lambda c=client: handshake(c, server, "bench.test"),
                                                             rounds)
    width = max(map(len, results))
    for label, seconds in results.items():
        print(f"{label:<{width}}  {seconds * 1e6:10.1f} µs")


if __name__ == "__main__":
    main()
