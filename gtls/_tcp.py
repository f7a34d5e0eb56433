"""TCP plumbing shared by the serving loop and the connector: the socket options trio's ``SocketStream`` sets, and a
connect to an IP literal on a bare stdlib socket (the stream makes its ``trio.SocketStream`` only if asked)."""

from __future__ import annotations

import errno
import os
import socket

import trio

from .engine import format_address


def set_tcp_options(sock: socket.socket) -> bool | None:
    """The options trio's SocketStream gives every connection (TCP_NODELAY, TCP_NOTSENT_LOWAT 16 KiB). Set on the
    listening socket, Linux copies them into each accepted socket: no syscall per connection. None: unknown yet."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # not TCP (e.g. a Unix socket): nothing to set, nothing to inherit
        return True
    if hasattr(socket, "TCP_NOTSENT_LOWAT"):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, 2**14)
        except OSError:  # an older kernel: trio does without it too
            pass
    return None


def ip_literal_family(host: object) -> socket.AddressFamily | None:
    """``AF_INET`` or ``AF_INET6`` when ``host`` is an IP address literal, else None (names, and IPv6 literals with a
    scope id, which need the resolver). ``inet_pton`` is one C call; ``ipaddress`` would parse in Python."""
    if not isinstance(host, str):  # bytes would be read as a packed address
        return None
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return family
    return None


async def connect_literal(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
    """A connected non-blocking TCP socket to ``host:port``, an IP literal of ``family``. What trio's socket
    ``connect`` does, minus what a literal does not need: its address resolution, a cancel scope, and the trio socket
    and ``SocketStream`` objects around the connection. A failure raises ``OSError`` with the errno, as trio's does;
    cancelled while connecting, the socket is closed."""
    await trio.lowlevel.checkpoint_if_cancelled()
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        set_tcp_options(sock)
        code = sock.connect_ex((host, port))
        if code == errno.EINPROGRESS:
            await trio.lowlevel.wait_writable(sock)
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, f"Error connecting to {format_address((host, port))}: {os.strerror(code)}")
    except BaseException:
        sock.close()  # no task waits on it any more, so trio holds nothing for it: no notify_closing
        raise
    return sock
