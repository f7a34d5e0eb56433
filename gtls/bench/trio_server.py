"""The trio reference peer: ``trio.serve_ssl_over_tcp`` with Python's ``ssl`` and the same echo handler as gtls.

Run as ``python -m gtls.bench.trio_server --chain F --key F --ca F --version 1.3 [--mutual] [--crl F]``; prints
``listening on 127.0.0.1:PORT`` once the port accepts, like ``gtls serve``.
"""

from __future__ import annotations

import argparse
import functools
import ssl
import sys

import trio

RECEIVE_SIZE = 65536


def build_context(args: argparse.Namespace) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    version = ssl.TLSVersion.TLSv1_3 if args.version == "1.3" else ssl.TLSVersion.TLSv1_2
    context.minimum_version = context.maximum_version = version
    context.load_cert_chain(args.chain, args.key)
    if args.mutual:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(args.ca)
    if args.crl:
        context.load_verify_locations(args.crl)
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return context


async def echo(stream: trio.SSLStream[trio.SocketStream]) -> None:
    try:
        while data := await stream.receive_some(RECEIVE_SIZE):
            await stream.send_all(data)
        await stream.aclose()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # a failed handshake or a peer that vanished: nothing to answer
    finally:
        await trio.aclose_forcefully(stream)


async def serve(context: ssl.SSLContext) -> None:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_ssl_over_tcp, echo, 0, context, host="127.0.0.1"))
        port = listeners[0].transport_listener.socket.getsockname()[1]
        print(f"listening on 127.0.0.1:{port}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gtls.bench.trio_server")
    parser.add_argument("--chain", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--version", choices=("1.2", "1.3"), default="1.3")
    parser.add_argument("--mutual", action="store_true")
    parser.add_argument("--crl")
    args = parser.parse_args(argv)
    try:
        trio.run(serve, build_context(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
