"""gtls's side of the interop tests against TLS stacks run as subprocesses (``tests/test_interop_node.py``,
``tests/test_interop_java.py``, ``tests/test_interop_gnutls.py``, ``tests/test_interop_go.py``): a gtls server that
records its handshake events and how its handlers ended, a gtls client, options with a CRL revoking the peer's leaf,
handlers, a checksummed full-duplex exchange and a client's outcome in one word; and the runner of a peer that takes
one JSON argument and prints one JSON event per line (the node, Java and Go peers)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import pytest
import trio

from gtls import (
    HalfCloseUnsupported,
    HandshakeError,
    HandshakeEvent,
    TLSOptions,
    TLSStream,
    classify_ending,
    open_tls_over_tcp_stream,
    serve_tls_over_tcp,
)
from tests.peers import LOCALHOST, PKI, SEC_PROTOCOL, settled

Handler = Callable[[TLSStream, "Served"], Awaitable[None]]
#: A run of a JSON-event peer (``PeerRun`` or a peer's own subclass).
RunT = TypeVar("RunT", bound="PeerRun")


@dataclass
class Served:
    port: int = 0
    events: list[HandshakeEvent] = field(default_factory=list)
    ends: list[str] = field(default_factory=list)  # connection-end words of handlers that broke
    received: list[bytes] = field(default_factory=list)
    digests: list[tuple[str, str]] = field(default_factory=list)


async def echo(stream: TLSStream, served: Served) -> None:
    async for data in stream:
        await stream.send_all(data)


async def read_all(stream: TLSStream, served: Served) -> None:
    data = b""
    while chunk := await stream.receive_some():
        data += chunk
    served.received.append(data)


async def answer_after_end(stream: TLSStream, served: Served) -> None:
    """Read up to the peer's end (its half-close), then answer ``reply:`` and what it sent first."""
    await read_all(stream, served)
    await stream.send_all(b"reply:" + served.received[0])


async def sends_eof_first(stream: TLSStream, served: Served) -> None:
    """Send ``bye``, half-close (TLS 1.3 ``send_eof``), then read the peer's answer up to its end."""
    await stream.send_all(b"bye\n")
    await stream.send_eof()
    await read_all(stream, served)


def noting_alpn(seen: list[str | None]) -> Handler:
    """An echo handler that first notes the application protocol each connection agreed (None: none)."""

    async def note(stream: TLSStream, served: Served) -> None:
        seen.append(stream.alpn_protocol)
        await echo(stream, served)

    return note


@asynccontextmanager
async def gtls_server(options: TLSOptions, handler: Handler = echo, *,
                      alpn: list[str] | None = None) -> AsyncIterator[Served]:
    served = Served()

    async def run(stream: TLSStream) -> None:
        try:
            await handler(stream, served)
        except trio.BrokenResourceError as exc:
            served.ends.append(classify_ending(exc).word)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(serve_tls_over_tcp, run, 0, options, host=LOCALHOST,
                                                on_handshake=served.events.append, alpn_protocols=alpn))
        served.port = listeners[0].socket.getsockname()[1]
        yield served
        await settled()  # the last handshake's event and the handler's end are recorded
        nursery.cancel_scope.cancel()


def server_options(pki: PKI, version: str, mutual: bool = False) -> TLSOptions:
    return pki.server_options(sec_protocol=SEC_PROTOCOL[version], tls_mutual="1" if mutual else "0")


async def gtls_client(pki: PKI, version: str, port: int, *, mutual: bool = False, **extra: object) -> TLSStream:
    options = pki.client_options(with_cert=mutual, sec_protocol=SEC_PROTOCOL[version], tls_target_name_check="host",
                                 **extra)
    return await open_client(options, port)


def crl_options(pki: PKI, version: str, revoked: str, *, server: bool) -> TLSOptions:
    """gtls's options with a CRL, by the intermediate, revoking the peer's leaf (file name ``revoked``): the
    client's for a gtls server (mutual TLS), the server's for a gtls client."""
    crl = pki.intermediate.crl(revoked=[pki.client if server else pki.server]).write(pki.dir / f"{revoked}.crl")
    if server:
        return pki.server_options(sec_protocol=SEC_PROTOCOL[version], tls_mutual="1", tls_crl=str(crl))
    return pki.client_options(sec_protocol=SEC_PROTOCOL[version], tls_target_name_check="host", tls_crl=str(crl))


async def open_client(options: TLSOptions, port: int, name: str = "localhost") -> TLSStream:
    return await open_tls_over_tcp_stream(LOCALHOST, port, options, server_hostname=name)


