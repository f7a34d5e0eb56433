"""The client connector: ``open_tls_over_tcp_stream`` and ``connect`` for a deployment connection.

Settings are compiled before any network I/O (configuration errors fail closed). TCP comes from trio's
``open_tcp_stream`` (happy eyeballs); the TLS stream then binds OpenSSL to the connected socket and completes the
handshake before returning, so a failure surfaces here as ``HandshakeError`` with its reason word. SNI and the
peer-name reference follow spec §7: ``tls-target-name`` when set, else ``server_hostname``, else the dialled host.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Protocol

import trio

from .options import TLSOptions
from .resolve import Resolved
from .stream import TLSStream, compile_settings

if TYPE_CHECKING:
    from .context import CompiledContext


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
    host: str,
    port: int,
    settings: Resolved | TLSOptions | CompiledContext,
    *,
    server_hostname: str | None = None,
    happy_eyeballs_delay: float | None = 0.25,
    handshake_timeout: float | None = 10.0,
    https_compatible: bool = False,
) -> TLSStream:
    """Connect to ``host:port`` and complete a TLS handshake (raises ``HandshakeError`` with the reason word)."""
    context = compile_settings(settings, "client")
    transport = await _open_tcp(host, port, happy_eyeballs_delay)
    stream: TLSStream | None = None
    try:
        stream = TLSStream(
            transport,
            context,
            server_hostname=server_hostname if server_hostname is not None else host,
            https_compatible=https_compatible,
            handshake_timeout=handshake_timeout,
        )
        await stream.do_handshake()
    except BaseException:
        # Closing the stream (not only its transport) also lets it forget the error it broke with, whose
        # traceback leads back to it: the caller gets the error, and the connection is freed with it.
        await trio.aclose_forcefully(stream if stream is not None else transport)
        raise
    return stream


async def _open_tcp(host: str, port: int, happy_eyeballs_delay: float | None) -> trio.SocketStream:
    """TCP to ``host:port``: an IP literal is dialled directly (one address: nothing for happy eyeballs to race,
    and no nursery or resolver round trip); a name goes through trio's ``open_tcp_stream``."""
    try:
        if not isinstance(host, str):  # bytes would be read as a packed address
            raise ValueError(host)
        address = ipaddress.ip_address(host)
    except ValueError:
        return await trio.open_tcp_stream(host, port, happy_eyeballs_delay=happy_eyeballs_delay)
    family = trio.socket.AF_INET6 if address.version == 6 else trio.socket.AF_INET
    sock = trio.socket.socket(family, trio.socket.SOCK_STREAM)
    try:
        await sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


async def connect(
    endpoint: ClientEndpoint,
    *,
    happy_eyeballs_delay: float | None = 0.25,
    handshake_timeout: float | None = 10.0,
) -> TLSStream:
    """Open the deployment connection ``endpoint`` (``Deployment.connection(app, conn_id)``): dial its address and
    port with its resolved settings; its ``server_hostname`` is the reference name unless tls-target-name is set."""
    return await open_tls_over_tcp_stream(
        endpoint.address,
        endpoint.port,
        endpoint.resolved,
        server_hostname=endpoint.server_hostname,
        happy_eyeballs_delay=happy_eyeballs_delay,
        handshake_timeout=handshake_timeout,
    )


__all__ = ["connect", "open_tls_over_tcp_stream"]
