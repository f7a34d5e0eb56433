"""The client connector: ``open_tls_over_tcp_stream`` and ``connect`` for a deployment connection.

Settings are compiled before any network I/O (configuration errors fail closed). TCP to a host name comes from
trio's ``open_tcp_stream`` (happy eyeballs); an IP literal is dialled directly on a bare socket. The TLS stream then
binds OpenSSL to the connected socket and completes the handshake before returning, so a failure surfaces here as
``HandshakeError`` with its reason word. SNI and the peer-name reference follow spec §7: ``tls-target-name`` when
set, else ``server_hostname``, else the dialled host.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import weakref
from collections.abc import Iterable, Iterator
from typing import Protocol

import trio

from ._tcp import connect_literal, ip_literal_family
from .context import CompiledContext, alpn_ids
from .deployment import Endpoint
from .engine import format_address
from .errors import HandshakeError
from .options import TLSOptions, log_warnings
from .resolve import Resolved
from .stream import TLSStream, check_handshake_timeout, compile_settings

logger = logging.getLogger("gtls.client")


class ClientEndpoint(Protocol):
    """What ``connect`` needs from ``gtls.deployment.Endpoint``."""

    @property
    def address(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def resolved(self) -> Resolved: ...
    @property
    def server_hostname(self) -> str | None: ...


async def open_tls_over_tcp_stream(
    host: str | bytes,
    port: int,
    settings: Resolved | TLSOptions | CompiledContext,
    *,
    server_hostname: str | None = None,
    happy_eyeballs_delay: float | None = 0.25,
    handshake_timeout: float | None = 10.0,
    connect_timeout: float | None = 10.0,
    https_compatible: bool = False,
    alpn_protocols: Iterable[str] | None = None,
) -> TLSStream:
    """Connect to ``host:port`` and complete a TLS handshake (raises ``HandshakeError`` with the reason word).
    ``host`` may be bytes, as trio's ``open_ssl_over_tcp_stream`` allows (ASCII: a name or an address).
    ``connect_timeout`` bounds name resolution and the TCP connect (every address happy eyeballs tries): past it,
    ``TimeoutError``, an ``OSError`` like every other TCP failure; None waits as long as the kernel does (minutes
    for an address that drops packets). ``handshake_timeout`` then bounds the handshake (``HandshakeError``
    ``timeout``). Happy eyeballs races TCP connections only: a handshake that fails or stalls on the first address
    to connect ends the call. ``alpn_protocols``: the application protocols to offer by ALPN
    (``["h2", "http/1.1"]``)."""
    given_as = "server_hostname" if server_hostname is not None else "host"
    return await _open(host, port, settings, server_hostname, given_as, happy_eyeballs_delay, handshake_timeout,
                       connect_timeout, https_compatible, alpn_protocols)


async def _open(
    host: str | bytes,
    port: int,
    settings: Resolved | TLSOptions | CompiledContext,
    server_hostname: str | None,
    given_as: str,
    happy_eyeballs_delay: float | None,
    handshake_timeout: float | None,
    connect_timeout: float | None,
    https_compatible: bool,
    alpn_protocols: Iterable[str] | None,
) -> TLSStream:
    """``open_tls_over_tcp_stream``; ``given_as`` is what the caller called the dialled name (``host``, or
    ``server_hostname`` when given): a name the name check cannot take is refused naming it."""
    check_handshake_timeout(handshake_timeout)
    check_handshake_timeout(connect_timeout, what="connect_timeout")
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, not {type(port).__name__}")
    if not 0 < port <= 65535:
        raise ValueError(f"port {port} is out of range (1 to 65535)")
    if isinstance(host, bytes | bytearray):
        try:
            host = bytes(host).decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(f"host {host!r} is not ASCII: give the name as a str") from None
    context = compile_settings(settings, "client", alpn=alpn_protocols)
    if context is not settings:  # compiled here: its load-time warnings are logged (once each); a caller who
        log_warnings(context.located_warnings)  # compiled the settings itself holds them already
    name = server_hostname if server_hostname is not None else host
    context.client_names(name, given_as=given_as)  # a name the check cannot take fails here, before any connection
    family = ip_literal_family(host)
    if family is None:  # a name: happy eyeballs
        with _connect_deadline(connect_timeout, host, port):
            transport = await trio.open_tcp_stream(host, port, happy_eyeballs_delay=happy_eyeballs_delay)
        try:
            stream = TLSStream(
                transport, context, server_hostname=name, https_compatible=https_compatible,
                handshake_timeout=handshake_timeout,
            )
        except BaseException:
            await trio.aclose_forcefully(transport)
            raise
    else:  # an IP literal: one address, nothing to race; a bare socket, the trio wrappers only if asked for
        with _connect_deadline(connect_timeout, host, port):
            sock = await connect_literal(family, host, port)
        try:
            stream = TLSStream._over_socket(None, sock, context, (host, port), https_compatible, handshake_timeout,
                                            server_hostname=name)
        except BaseException:
            sock.close()
            raise
    try:
        await stream.do_handshake()
    except BaseException as exc:
        try:
            if isinstance(exc, HandshakeError) and stream._rejected_in_handshake():
                # As a refusing server does (_serve.py): closed at once, the socket holding the rest of the server's
                # flight would answer with a reset, and a server still writing (GnuTLS sends its tickets behind its
                # flight) fails on it without reading our alert, so it never learns why.
                await stream._linger()
        finally:
            # Closing the stream (not only its transport) also lets it forget the error it broke with, whose
            # traceback leads back to it: the caller gets the error, and the connection is freed with it.
            await trio.aclose_forcefully(stream)
        raise
    for warning in stream.handshake_warnings:  # spec §5: tls-crl-expired=warn logs on every such handshake
        logger.warning("%s", warning)
    return stream


@contextlib.contextmanager
def _connect_deadline(seconds: float | None, host: str, port: int) -> Iterator[None]:
    """The TCP phase under its own deadline: a ``TimeoutError`` when it passes (no cancel scope when None)."""
    if seconds is None:
        yield
        return
    with trio.move_on_after(seconds) as scope:
        yield
    if scope.cancelled_caught:
        raise TimeoutError(errno.ETIMEDOUT, f"no TCP connection to {format_address((host, port))} within {seconds:g} s")


async def connect(
    endpoint: ClientEndpoint,
    *,
    happy_eyeballs_delay: float | None = 0.25,
    handshake_timeout: float | None = 10.0,
    connect_timeout: float | None = 10.0,
    https_compatible: bool = False,
    alpn_protocols: Iterable[str] | None = None,
) -> TLSStream:
    """Open the deployment connection ``endpoint`` (``Deployment.connection(app, conn_id)``): dial its address and
    port with its resolved settings; its ``server_hostname`` is the reference name unless tls-target-name is set.
    The keywords are ``open_tls_over_tcp_stream``'s.

    The context compiled on an ``Endpoint``'s first connect serves all its later ones (spec §1.1: reused by the
    connection's reconnects), so files changed on disk since are read when the connection is set up again (a new
    ``Deployment.connection(...)``), and a file caught half-written cannot fail a reconnect."""
    settings: Resolved | CompiledContext = endpoint.resolved
    if isinstance(endpoint, Endpoint):
        settings, alpn_protocols = _pinned_context(endpoint, alpn_protocols), None  # it carries its ALPN list
    # The endpoint's server_hostname is its deployment entry's host: an error names that key.
    return await _open(endpoint.address, endpoint.port, settings, endpoint.server_hostname, "host",
                       happy_eyeballs_delay, handshake_timeout, connect_timeout, https_compatible, alpn_protocols)


#: The contexts ``connect`` compiled per ``Endpoint`` object (by identity: an equal Endpoint from a new
#: ``Deployment.connection`` call is a new set-up) and ALPN list; an entry goes with its Endpoint.
_PINNED: dict[int, dict[tuple[bytes, ...], CompiledContext]] = {}


def _pinned_context(endpoint: Endpoint, alpn_protocols: Iterable[str] | None) -> CompiledContext:
    offered = alpn_ids(alpn_protocols)  # validated (a bare "h2" is refused) and read once
    pins = _PINNED.get(id(endpoint))
    if pins is None:
        pins = _PINNED.setdefault(id(endpoint), {})
        weakref.finalize(endpoint, _PINNED.pop, id(endpoint), None)
    pinned = pins.get(offered)
    if pinned is None:
        compiled = compile_settings(endpoint.resolved, "client",
                                    alpn=[name.decode("ascii") for name in offered] if offered else None)
        log_warnings(compiled.located_warnings)
        pinned = pins.setdefault(offered, compiled)
    return pinned


__all__ = ["ClientEndpoint", "connect", "open_tls_over_tcp_stream"]
