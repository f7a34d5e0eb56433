"""``gtls serve``: a secure port that completes each handshake and echoes bytes until the peer closes.

Settings come from a deployment file (``--config FILE --app NAME [--port-id ID]``), from option flags, or, when
no credential is given, from the per-user demo PKI (``gtls.demo``). This is the benchmarked handshake endpoint,
so the per-connection path is only: handshake (in ``gtls.server``), one log line, read/echo until EOF, close.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import re
import shlex
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from .._printable import printable
from ._common import (
    EXIT_OK,
    LISTEN_FAILED,
    StdoutUnwritable,
    Subcommands,
    UsageError,
    format_host_port,
    parse_host_port,
    report_failure,
    report_stdout_closed,
    report_warnings,
    stderr_line,
    warnings_before_config_errors,
)
from ._flags import (
    CREDENTIAL_OPTIONS,
    add_option_flags,
    add_settings_source,
    given_options,
    require_positive_seconds,
    settings_from_config,
    settings_from_flags,
)

if TYPE_CHECKING:
    from .._idle import IdleReaper
    from ..context import CompiledContext
    from ..demo import DemoFiles
    from ..deployment import Endpoint
    from ..resolve import Resolved
    from ..server import HandshakeEvent, TLSListener
    from ..stream import TLSStream

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9443
#: Bytes asked for per read: large, so a bulk sender costs few reads (TLS records are at most 16 KiB).
ECHO_BUFFER = 65536
#: Like nginx's send/read timeouts: a connection where nothing moves for this long is ended (``idle-timeout``).
DEFAULT_IDLE_TIMEOUT = 60.0


def register(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "serve",
        help="open a secure port: handshake, then echo bytes until the peer closes",
        description="Open a secure port that completes each TLS handshake and echoes bytes until the peer "
        "closes. Without --config or credential flags it serves on 127.0.0.1:9443 with a demo PKI kept in "
        "the per-user data folder ($GTLS_DATA_DIR/demo, $XDG_DATA_HOME/gtls/demo or "
        "~/.local/share/gtls/demo). Prints 'listening on HOST:PORT' on stdout once ready.",
    )
    source = add_settings_source(parser, "server")
    source.add_argument("--listen", metavar="HOST:PORT",
                        help=f"address to listen on (default {DEFAULT_HOST}:{DEFAULT_PORT}, or the port's "
                        "address in the deployment file); port 0 picks a free port")
    add_option_flags(parser, "server")
    runtime = parser.add_argument_group("runtime")
    runtime.add_argument("--handshake-timeout", type=float, default=10.0, metavar="SECONDS",
                         help="time limit for each handshake (default 10)")
    runtime.add_argument("--max-handshakes", type=int, default=None, metavar="N",
                         help="handshakes in flight at most (default: no limit)")
    runtime.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT, metavar="SECONDS",
                         help="end a connection when no data moved in either direction for this long "
                         f"(default {DEFAULT_IDLE_TIMEOUT:g}; logged as 'ended: idle-timeout')")
    runtime.add_argument("--quiet", action="store_true", help="no per-connection log lines on stderr")
    parser.set_defaults(run=run)


@dataclass(frozen=True, slots=True)
class ServePlan:
    resolved: Resolved
    host: str
    port: int
    demo: DemoFiles | None


def run(args: argparse.Namespace) -> int:
    require_positive_seconds(args.handshake_timeout, "--handshake-timeout")
    require_positive_seconds(args.idle_timeout, "--idle-timeout")
    if args.max_handshakes is not None and args.max_handshakes < 1:
        raise UsageError("--max-handshakes must be at least 1")
    from ..context import compile_context

    warnings: list[str] = []
    with warnings_before_config_errors(warnings):
        plan = _plan(args, warnings)
        compiled = compile_context(plan.resolved)  # ConfigError -> exit 2, before any socket is opened
    report_warnings([*warnings, *compiled.located_warnings])

    import trio

    listen_failure: BaseException | None = None
    stdout_failure: BaseException | None = None
    try:
        return trio.run(_serve, compiled, plan, args)
    except* _ListenFailed as group:  # address in use, not permitted, no such address
        listen_failure = _first(group).__cause__
    except* StdoutUnwritable as group:  # "listening on" could not be printed: its reader left, or its file is full
        stdout_failure = _first(group)
    if listen_failure is not None:
        where = format_host_port(plan.host, plan.port)
        return report_failure(LISTEN_FAILED, f"cannot listen on {where}: {listen_failure}")
    return report_stdout_closed(f"standard output could not take the port ({stdout_failure}); stopping")


class _ListenFailed(Exception):
    """Opening the port failed (its ``__cause__`` says why): only this is ``listen-failed``, not any ``OSError``
    that happens while serving."""


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    failure: BaseException = group
    while isinstance(failure, BaseExceptionGroup):  # bounded by the nesting depth
        failure = failure.exceptions[0]
    return failure


def _plan(args: argparse.Namespace, warnings: list[str]) -> ServePlan:
    flags = given_options(args)
    listen = parse_host_port(args.listen, what="--listen") if args.listen else None
    if settings_from_config(args, flags, "server"):
        endpoint = _deployment_port(args.config, args.app, args.port_id, warnings)
        host, port = listen or (endpoint.address or DEFAULT_HOST, endpoint.port)
        return ServePlan(endpoint.resolved, host, port, None)
    host, port = listen or (DEFAULT_HOST, DEFAULT_PORT)
    demo = None
    if not any(option in flags for option in CREDENTIAL_OPTIONS):
        # No credentials given: the embedded demo PKI, combined with any other flags (e.g. --tls-mutual).
        from ..demo import ensure_demo_pki

        demo, created = ensure_demo_pki()
        if created:
            _log_line(f"gtls: created the demo PKI in {demo.directory}")
        flags = {
            # The root too, so the chain is complete and a bare `gtls serve` starts without warnings.
            "certificate": f"{demo.server_chain},{demo.root_ca}",
            "certificate-key": str(demo.server_key),
            "trusted-ca": str(demo.root_ca),
            **flags,
        }
    return ServePlan(settings_from_flags(flags, "server", profile=args.profile, warnings=warnings), host, port, demo)


def _deployment_port(config: str, app: str, port_id: str | None, warnings: list[str]) -> Endpoint:
    from ..deployment import load_deployment
    from ..errors import DeploymentError

    deployment = load_deployment(config, warnings=warnings)
    if port_id is None:
        ids = list(deployment.application(app).ports)
        if not ids:
            raise DeploymentError(f"application {app!r} has no ports: nothing to serve",
                                  object_path=f"applications.{app}", file=str(deployment.path))
        if len(ids) > 1:
            raise DeploymentError(f"application {app!r} has {len(ids)} ports ({', '.join(ids)}); choose one with "
                                  "--port-id", object_path=f"applications.{app}", file=str(deployment.path))
        port_id = ids[0]
    endpoint = deployment.port(app, port_id, warnings=warnings)
    if not endpoint.resolved.secure:
        raise DeploymentError("the port is not secure (its transport has no tls=1); gtls serve serves TLS only",
                              object_path=endpoint.object_path, option="tls", file=str(deployment.path))
    return endpoint


async def _serve(compiled: CompiledContext, plan: ServePlan, args: argparse.Namespace) -> int:
    log = not args.quiet
    # Per-connection outcomes are printed by _log_handshake (or not at all with --quiet); the server's own
    # failure log would only double them. Restored on return: a program that runs the command in-process (the
    # tests do) keeps its warnings.
    server_logger = logging.getLogger("gtls.server")
    level = server_logger.level
    server_logger.setLevel(logging.ERROR)
    try:
        return await _serve_with_signals_held(compiled, plan, args, log)
    finally:
        server_logger.setLevel(level)


async def _serve_with_signals_held(compiled: CompiledContext, plan: ServePlan, args: argparse.Namespace,
                                   log: bool) -> int:
    from .._idle import IdleReaper
    from ..server import serve_tls_over_tcp

    reaper = IdleReaper(args.idle_timeout)
    serve = functools.partial(
        serve_tls_over_tcp, _echo_handler(reaper, log), plan.port, compiled, host=plan.host,
        handshake_timeout=args.handshake_timeout, max_handshakes=args.max_handshakes,
        on_handshake=_log_handshake if log else None,
    )
    # Signals are caught before the port opens, so a signal right after "listening on" still exits cleanly. Once
    # stopping, a second signal (a double Ctrl-C, a supervisor that repeats itself, timeout(1) signalling the whole
    # process group) must not turn the clean stop into exit 130/143: the receiver gives back the handlers it found
    # and then re-sends what is still queued, so what it finds is "ignore".
    found = {signum: signal.signal(signum, signal.SIG_IGN) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        return await _serve_until_signalled(serve, reaper, compiled, plan, log)
    except BaseException:
        # Not stopped by a signal (the port could not open, stdout is gone): the caller's handlers come back, so
        # a process that goes on (the tests run the command in-process) still stops on Ctrl-C. After a signal the
        # process is about to exit, and "ignore" stays until then.
        for signum, handler in found.items():
            signal.signal(signum, handler)
        raise


async def _serve_until_signalled(serve: Callable[..., Awaitable[object]], reaper: IdleReaper,
                                 compiled: CompiledContext, plan: ServePlan, log: bool) -> int:
    import trio

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            try:
                listeners = await nursery.start(serve)
            except OSError as exc:
                raise _ListenFailed from exc
            nursery.start_soon(reaper.run)
            bound = _bound_addresses(listeners, plan.host)
            # One write for all the lines: a reader that takes the first and leaves (| head -1) must not make a later
            # line fail and stop the server.
            sys.stdout.write("".join(f"listening on {format_host_port(host, port)}\n" for host, port in bound))
            sys.stdout.flush()
            host, port = bound[0]
            if plan.demo is not None:
                _print_demo_hints(plan.demo, host, port, compiled.resolved.options.tls_mutual is True)
            async for signum in signals:
                if log:
                    _log_line(f"gtls: stopping on {signal.Signals(signum).name}")
                nursery.cancel_scope.cancel()
                break
    return EXIT_OK


def _echo_handler(reaper: IdleReaper, log: bool) -> Callable[[TLSStream], Awaitable[None]]:
    import trio

    from ..ending import classify_ending
    from ..errors import TLSError

    gone = (trio.BrokenResourceError, trio.ClosedResourceError, TLSError)
    current_time = trio.current_time
    last = reaper.last

    async def echo(stream: TLSStream) -> None:
        """Echo until EOF: one large read and one send per chunk (the benchmarked path). Progress is stamped in the
        idle reaper's table (a clock read and a dict store); the reaper ends the connection when it goes stale."""
        last[stream] = current_time()
        try:  # the methods are looked up per call: bound methods kept in this frame would cost ~100 B while idle
            while data := await stream.receive_some(ECHO_BUFFER):
                last[stream] = current_time()
                await stream.send_all(data)
                last[stream] = current_time()
            # The peer closed: serve_tls_over_tcp answers with close_notify as it closes the stream, at once and
            # without a wait (the socket has room after the peer's close), so no aclose() here.
        except gone as exc:
            # The peer went away, broke the stream or stayed idle (the reaper broke it); serve_tls_over_tcp closes it.
            if log:
                ending = classify_ending(exc)
                _log_ending(stream, ending.word, ending.detail)
        finally:
            last.pop(stream, None)

    return echo