async def exchange(stream: TLSStream, size: int) -> tuple[str, str]:
    """Send ``size`` random bytes in random chunks while reading ``size`` bytes: (sha256 sent, sha256 received)."""
    sent, got = hashlib.sha256(), hashlib.sha256()

    async def send() -> None:
        left = size
        while left:
            chunk = os.urandom(min(left, random.randint(1, 65536)))
            sent.update(chunk)
            left -= len(chunk)
            await stream.send_all(chunk)

    async def receive() -> None:
        count = 0
        while count < size:
            data = await stream.receive_some()
            assert data, f"EOF after {count} of {size} bytes"
            got.update(data)
            count += len(data)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        nursery.start_soon(receive)
    return sent.hexdigest(), got.hexdigest()


async def client_outcome(connect: Callable[[], Awaitable[TLSStream]], *, send: bool = True) -> str:
    """``ok`` once a line went there and back (``send``) or, without sending, the first read returned; else the
    handshake reason or connection-end word. Refusal tests do not send: a write that races the peer's close turns
    its FIN into a reset."""
    try:
        stream = await connect()
    except HandshakeError as exc:
        return exc.reason
    async with stream:
        try:
            if send:
                await stream.send_all(b"hello\n")
                assert await stream.receive_some() == b"hello\n"
            else:
                await stream.receive_some()
        except trio.BrokenResourceError as exc:
            return classify_ending(exc).word
    return "ok"


# --- client scenarios every server peer runs (the peer's server, started by the caller, is ``serving``) ---


async def reads_close_or_abort(serving: AbstractAsyncContextManager[Any], pki: PKI, version: str,
                               word: str | None) -> None:
    """The peer's server sends ``hello`` then ends cleanly (``word`` None: gtls reads the end) or aborts (gtls's
    ending word ``word``)."""
    async with serving as run, await gtls_client(pki, version, run.port) as stream:
        assert await stream.receive_some() == b"hello\n"
        if word is None:
            assert await stream.receive_some() == b""
        else:
            with pytest.raises(trio.BrokenResourceError) as caught:
                await stream.receive_some()
            assert classify_ending(caught.value).word == word
    assert run.errors == []


async def send_eof_is_answered(serving: AbstractAsyncContextManager[Any], pki: PKI) -> None:
    """TLS 1.3: the peer's server reads gtls's ``send_eof()`` as the end of its input and answers after it."""
    async with serving as run, await gtls_client(pki, "1.3", run.port) as stream:
        await stream.send_all(b"request\n")
        await stream.send_eof()
        assert await stream.receive_some() == b"answer\n"
        assert await stream.receive_some() == b""
    assert run.texts == ["request\n"] and run.errors == []


async def send_eof_is_refused_on_tls12(serving: AbstractAsyncContextManager[Any], pki: PKI) -> None:
    """TLS 1.2 has no half-close: ``send_eof()`` raises and leaves the stream as it was (the peer echoes)."""
    async with serving as run, await gtls_client(pki, "1.2", run.port) as stream:
        with pytest.raises(HalfCloseUnsupported):
            await stream.send_eof()
        await stream.send_all(b"still\n")
        assert await stream.receive_some() == b"still\n"
    assert run.errors == []


@dataclass
class PeerRun:
    """What a JSON-event peer printed: its events in order, and the port a server listens on."""

    events: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["event"] == kind]

    @property
    def texts(self) -> list[str]:
        return [event["text"] for event in self.of("data")]


@asynccontextmanager
async def json_peer(command: Sequence[str], cfg: dict[str, Any], run: RunT, step: float) -> AsyncIterator[RunT]:
    """Run ``command`` with ``cfg`` as its last argument (JSON), recording its events in ``run``. Inside the block a
    server's ``port`` is known; leaving it waits (at most ``step`` s in all) for the peer to finish, so every event is
    in. A line that is not JSON (the runtime's own message about an uncaught exception) or the peer's own watchdog
    firing fails the test."""
    listening = trio.Event()
    process = await trio.lowlevel.open_process([*command, json.dumps(cfg)], stdout=subprocess.PIPE,
                                               stderr=subprocess.STDOUT)

    async def pump() -> None:
        assert process.stdout is not None
        buffer = b""
        while chunk := await process.stdout.receive_some():
            *lines, buffer = (buffer + chunk).split(b"\n")
            for line in lines:
                try:
                    event = json.loads(line)
                except ValueError:
                    event = {"event": "output", "text": line.decode(errors="replace")}
                run.events.append(event)
                if event["event"] == "listening":
                    run.port = event["port"]
                    listening.set()
        listening.set()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump)
            with trio.fail_after(step):
                if cfg["role"] == "server":
                    await listening.wait()
                    assert run.port, run.events
                yield run
                await process.wait()
    finally:
        await reap(process)
    assert not run.of("watchdog") and not run.of("output"), run.events


async def reap(process: trio.Process) -> None:
    """End a peer's process: killed if it still runs, waited for (also in a cancelled scope), its pipes closed."""
    if process.returncode is None:
        process.kill()
    with trio.CancelScope(shield=True):
        await process.wait()
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                await pipe.aclose()
