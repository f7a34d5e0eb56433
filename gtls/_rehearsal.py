"""One handshake between a connection's compiled settings and its target port's, over a local socket pair: what the
two ends of a deployment do when they meet, found before either is deployed (``gtls check``).

The ends are gtls's own streams on the socket-bound driver, as in production, so every check a real handshake makes
is made (versions, ciphers, chain, trust, CRLs, the peer-name check, client certificates), and a failure carries the
reason word of spec §10. The refusing end is the one reported: its peer only sees an alert.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import trio

from .context import CompiledContext
from .errors import EOF_IN_HANDSHAKE, PEER_ALERT, TIMEOUT, HandshakeError, Reason, TLSVersionName
from .stream import TLSStream

#: Long enough for a handshake on a loaded machine, short enough for a check (a handshake takes milliseconds).
REHEARSAL_TIMEOUT = 5.0
#: What an end reports when the other refused (besides any error read from the other's alert): the refusal itself
#: is the other end's.
_ECHOES = frozenset({PEER_ALERT, EOF_IN_HANDSHAKE})
_PROBE = b"\0"


@dataclass(frozen=True, slots=True)
class Rehearsal:
    """The outcome: ``ok`` with the version and cipher agreed, or the refusing ``side`` with its reason and message
    (``side`` None when neither end refused in its own words, as after a timeout)."""

    ok: bool
    side: Literal["client", "server"] | None = None
    reason: Reason | None = None
    message: str | None = None
    tls_version: TLSVersionName | None = None
    cipher: str | None = None
    #: The certificate at fault of a refused chain (0: the refused end's peer's leaf), as the refusal names it.
    depth: int | None = None
    subject: str | None = None


def rehearse(client: CompiledContext, server: CompiledContext, server_hostname: str | None,
             timeout: float = REHEARSAL_TIMEOUT) -> Rehearsal:
    """A handshake of ``client`` (dialling ``server_hostname``: the reference name and SNI it would use) with
    ``server``, then one byte each way, which surfaces a TLS 1.3 server's rejection of the client certificate."""
    return trio.run(_rehearse, client, server, server_hostname, timeout)


async def _rehearse(client: CompiledContext, server: CompiledContext, server_hostname: str | None,
                    timeout: float) -> Rehearsal:
    client_socket, server_socket = trio.socket.socketpair()
    streams: list[TLSStream] = []
    failures: dict[Literal["client", "server"], HandshakeError] = {}

    async def end(side: Literal["client", "server"], stream: TLSStream) -> None:
        try:
            await stream.do_handshake()
            if side == "client":
                await stream.send_all(_PROBE)
                await stream.receive_some(1)
            else:
                await stream.send_all(await stream.receive_some(1))
            return
        except HandshakeError as exc:
            failures[side] = exc
        except trio.BrokenResourceError as exc:
            cause = exc.__cause__
            failures[side] = cause if isinstance(cause, HandshakeError) else HandshakeError(EOF_IN_HANDSHAKE, str(exc))
        # Closed now, so the other end meets the EOF at once: an end that refused without an alert (the name check
        # run after the handshake, where OpenSSL cannot run it) left it waiting for the probe until the timeout.
        await trio.aclose_forcefully(stream)

    try:
        streams.append(TLSStream(trio.SocketStream(client_socket), client, server_hostname=server_hostname))
        streams.append(TLSStream(trio.SocketStream(server_socket), server))
        dialling, serving = streams
        with trio.move_on_after(timeout) as waited:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(end, "client", dialling)
                nursery.start_soon(end, "server", serving)
        if waited.cancelled_caught:
            found = _refused(failures)
            return found or Rehearsal(False, None, TIMEOUT, f"no outcome within {timeout:g} s")
        return _outcome(failures, dialling)
    finally:
        for stream in streams:
            await trio.aclose_forcefully(stream)
        client_socket.close()  # no-ops once a stream closed them; here for a stream that was never made
        server_socket.close()


def _outcome(failures: dict[Literal["client", "server"], HandshakeError], dialling: TLSStream) -> Rehearsal:
    if not failures:
        return Rehearsal(True, tls_version=dialling.tls_version, cipher=dialling.cipher)
    found = _refused(failures)
    if found is not None:
        return found
    side, exc = next(iter(failures.items()))
    return Rehearsal(False, None, exc.reason, f"{side}: {exc.message}")


def _refused(failures: dict[Literal["client", "server"], HandshakeError]) -> Rehearsal | None:
    """The end that refused in its own words (not an alert read from the other, nor the other's leaving)."""
    for side in ("client", "server"):
        exc = failures.get(side)
        if exc is not None and exc.alert is None and exc.reason not in _ECHOES:
            return Rehearsal(False, side, exc.reason, exc.message, depth=exc.depth, subject=exc.subject)
    return None