def _log_line(text: str) -> None:
    """A line of the running server's log (a connection, the demo's hints, the stop). Lost, not fatal, when stderr
    cannot take it (its reader left, a full disk): one peer's line must not stop the port for everyone."""
    with contextlib.suppress(OSError, ValueError):
        stderr_line(printable(text))


def _log_ending(stream: TLSStream, word: str, detail: str) -> None:
    """The one line for a connection that ended abnormally after its handshake (a clean close logs nothing)."""
    _log_line(f"connection from {stream.peer_address or '?'}: ended: {word}: {' '.join(detail.split())}")


#: The serving API's parameters a ``timeout`` message names, each set here by the flag of the same name.
_API_SETTINGS: Final = re.compile(r"\b(handshake_timeout|max_handshakes)\b")


def _log_handshake(event: HandshakeEvent) -> None:
    """A handshake's log line; a ``timeout`` names this command's --handshake-timeout and --max-handshakes, not the
    API's parameters."""
    peer = event.peer or "?"
    if event.ok:
        extra = " resumed" if event.session_reused else ""
        client = f" client {event.subject}" if event.subject else ""
        _log_line(f"connection from {peer}: {event.tls_version} {event.cipher}{extra}{client}")
        for warning in event.warnings:
            _log_line(f"gtls: warning: {warning}")
        return
    error = event.error
    message = error.message if error is not None else ""
    if event.reason == "timeout":  # the library's message names its parameters; this command's line, its flags
        message = _API_SETTINGS.sub(lambda match: "--" + match[1].replace("_", "-"), message)
    detail = " ".join(message.split())
    # The certificate at fault (an expired intermediate is depth 1), as gtls connect names it; then the client's own
    # subject when that is another certificate, so the line does not read as if the client's leaf were at fault.
    extras = []
    if error is not None and error.depth is not None:
        extras.append(f"depth {error.depth}")
    if error is not None and error.subject:
        extras.append(f"subject {error.subject}")
        if event.subject and event.subject != error.subject:
            extras.append(f"client {event.subject}")
    elif event.subject:
        extras.append(f"subject {event.subject}")
    where = f" ({'; '.join(extras)})" if extras else ""
    _log_line(f"connection from {peer}: failed: {event.reason}: {detail}{where}")


