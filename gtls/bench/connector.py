"""Client connector cost: gtls's ``open_tls_over_tcp_stream`` vs trio's ``open_ssl_over_tcp_stream``.

``python -m gtls.bench.connector --impl gtls|trio --port P --ca ROOT`` runs sequential handshakes (connect, handshake,
close) against a server for ``--duration`` seconds and prints this process's CPU time and the handshake count as
JSON. Both verify the server chain and its name: trio checks the dialled IP against the certificate's IP SAN, gtls
checks ``tls-target-name=localhost`` against its DNS SAN.
"""

from __future__ import annotations

import argparse
import json
import resource
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

WARMUP = 5


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def trio_connector(args: argparse.Namespace) -> Callable[[], Awaitable[None]]:
    context = ssl.create_default_context(cafile=args.ca)
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_3

    async def one() -> None:
        stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", args.port, ssl_context=context)
        try:
            await stream.do_handshake()
        finally:
            await stream.aclose()

    return one


def gtls_connector(args: argparse.Namespace) -> Callable[[], Awaitable[None]]:
    from gtls.client import open_tls_over_tcp_stream
    from gtls.context import compile_context
    from gtls.options import TLSOptions
    from gtls.resolve import direct

    options = TLSOptions(trusted_ca=args.ca, sec_protocol="TLSv13", tls_target_name_check="host",
                         tls_target_name="localhost")
    # Compiled once, as trio's SSLContext is built once: passing the TLSOptions on every call would also measure
    # resolving them and fingerprinting the CA file per connection (``--per-call-options`` does that).
    settings = options if args.per_call_options else compile_context(direct(options, "client"))

    async def one() -> None:
        stream = await open_tls_over_tcp_stream("127.0.0.1", args.port, settings)
        try:
            await stream.do_handshake()
        finally:
            await stream.aclose()

    return one


async def measure(one: Callable[[], Awaitable[None]], duration: float, limit: int) -> dict[str, Any]:
    for _ in range(WARMUP):  # first connections pay for imports and context compilation
        await one()
    count = 0
    cpu_start, started = cpu_now(), time.perf_counter()
    while time.perf_counter() - started < duration and count < limit:
        await one()
        count += 1
    return {"handshakes": count, "cpu": cpu_now() - cpu_start, "elapsed": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gtls.bench.connector")
    parser.add_argument("--impl", choices=("gtls", "trio"), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--max", type=int, default=100_000)
    parser.add_argument("--per-call-options", action="store_true", help="gtls: pass TLSOptions to every call")
    args = parser.parse_args(argv)
    one = gtls_connector(args) if args.impl == "gtls" else trio_connector(args)
    print(json.dumps(trio.run(measure, one, args.duration, args.max)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
