"""``gtls connect HOST:PORT``: one client connection; prints version, cipher, SNI and the peer chain.

Exit 0 on success; 1 on a connection or handshake failure with exactly one stderr line ``gtls: REASON: detail``
(REASON from spec §10, or ``connect-failed`` when TCP itself fails); 2 on a usage or configuration error.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ._common import (
    CONNECT_FAILED,
    EXIT_OK,
    StdoutUnwritable,
    Subcommands,
    UsageError,
    certificate_lines,
    format_host_port,
    parse_host_port,
    report_failure,
    report_stdout_closed,
    report_warnings,
    warnings_before_config_errors,
)
from ._flags import (
    add_option_flags,
    add_settings_source,
    given_options,
    require_positive_seconds,
    settings_from_config,
    settings_from_flags,
)

if TYPE_CHECKING:
    from ..context import CompiledContext
    from ..errors import HandshakeError
    from ..stream import TLSStream

#: In TLS 1.3 a server judges the client certificate after the client has finished its handshake, and says so
#: only in an alert the client reads later. Without --send, wait this long for such an alert so that gtls connect
#: never reports success for a connection the server refused (gtls CLI decision).
TLS13_SETTLE_SECONDS = 0.3
RECEIVE_BUFFER = 65536


def register(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "connect",
        help="open a client connection and print version, cipher, SNI and the peer chain",
        description="Open one TLS client connection, print the negotiated version, cipher, SNI and the peer "
        "chain. Exit 0 on success, 1 on a connection or handshake failure (stderr 'gtls: REASON: detail'), "
        "2 on a usage or configuration error.",
    )
    parser.add_argument("target", nargs="?", metavar="HOST:PORT",
                        help="where to connect (with --config: overrides the connection's target)")
    add_settings_source(parser, "client")
    add_option_flags(parser, "client")
    runtime = parser.add_argument_group("runtime")
    runtime.add_argument("--send", metavar="TEXT", help="send TEXT and a newline, then print what comes back")
    runtime.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                         help="time limit for TCP connect, the handshake and --send each (default 10)")
    runtime.add_argument("--alpn", metavar="LIST",
                         help="offer these ALPN protocols, comma-separated (h2,http/1.1); the agreed one is printed")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    require_positive_seconds(args.timeout, "--timeout")
    warnings: list[str] = []
    try:
        with warnings_before_config_errors(warnings):
            return _run(args, warnings)
    except StdoutUnwritable as exc:  # the reader of our output left (``| head -1``), or its file is full
        return report_stdout_closed(f"standard output could not take the session ({exc})")


def _run(args: argparse.Namespace, warnings: list[str]) -> int:
    flags = given_options(args)
    target = parse_host_port(args.target, what="HOST:PORT") if args.target else None
    server_hostname: str | None
    if settings_from_config(args, flags, "client"):
        from ..deployment import load_deployment
        from ..errors import DeploymentError

        deployment = load_deployment(args.config, warnings=warnings)
        endpoint = deployment.connection(args.app, args.connection, warnings=warnings)
        if not endpoint.resolved.secure:
            raise DeploymentError("the connection is not secure (no tls=1 on it or its target port)",
                                  object_path=endpoint.object_path, option="tls", file=str(deployment.path))
        resolved = endpoint.resolved
        # Dial the endpoint's address; its server_hostname is the reference name (and SNI). HOST:PORT overrides
        # only where to dial: a reference name the connection sets (its host) still holds, else the given host is
        # the dialled name, as for flags.
        host, port = target or (endpoint.address, endpoint.port)
        configured_name = deployment.application(args.app).connections[args.connection].host
        server_hostname = endpoint.server_hostname if target is None else configured_name
    else:
        if target is None:
            raise UsageError("give HOST:PORT to connect to, or --config FILE --app NAME --connection ID")
        host, port = target
        server_hostname = None
        resolved = settings_from_flags(flags, "client", profile=args.profile, warnings=warnings)

    from ..context import alpn_ids, compile_context

    alpn = [name.strip() for name in args.alpn.split(",")] if args.alpn is not None else None
    try:
        alpn_ids(alpn)
    except ValueError as exc:  # an ALPN name no protocol can have
        raise UsageError(f"--alpn: {exc}") from None
    compiled = compile_context(resolved, alpn=alpn)  # ConfigError -> exit 2, before any network I/O
    report_warnings([*warnings, *compiled.located_warnings])
    warnings.clear()  # reported: a later error must not repeat them
    # A dialled name the name check cannot take: refused (exit 2) before any connection, as the connector does.
    compiled.client_names(server_hostname if server_hostname is not None else host, given_as="host")

    import trio

    return trio.run(_connect, compiled, host, port, server_hostname, args)


async def _connect(compiled: CompiledContext, host: str, port: int, server_hostname: str | None,
                   args: argparse.Namespace) -> int:
    import trio

    from ..ending import classify_ending
    from ..errors import HandshakeError
    from ..stream import TLSStream

    where = format_host_port(host, port)
    # TCP first, under its own deadline, so a slow TCP connect reads "connect-failed" and a slow handshake
    # "timeout" (the same two steps, each with its own deadline, as gtls.client.open_tls_over_tcp_stream).
    try:
        with trio.fail_after(args.timeout):
            transport = await trio.open_tcp_stream(host, port)
    except OSError as exc:
        return report_failure(CONNECT_FAILED, f"cannot connect to {where}: {_os_error_text(exc)}")
    except trio.TooSlowError:
        return report_failure(CONNECT_FAILED, f"cannot connect to {where}: no TCP connection within {args.timeout:g} s")
    stream = TLSStream(transport, compiled, server_hostname=server_hostname if server_hostname is not None else host,
                       handshake_timeout=args.timeout)
    try:
        await stream.do_handshake()
    except HandshakeError as exc:
        await trio.aclose_forcefully(stream)
        return report_failure(exc.reason, _handshake_detail(exc, where, args.timeout))
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        await trio.aclose_forcefully(stream)
        if isinstance(exc.__cause__, HandshakeError):
            return report_failure(exc.__cause__.reason, _handshake_detail(exc.__cause__, where, args.timeout))
        return report_failure("eof-in-handshake", f"the server at {where} closed the connection during the handshake")

    try:
        report_warnings(stream.handshake_warnings)
        try:
            # The session is printed only once the exchange (or the TLS 1.3 settle read) went through: exit 0
            # and the printed session go together.
            received = await _exchange(stream, args)
        except HandshakeError as exc:
            return report_failure(exc.reason, _handshake_detail(exc, where))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            cause = exc.__cause__
            if isinstance(cause, HandshakeError):
                return report_failure(cause.reason, _handshake_detail(cause, where))
            # The connection was made: how it ended is a connection-end word (truncated, reset, bad-record, …),
            # not connect-failed, which means no TCP connection at all.
            ending = classify_ending(exc)
            return report_failure(ending.word, f"connection to {where} ended after the handshake: {ending.detail}")
        _print_session(stream, where)
        if received is not None:
            print(f"received: {received}")
        sys.stdout.flush()  # a reader that left shows here (StdoutUnwritable), not in the interpreter's last flush
    finally:
        with trio.move_on_after(1) as cleanup:
            cleanup.shield = True
            await stream.aclose()
    return EXIT_OK


async def _exchange(stream: TLSStream, args: argparse.Namespace) -> str | None:
    """Send --send's line and read the answer; without --send, wait briefly for a TLS 1.3 rejection alert."""
    import trio

    if args.send is None:
        if stream.tls_version == "TLSv1.3":
            with trio.move_on_after(TLS13_SETTLE_SECONDS):
                data = await stream.receive_some(RECEIVE_BUFFER)
                return data.decode("utf-8", "replace").rstrip("\r\n") if data else None
        return None
    line = (args.send + "\n").encode()
    await stream.send_all(line)
    answer = bytearray()
    # Read until the echo of the whole line (or a newline) arrived, the peer closed, or the time limit.
    with trio.move_on_after(args.timeout):
        while len(answer) < len(line) and b"\n" not in answer:
            chunk = await stream.receive_some(RECEIVE_BUFFER)
            if not chunk:
                break
            answer += chunk
    return answer.decode("utf-8", "replace").rstrip("\r\n")