def _bound_addresses(listeners: list[TLSListener], fallback_host: str) -> list[tuple[str, int]]:
    """Each listening socket's address. A name with several addresses (localhost: ::1 and 127.0.0.1) listens on
    each, and with port 0 each gets a port of its own (as trio's open_tcp_listeners binds them): one line each."""
    bound = []
    for listener in listeners:
        sockname = listener.socket.getsockname()
        bound.append((str(sockname[0]), int(sockname[1])))
    return bound or [(fallback_host, 0)]


def _print_demo_hints(demo: DemoFiles, host: str, port: int, mutual: bool) -> None:
    # The demo certificate is for localhost: point loopback and wildcard listeners there. IPv6 loopback is dialled
    # as such (localhost may resolve to 127.0.0.1 only), naming localhost for SNI and the name check.
    local = ("127.0.0.1", "localhost", "0.0.0.0", "::")
    target = f"localhost:{port}" if host in local else format_host_port(host, port)
    gtls_naming, openssl_naming = (" --tls-target-name localhost", " -servername localhost") if host == "::1" else (
        "", "")
    q = shlex.quote  # paths may hold spaces: the printed commands must run as printed
    # The client's list ends at the root, as the server's does: a chain ending below a self-signed certificate is
    # warned about (the peer must hold the rest), and a printed demo command should run without warnings.
    client_list = q(f"{demo.client_chain},{demo.root_ca}")
    client = gtls_naming + (f" --certificate {client_list} --certificate-key {q(str(demo.client_key))}"
                            if mutual else "")
    # s_client's -cert sends only the first certificate; -cert_chain adds the intermediate.
    openssl_client = (f" -cert {q(str(demo.client_cert))} -cert_chain {q(str(demo.intermediate_ca))} "
                      f"-key {q(str(demo.client_key))}" if mutual else "")
    root = q(str(demo.root_ca))
    lines = [
        f"gtls: serving the demo PKI from {demo.directory} (demo keys: never trust this CA elsewhere)",
        "gtls: connect with:",
        f"  gtls connect {target} --trusted-ca {root} --tls-target-name-check host{client} --send hello",
        f"  openssl s_client -connect {target} -CAfile {root} -verify_hostname localhost{openssl_naming}"
        f"{openssl_client}",
    ]
    for line in lines:
        _log_line(line)