def _print_session(stream: TLSStream, where: str) -> None:
    print(f"connected to {where}")
    print(f"version: {stream.tls_version}")
    print(f"cipher: {stream.cipher}")
    print(f"sni: {stream.server_name or '(none sent)'}")
    if stream.context.alpn_ids:
        print(f"alpn: {stream.alpn_protocol or '(none agreed)'}")
    try:
        chain = stream.peer_chain
    except Exception as exc:  # noqa: BLE001 - a chain OpenSSL verified but cryptography cannot load (a version
        _print_openssl_chain(stream, exc)  # field of 3): printed as OpenSSL read it, not a traceback
        return
    print(f"peer chain ({len(chain)} certificate{'s' if len(chain) != 1 else ''}, leaf first):")
    for index, cert in enumerate(chain):
        for line in certificate_lines(cert, index):
            print(line)


def _print_openssl_chain(stream: TLSStream, error: Exception) -> None:
    from .._ssl_compat import name_text, peercert_dict

    chain = stream._engine.peer_chain_der  # noqa: SLF001 - the DER OpenSSL holds, whatever cryptography makes of it
    print(f"peer chain ({len(chain)} certificate{'s' if len(chain) != 1 else ''}, leaf first, as OpenSSL read it; "
          f"cryptography cannot load it: {error}):")
    for index, der in enumerate(chain):
        try:
            info = peercert_dict(der)
        except (ValueError, IndexError) as exc:  # a certificate off the verified path, unchecked by OpenSSL
            print(f"  {index} (unreadable: {exc})")
            continue
        print(f"  {index} subject: {name_text(info['subject'])}")
        print(f"    issuer:  {name_text(info['issuer'])}")
        print(f"    valid:   {info['notBefore']} to {info['notAfter']}")


def _handshake_detail(exc: HandshakeError, where: str, timeout: float | None = None) -> str:
    """The error line's detail. A handshake's ``timeout`` names this command's flag, not the API's parameter."""
    from .._advice import timed_out

    detail = timed_out(timeout, "server", "--timeout") if exc.reason == "timeout" and timeout else exc.message
    extras = []
    if exc.depth is not None:
        extras.append(f"depth {exc.depth}")
    if exc.subject:
        extras.append(f"subject {exc.subject}")
    extras.append(f"peer {exc.peer or where}")
    return f"{detail} ({'; '.join(extras)})"


def _os_error_text(exc: OSError) -> str:
    """The system's words for a failed connect. trio's happy eyeballs raises one summary error whose cause groups
    the attempts' own errors: their reasons ("Connection refused") are what the user needs."""
    if exc.strerror:
        return exc.strerror
    attempts = exc.__cause__.exceptions if isinstance(exc.__cause__, BaseExceptionGroup) else ()
    reasons = list(dict.fromkeys(e.strerror for e in attempts if isinstance(e, OSError) and e.strerror))
    summary = str(exc) or type(exc).__name__
    return f"{summary} ({'; '.join(reasons)})" if reasons else summary
