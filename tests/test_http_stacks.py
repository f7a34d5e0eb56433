"""gtls under real HTTP stacks (audit 59), over 127.0.0.1.

Server side: an HTTP/1.1 server written with h11 (the structure of h11's own trio example) on
``gtls.serve_tls_over_tcp``, against curl (OpenSSL 3.0), wget (GnuTLS: a second TLS stack), Python's
``http.client``/``urllib.request`` and ``openssl s_client``. Client side: gtls's connector speaking h11 to
``openssl s_server -WWW``/``-rev`` and to Python's ``http.server`` wrapped with ``ssl``, in subprocesses.

Every test is bounded by ``trio.fail_after`` (and its subprocesses by it or their own timeout); the curl and wget
tests skip, naming the command, where it is not installed."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import socket
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest
import trio

import gtls
from tests.peers import LOCALHOST, OPENSSL, PKI, _server_process, settled, write_pki

h11 = pytest.importorskip("h11")

CURL = shutil.which("curl")
WGET = shutil.which("wget")
needs_curl = pytest.mark.skipif(CURL is None, reason="the curl command is not installed")
needs_wget = pytest.mark.skipif(WGET is None, reason="the wget command is not installed")
#: Bound of one client command (curl, wget, s_client) and of each test's trio part.
STEP = 20.0
MIB16 = 16 * 1024 * 1024
CHUNK = 65536
_BLOCK = hashlib.sha256(b"gtls http").digest() * (CHUNK // 32)  # 64 KiB of a fixed pattern


def pattern(size: int) -> bytes:
    """``size`` bytes of a fixed pattern, the body of ``GET /bytes/SIZE``."""
    return (_BLOCK * (size // CHUNK + 1))[:size]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return write_pki(tmp_path_factory.mktemp("http-pki"), server_dns=("localhost",))


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """A second PKI: its client certificate and its CA are strangers to ``pki``."""
    return write_pki(tmp_path_factory.mktemp("http-other-pki"), server_dns=("localhost",))


# --- the h11 server -----------------------------------------------------------------------------------------------


@dataclass
class HttpServer:
    """What the h11 server saw: handshake events, one ending per connection, the requests with their bodies."""

    port: int = 0
    events: list[gtls.HandshakeEvent] = field(default_factory=list)
    endings: list[str] = field(default_factory=list)
    requests: list[tuple[str, str, int, str]] = field(default_factory=list)  # method, target, body size, sha256
    alpn: list[str | None] = field(default_factory=list)


async def next_event(stream: gtls.TLSStream, conn: h11.Connection) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await stream.receive_some(CHUNK))


async def send(stream: gtls.TLSStream, conn: h11.Connection, event: object) -> None:
    data = conn.send(event)
    if data:
        await stream.send_all(data)


async def respond(server: HttpServer, stream: gtls.TLSStream, conn: h11.Connection, request: h11.Request) -> None:
    """Read the request's body, then answer: ``/bytes/N`` N bytes of ``pattern``, ``/sleep/S`` after S seconds,
    anything else one line naming the method, the target, the body's size and its SHA-256."""
    digest = hashlib.sha256()
    size = 0
    while type(event := await next_event(stream, conn)) is h11.Data:
        digest.update(event.data)
        size += len(event.data)
    assert type(event) is h11.EndOfMessage, event
    method, target = request.method.decode(), request.target.decode()
    server.requests.append((method, target, size, digest.hexdigest()))
    if target.startswith("/bytes/"):
        body = pattern(int(target.removeprefix("/bytes/")))
    elif target.startswith("/sleep/"):
        await trio.sleep(min(float(target.removeprefix("/sleep/")), 5.0))
        body = b"slept\n"
    else:
        body = f"{method} {target} {size} {digest.hexdigest()}\n".encode()
    headers = [("content-length", str(len(body))), ("x-sha256", sha256(body))]
    await send(stream, conn, h11.Response(status_code=200, headers=headers))
    for start in range(0, len(body), CHUNK):
        await send(stream, conn, h11.Data(data=body[start:start + CHUNK]))
    await send(stream, conn, h11.EndOfMessage())


async def close_http(stream: gtls.TLSStream) -> str:
    """h11's example ending of a connection that must close: half-close, then wait briefly for the client's end.
    ``send_eof`` needs TLS 1.3; on TLS 1.2 it raises ``HalfCloseUnsupported`` (a ``BrokenResourceError``, which the
    example catches) and the serving loop's close sends ``close_notify`` instead."""
    try:
        await stream.send_eof()
    except gtls.HalfCloseUnsupported:
        return "no-half-close"
    with trio.move_on_after(2.0):
        try:
            while await stream.receive_some(CHUNK):
                pass
        except trio.BrokenResourceError as exc:  # as h11's example: the answer is out, the client left rudely
            return f"after-send-eof: {gtls.classify_ending(exc).word}"
        return "eof-after-send-eof"
    return "client-stayed"


async def serve_http(server: HttpServer, stream: gtls.TLSStream) -> None:
    """One connection of the h11 server; its ending is recorded, a stream failure re-raised for the serving loop
    (which logs it and goes on: what a handler that does not catch it gets)."""
    conn = h11.Connection(h11.SERVER)
    server.alpn.append(stream.alpn_protocol)
    try:
        while True:
            event = await next_event(stream, conn)
            if type(event) is h11.ConnectionClosed:
                server.endings.append("eof")
                return
            assert type(event) is h11.Request, event
            await respond(server, stream, conn, event)
            if conn.our_state is h11.MUST_CLOSE:
                server.endings.append(await close_http(stream))
                return
            conn.start_next_cycle()
    except h11.RemoteProtocolError as exc:  # a request cut short by a clean close, or not HTTP/1.1 (h2's preface)
        server.endings.append(f"h11: {exc}")
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        server.endings.append(gtls.classify_ending(exc).word)
        raise


@asynccontextmanager
async def http_server(
    pki: PKI, *, alpn: Sequence[str] = ("http/1.1",), https_compatible: bool = False, **options: object
) -> AsyncIterator[HttpServer]:
    server = HttpServer()
    async with trio.open_nursery() as nursery:
        serve = partial(gtls.serve_tls_over_tcp, partial(serve_http, server), 0, pki.server_options(**options),
                        host=LOCALHOST, alpn_protocols=list(alpn), https_compatible=https_compatible,
                        on_handshake=server.events.append)
        listeners = await nursery.start(serve)
        server.port = listeners[0].socket.getsockname()[1]
        yield server
        nursery.cancel_scope.cancel()


# --- clients ------------------------------------------------------------------------------------------------------


@dataclass
class Run:
    returncode: int
    stdout: bytes
    stderr: str


async def run(*cmd: str | Path, stdin: bytes = b"") -> Run:
    with trio.fail_after(STEP):
        done = await trio.run_process([str(part) for part in cmd], stdin=stdin, capture_stdout=True,
                                      capture_stderr=True, check=False)
    return Run(done.returncode, done.stdout, done.stderr.decode(errors="replace"))


def curl_args(pki: PKI, port: int, *args: str | Path) -> list[str | Path]:
    """curl trusting ``pki``'s root, ``localhost`` pinned to 127.0.0.1 (no ::1 attempt first)."""
    assert CURL is not None
    return [CURL, "-sS", "--cacert", pki.ca_file, "--resolve", f"localhost:{port}:{LOCALHOST}", *args]


async def curl(pki: PKI, port: int, *args: str | Path) -> Run:
    return await run(*curl_args(pki, port, *args))


def pin(version: str) -> tuple[str, ...]:
    """curl flags for exactly TLS ``version``."""
    return f"--tlsv{version}", "--tls-max", version


def url(port: int, path: str, host: str = "localhost") -> str:
    return f"https://{host}:{port}{path}"


def line(method: str, target: str, body: bytes = b"") -> bytes:
    """The h11 server's answer to a request that is not ``/bytes`` or ``/sleep``."""
    return f"{method} {target} {len(body)} {sha256(body)}\n".encode()


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Until ``predicate()`` holds (a refused connection's linger ends when its peer has gone), at most ``timeout``."""
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def task_count() -> int:
    """Every task of this trio run."""
    count = 0
    pending = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        count += 1
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return count


# --- curl ---------------------------------------------------------------------------------------------------------


@needs_curl
@pytest.mark.parametrize("version", ["1.2", "1.3"])
async def test_curl_keeps_one_connection_for_several_requests(pki: PKI, version: str) -> None:
    """Keep-alive: three requests (GET, POST, GET) ride one TLS connection, one handshake; curl says nothing on
    stderr (no complaint about how the server ended the connection)."""
    with trio.fail_after(STEP):
        async with http_server(pki) as server:
            port = server.port
            common = [*curl_args(pki, port, *pin(version), "--http1.1", "-w", "|%{num_connects}|%{http_version}\n")]
            done = await run(*common, url(port, "/a"), "--next", *common[1:], "-d", "hello", url(port, "/b"),
                             "--next", *common[1:], url(port, "/c"))
            await settled()
        assert done.returncode == 0 and done.stderr == "", done
        assert done.stdout == b"".join([line("GET", "/a"), b"|1|1.1\n", line("POST", "/b", b"hello"), b"|0|1.1\n",
                                        line("GET", "/c"), b"|0|1.1\n"])
        assert [(e.ok, e.tls_version) for e in server.events] == [(True, f"TLSv{version}")]
        assert server.endings == ["eof"]  # curl ends with close_notify: a clean end at a message boundary
        assert server.alpn == ["http/1.1"]


@needs_curl
async def test_curl_alpn_negotiation_and_fallback(pki: PKI) -> None:
    """ALPN as curl negotiates it: ``--http2`` against a port accepting only http/1.1 falls back to HTTP/1.1;
    against ``["h2", "http/1.1"]`` curl gets h2 by default (the h11 handler refuses its preface and the server goes
    on) and http/1.1 with ``--http1.1``."""
    with trio.fail_after(STEP):
        async with http_server(pki) as server:
            done = await curl(pki, server.port, "--http2", "-w", "%{http_version}", url(server.port, "/h"))
            await settled()
        assert done.returncode == 0, done
        assert done.stdout == line("GET", "/h") + b"1.1"
        assert server.alpn == ["http/1.1"]

        async with http_server(pki, alpn=("h2", "http/1.1")) as server:
            http11 = await curl(pki, server.port, "--http1.1", "-w", "%{http_version}", url(server.port, "/h"))
            h2 = await curl(pki, server.port, url(server.port, "/h"))
            await settled()
        assert http11.returncode == 0 and http11.stdout == line("GET", "/h") + b"1.1", http11
        assert h2.returncode != 0  # an HTTP/2 client on an HTTP/1.1 handler: the service's choice, not TLS
        assert server.alpn == ["http/1.1", "h2"]
        assert server.endings[0] == "eof" and server.endings[1].startswith("h11: ")
        assert all(event.ok for event in server.events)


@needs_curl
async def test_curl_16_mib_upload_and_download_are_intact(pki: PKI, tmp_path: Path) -> None:
    """16 MiB each way through h11 on gtls, checked by SHA-256 on both sides."""
    upload = tmp_path / "up.bin"
    upload.write_bytes(os.urandom(MIB16))
    with trio.fail_after(STEP):
        async with http_server(pki) as server:
            port = server.port
            down = await curl(pki, port, "-D", tmp_path / "headers", "-o", tmp_path / "down.bin",
                              url(port, f"/bytes/{MIB16}"))
            up = await curl(pki, port, "--data-binary", f"@{upload}", url(port, "/up"))
            await settled()
    assert down.returncode == 0 and up.returncode == 0, (down, up)
    received = (tmp_path / "down.bin").read_bytes()
    assert len(received) == MIB16 and received == pattern(MIB16)
    assert f"x-sha256: {sha256(received)}" in (tmp_path / "headers").read_text()
    assert up.stdout == line("POST", "/up", upload.read_bytes())
    assert server.requests[-1] == ("POST", "/up", MIB16, sha256(upload.read_bytes()))


@needs_curl
async def test_curl_aborting_mid_body_leaves_the_server_serving(pki: PKI, caplog: pytest.LogCaptureFixture) -> None:
    """A client that gives up mid-download (``--max-time`` while rate-limited: it closes with our data unread, so
    the kernel resets) and one that gives up mid-upload (curl sends close_notify first: a clean TLS end, which h11
    reports as a body cut short). Neither takes the server down, the reset is logged once with its word, and the
    descriptors and tasks come back to what the idle server had."""
    caplog.set_level(logging.WARNING, logger="gtls.server")
    with trio.fail_after(STEP):
        async with http_server(pki) as server:
            port = server.port
            warm = await curl(pki, port, url(port, "/warm"))
            await settled()
            fds, tasks = open_fds(), task_count()
            down = await curl(pki, port, "--limit-rate", "200k", "--max-time", "0.5", "-o", os.devnull,
                              url(port, f"/bytes/{MIB16}"))
            up = await run(*curl_args(pki, port, "-H", "Content-Length: 1000000", "-H", "Expect:",
                                      "--data-binary", "@-", "--max-time", "0.5", url(port, "/up")),
                           stdin=b"x" * 100_000)
            after = await curl(pki, port, url(port, "/after"))
            await settled()
            await until(lambda: (open_fds(), task_count()) == (fds, tasks))
            assert (open_fds(), task_count()) == (fds, tasks)
    assert warm.returncode == 0 and after.returncode == 0 and after.stdout == line("GET", "/after")
    assert down.returncode == 28 and up.returncode in (26, 28), (down, up)  # timeouts (26: read error on stdin)
    cut_download = [word for word in server.endings if word in ("reset", "truncated")]
    cut_upload = [word for word in server.endings if word.startswith("h11: ")]
    assert len(server.endings) == 4 and len(cut_download) == 1, server.endings
    assert cut_upload == ["h11: peer closed connection without sending complete message body (received 100000 bytes, "
                          "expected 1000000)"]
    logged = [r.getMessage() for r in caplog.records if r.name == "gtls.server"]
    assert len(logged) == 1 and logged[0].startswith(f"connection ended: {cut_download[0]} peer=127.0.0.1:")


@needs_curl
@pytest.mark.parametrize("version", ["1.2", "1.3"])
async def test_curl_http10_connection_close(pki: PKI, version: str) -> None:
    """HTTP/1.0 (``Connection: close``): in TLS 1.3 the handler half-closes (``send_eof``) and curl answers with its
    own close_notify; in TLS 1.2 ``send_eof`` refuses and the serving loop's close sends close_notify. curl takes
    both silently."""
    with trio.fail_after(STEP):
        async with http_server(pki) as server:
            done = await curl(pki, server.port, "--http1.0", *pin(version),
                              url(server.port, "/old"))
            await settled()
    assert done.returncode == 0 and done.stderr == "" and done.stdout == line("GET", "/old"), done
    assert server.endings == ["eof-after-send-eof" if version == "1.3" else "no-half-close"]


@needs_curl
@pytest.mark.parametrize("version", ["1.2", "1.3"])
async def test_curl_mutual_tls(pki: PKI, other_pki: PKI, version: str) -> None:
    """``--cert/--key`` on a ``tls-mutual=1`` port; without a certificate and with one from another CA curl fails
    and prints the server's alert (in TLS 1.3 on its first read, as the server judges after the client finished),
    and the server's events carry the right reason and the client's subject."""
    with trio.fail_after(STEP):
        async with http_server(pki, tls_mutual="1") as server:
            port, tls = server.port, pin(version)
            ok = await curl(pki, port, *tls, "--cert", pki.client_cert, "--key", pki.client_key, url(port, "/m"))
            none = await curl(pki, port, *tls, url(port, "/m"))
            foreign = await curl(pki, port, *tls, "--cert", other_pki.client_cert, "--key", other_pki.client_key,
                                 url(port, "/m"))
            await settled()
    assert ok.returncode == 0 and ok.stdout == line("GET", "/m"), ok
    if version == "1.3":
        assert none.returncode == 56 and "alert certificate required" in none.stderr, none
        assert foreign.returncode == 56 and "alert unknown ca" in foreign.stderr, foreign
    else:
        assert none.returncode == 35 and "alert handshake failure" in none.stderr, none
        assert foreign.returncode == 35 and "alert unknown ca" in foreign.stderr, foreign
    assert [(e.ok, e.reason, e.subject) for e in server.events] == [
        (True, None, "CN=client.test"), (False, "no-peer-certificate", None), (False, "untrusted", "CN=client.test")]


@needs_curl
async def test_curl_name_check_with_resolve(pki: PKI) -> None:
    """curl checks the server's name: ``--resolve localhost:…`` passes, another name or the bare address fails
    (exit 60, curl's words). curl checks after the handshake and ends with close_notify, so the server records a
    successful handshake and a clean, empty connection: a service cannot see that rejection."""
    with trio.fail_after(STEP):
        async with http_server(pki) as server:
            port = server.port
            good = await curl(pki, port, url(port, "/n"))
            other = await curl(pki, port, "--resolve", f"other.test:{port}:{LOCALHOST}", url(port, "/n", "other.test"))
            bare = await curl(pki, port, url(port, "/n", LOCALHOST))
            await settled()
    assert good.returncode == 0 and good.stdout == line("GET", "/n"), good
    assert other.returncode == 60 and "no alternative certificate subject name matches target host name 'other.test'" \
        in other.stderr, other
    assert bare.returncode == 60 and "'127.0.0.1'" in bare.stderr, bare
    assert [e.ok for e in server.events] == [True, True, True]
    assert server.endings == ["eof", "eof", "eof"] and len(server.requests) == 1


@needs_curl
async def test_slow_handler_blocks_no_one(pki: PKI) -> None:
    """A handler sleeping 3 s on one connection while six other curl requests come and go, and are done first."""
    with trio.fail_after(STEP):
        async with http_server(pki) as server:
            port = server.port
            async with trio.open_nursery() as nursery:
                slow: list[Run] = []

                async def sleeper() -> None:
                    slow.append(await curl(pki, port, url(port, "/sleep/3")))

                nursery.start_soon(sleeper)
                while not server.requests:
                    await trio.sleep(0.01)
                started = trio.current_time()
                quick = [await curl(pki, port, url(port, f"/q{i}")) for i in range(6)]
                elapsed = trio.current_time() - started
                assert not slow
            await settled()
    assert all(done.returncode == 0 for done in quick) and slow[0].stdout == b"slept\n"
    assert elapsed < 2.5


def http10_get(ca: Path, port: int, target: str) -> tuple[bytes, str]:
    """A bare HTTP/1.0 GET over Python's ``ssl`` that reports how the connection ended: ``close_notify`` or not
    (``suppress_ragged_eofs=False``; ``http.client`` and curl 7.88 accept either as the end of such a body)."""
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection((LOCALHOST, port), timeout=10) as raw, context.wrap_socket(
        raw, server_hostname="localhost", suppress_ragged_eofs=False
    ) as tls:
        tls.sendall(f"GET {target} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
        received = b""
        try:
            while chunk := tls.recv(CHUNK):
                received += chunk
        except ssl.SSLEOFError:
            return received, "no close_notify"
        return received, "close_notify"


@pytest.mark.parametrize("https_compatible", [False, True])
async def test_a_cut_close_delimited_body_ends_without_close_notify(pki: PKI, https_compatible: bool) -> None:
    """HTTP/1.0 without Content-Length: the body ends where the connection does, so only close_notify tells a
    complete body from a cut one. A handler that raises mid-body ends its connection without close_notify (and,
    being the handler's own bug, stops the server, as in trio); with ``https_compatible=True``, which never sends
    close_notify, a complete body ends the same way, so such a server must not send close-delimited bodies (h11
    sends them only to HTTP/1.0 clients of answers without Content-Length)."""

    async def handler(stream: gtls.TLSStream) -> None:
        conn = h11.Connection(h11.SERVER)
        request = await next_event(stream, conn)
        assert type(request) is h11.Request and type(await next_event(stream, conn)) is h11.EndOfMessage
        await send(stream, conn, h11.Response(status_code=200, headers=[]))  # close-delimited for HTTP/1.0
        await send(stream, conn, h11.Data(data=b"first half\n"))
        if request.target == b"/cut":
            raise RuntimeError("handler failed mid-body")
        await send(stream, conn, h11.Data(data=b"second half\n"))
        await send(stream, conn, h11.EndOfMessage())

    failures: list[BaseException] = []

    async def serve(task_status: trio.TaskStatus[list[gtls.TLSListener]]) -> None:
        try:
            await gtls.serve_tls_over_tcp(handler, 0, pki.server_options(), host=LOCALHOST,
                                          https_compatible=https_compatible, task_status=task_status)
        except* RuntimeError as group:
            failures.extend(group.exceptions)

    with trio.fail_after(STEP):
        async with trio.open_nursery() as nursery:
            port = (await nursery.start(serve))[0].socket.getsockname()[1]
            whole = await trio.to_thread.run_sync(http10_get, pki.ca_file, port, "/whole")
            cut = await trio.to_thread.run_sync(http10_get, pki.ca_file, port, "/cut")
    assert [str(exc) for exc in failures] == ["handler failed mid-body"]
    assert whole[0].endswith(b"\r\n\r\nfirst half\nsecond half\n") and cut[0].endswith(b"\r\n\r\nfirst half\n")
    assert (whole[1], cut[1]) == ("no close_notify" if https_compatible else "close_notify", "no close_notify")


def shut_write_then_read(ca: Path, port: int, payload: bytes, version: str) -> tuple[bytes, str]:
    """Send ``payload``, shut the write side with a bare TCP FIN (no close_notify, as a plain-TCP client's
    ``shutdown(SHUT_WR)`` under TLS), then read until the server closes; how the read ended."""
    context = ssl.create_default_context(cafile=str(ca))
    context.maximum_version = context.minimum_version = getattr(ssl.TLSVersion, f"TLSv1_{version[-1]}")
    with socket.create_connection((LOCALHOST, port), timeout=10) as raw, context.wrap_socket(
        raw, server_hostname="localhost"
    ) as tls:
        tls.sendall(payload)
        raw_view = socket.socket(fileno=os.dup(tls.fileno()))
        raw_view.shutdown(socket.SHUT_WR)
        raw_view.close()
        received = b""
        try:
            while chunk := tls.recv(CHUNK):
                received += chunk
        except ssl.SSLError as exc:
            return received, f"{exc.reason}"
        return received, "end"


@pytest.mark.parametrize("version", ["1.2", "1.3"])
async def test_https_compatible_takes_a_bare_fin_as_a_half_close(pki: PKI, version: str) -> None:
    """``https_compatible=True`` reads an EOF without close_notify as the end of the peer's data, and the stream,
    a ``HalfCloseableStream``, goes on sending: a handler that reads a request to its end and then answers works
    as over TCP, and an h11 client that shut its write side after the request reads its answer and a clean end.
    OpenSSL took the FIN for a fatal error instead: it sent the client a decode_error alert and failed every later
    write (``BrokenResourceError`` ... truncated), although ``receive_some`` had returned a clean EOF."""
    answered: list[str] = []

    async def until_eof(stream: gtls.TLSStream) -> None:
        received = b""
        while chunk := await stream.receive_some():
            received += chunk
        await stream.send_all(b"got %d bytes\n" % len(received))
        answered.append(stream.tls_version or "")

    request = b"GET /half HTTP/1.1\r\nHost: localhost\r\n\r\n"
    with trio.fail_after(STEP):
        async with trio.open_nursery() as nursery:
            serve = partial(gtls.serve_tls_over_tcp, until_eof, 0, pki.server_options(), host=LOCALHOST,
                            https_compatible=True)
            port = (await nursery.start(serve))[0].socket.getsockname()[1]
            plain = await trio.to_thread.run_sync(shut_write_then_read, pki.ca_file, port, b"x" * 100_000, version)
            nursery.cancel_scope.cancel()
        async with http_server(pki, https_compatible=True) as server:
            http = await trio.to_thread.run_sync(shut_write_then_read, pki.ca_file, server.port, request, version)
            await settled()
    assert plain == (b"got 100000 bytes\n", "end") and answered == [f"TLSv{version}"]
    assert http[0].endswith(line("GET", "/half")) and http[1] == "end", http
    assert server.endings == ["eof"]


# --- wget (GnuTLS) ------------------------------------------------------------------------------------------------

#: GnuTLS priority strings: wget's --secure-protocol=TLSv1_2 means "1.2 or later".
GNUTLS_VERSION = {"1.2": "NORMAL:-VERS-ALL:+VERS-TLS1.2", "1.3": "NORMAL:-VERS-ALL:+VERS-TLS1.3"}


async def wget(ca: Path, *args: str | Path) -> Run:
    assert WGET is not None
    return await run(WGET, "--tries=1", "--timeout=10", "-O", "-", f"--ca-certificate={ca}", *args)


@needs_wget
@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize("https_compatible", [False, True])
async def test_wget_keep_alive_and_its_missing_close_notify(
    pki: PKI, version: str, https_compatible: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """wget (GnuTLS) keeps one connection for two URLs and a 16 MiB download, then leaves without close_notify,
    between messages. A strict stream (the default) reports that as ``truncated`` to the handler and the serving
    loop logs it; ``https_compatible=True``, what HTTP servers want (the HTTP framing tells a cut message), reads
    it as a clean EOF."""
    caplog.set_level(logging.WARNING, logger="gtls.server")
    with trio.fail_after(STEP):
        async with http_server(pki, https_compatible=https_compatible) as server:
            port = server.port
            done = await wget(pki.ca_file, f"--ciphers={GNUTLS_VERSION[version]}", url(port, "/w1"),
                              url(port, "/w2"), url(port, f"/bytes/{MIB16}"))
            await settled()
    assert done.returncode == 0, done
    assert done.stdout == line("GET", "/w1") + line("GET", "/w2") + pattern(MIB16)
    assert [(e.ok, e.tls_version) for e in server.events] == [(True, f"TLSv{version}")]
    logged = [r.getMessage() for r in caplog.records if r.name == "gtls.server"]
    if https_compatible:
        assert server.endings == ["eof"] and logged == []
    else:
        assert server.endings == ["truncated"]
        assert len(logged) == 1 and logged[0].startswith("connection ended: truncated peer=127.0.0.1:")


@needs_wget
async def test_wget_refuses_a_server_it_cannot_verify(pki: PKI, other_pki: PKI) -> None:
    """wget with another CA, and with the right CA but the bare address: it refuses the server in its own words."""
    with trio.fail_after(STEP):
        async with http_server(pki) as server:
            port = server.port
            stranger = await wget(other_pki.ca_file, url(port, "/x"))
            bare = await wget(pki.ca_file, url(port, "/x", LOCALHOST))
            await settled()
    assert stranger.returncode == 5 and "The certificate of ‘localhost’ is not trusted." in stranger.stderr
    assert bare.returncode == 5 and "The certificate's owner does not match hostname ‘127.0.0.1’" in bare.stderr
    assert server.requests == []


# --- Python's http.client and urllib ------------------------------------------------------------------------------


def python_requests(ca: Path, port: int) -> list[tuple[int, bytes]]:
    """Three POSTs and a 16 MiB GET on one ``http.client`` connection, then one ``urllib`` request."""
    context = ssl.create_default_context(cafile=str(ca))
    results = []
    conn = http.client.HTTPSConnection("localhost", port, context=context, timeout=10)
    try:
        for index in range(3):
            conn.request("POST", f"/p{index}", body=b"x" * 100_000)
            response = conn.getresponse()
            results.append((response.status, response.read()))
        conn.request("GET", f"/bytes/{MIB16}")
        response = conn.getresponse()
        body = response.read()
        assert response.headers["x-sha256"] == sha256(body)
        results.append((response.status, body))
    finally:
        conn.close()  # Python's ssl closes without close_notify
    with urllib.request.urlopen(f"https://localhost:{port}/u", context=context, timeout=10) as reply:
        results.append((reply.status, reply.read()))
    return results


async def test_python_http_client_and_urllib(pki: PKI) -> None:
    with trio.fail_after(STEP):
        async with http_server(pki, https_compatible=True) as server:
            results = await trio.to_thread.run_sync(python_requests, pki.ca_file, server.port)
            await settled()
    assert results == [(200, line("POST", f"/p{i}", b"x" * 100_000)) for i in range(3)] + [
        (200, pattern(MIB16)), (200, line("GET", "/u"))]
    # http.client kept one connection. urllib asks for Connection: close, and closes without close_notify: a clean
    # EOF here, or a reset when our close_notify (send_eof) reached its socket unread before it closed.
    assert len(server.events) == 2 and server.endings[0] == "eof"
    assert server.endings[1] in ("eof-after-send-eof", "after-send-eof: reset")


# --- openssl s_client -------------------------------------------------------------------------------------------


async def test_s_client_pipelined_requests_then_gone_without_close_notify(pki: PKI) -> None:
    """Three requests in one write, answered in order; then s_client is killed (no close_notify): the handler sees
    ``truncated`` after the last complete answer, and the server goes on."""
    requests = b"".join(f"GET /{i} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode() for i in range(3))
    with trio.fail_after(STEP):
        async with http_server(pki) as server:
            cmd = [OPENSSL, "s_client", "-connect", f"{LOCALHOST}:{server.port}", "-CAfile", str(pki.ca_file),
                   "-verify_return_error", "-quiet", "-servername", "localhost"]
            process = await trio.lowlevel.open_process(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                       stderr=subprocess.DEVNULL)
            output = b""
            try:
                assert process.stdin is not None and process.stdout is not None
                await process.stdin.send_all(requests)
                while output.count(b"HTTP/1.1 200") < 3 or not output.endswith(line("GET", "/2")):
                    chunk = await process.stdout.receive_some(CHUNK)
                    assert chunk, output
                    output += chunk
            finally:
                process.kill()
                await process.wait()
                for pipe in (process.stdin, process.stdout):
                    if pipe is not None:
                        await pipe.aclose()
            await settled()
    for index in range(3):
        assert line("GET", f"/{index}") in output
    assert [target for _, target, _, _ in server.requests] == ["/0", "/1", "/2"]
    assert server.endings == ["truncated"]


# --- resources ----------------------------------------------------------------------------------------------------


@needs_curl
async def test_no_descriptor_or_task_outlives_its_clients(pki: PKI, other_pki: PKI) -> None:
    """After a mix of clients (kept-alive, refused, aborted, pipelined, Python's), the server holds exactly the
    descriptors and tasks it held idle."""
    with trio.fail_after(STEP):
        async with http_server(pki, https_compatible=True, tls_mutual="1") as server:
            port = server.port
            cert = ("--cert", pki.client_cert, "--key", pki.client_key)
            await curl(pki, port, *cert, url(port, "/warm"))
            await settled()
            fds, tasks = open_fds(), task_count()
            async with trio.open_nursery() as nursery:
                for index in range(4):
                    nursery.start_soon(curl, pki, port, *cert, url(port, f"/k{index}"), url(port, "/again"))
                nursery.start_soon(curl, pki, port, url(port, "/refused"))
                nursery.start_soon(curl, pki, port, "--cert", other_pki.client_cert, "--key", other_pki.client_key,
                                   url(port, "/stranger"))
                nursery.start_soon(partial(curl, pki, port, *cert, "--limit-rate", "100k", "--max-time", "0.3",
                                           "-o", os.devnull, url(port, f"/bytes/{MIB16}")))
            await settled()
            await until(lambda: (open_fds(), task_count()) == (fds, tasks))
            assert (open_fds(), task_count()) == (fds, tasks)
    assert sum(event.ok for event in server.events) == 6


# --- gtls's connector speaking h11 ---------------------------------------------------------------------------------


async def h11_get(stream: gtls.TLSStream, conn: h11.Connection, target: str) -> tuple[h11.Response, bytes]:
    """One GET on ``conn``; the response head and the whole body."""
    await send(stream, conn, h11.Request(method="GET", target=target, headers=[("host", "localhost")]))
    await send(stream, conn, h11.EndOfMessage())
    response = await next_event(stream, conn)
    assert type(response) is h11.Response, response
    body = bytearray()
    while type(event := await next_event(stream, conn)) is h11.Data:
        body += event.data
    assert type(event) is h11.EndOfMessage, event
    return response, bytes(body)


async def test_connector_h11_against_s_server_www(pki: PKI, tmp_path: Path) -> None:
    """``s_server -WWW`` answers HTTP/1.0, its body delimited by the connection's end: close_notify, so gtls's
    strict stream reads a clean end after 16 MiB (and after a small file); ALPN http/1.1 agreed."""
    (tmp_path / "big.bin").write_bytes(pattern(MIB16))
    (tmp_path / "small.txt").write_bytes(b"small\n")
    cmd = [OPENSSL, "s_server", "-accept", f"{LOCALHOST}:0", "-cert", str(pki.server_cert), "-cert_chain",
           str(pki.intermediate_file), "-key", str(pki.server_key), "-alpn", "http/1.1", "-WWW", "-naccept", "2"]
    options = pki.client_options(tls_target_name_check="host")
    with _server_process(cmd, "ACCEPT", cwd=tmp_path) as running, trio.fail_after(STEP):
        for name, content in (("small.txt", b"small\n"), ("big.bin", pattern(MIB16))):
            stream = await gtls.open_tls_over_tcp_stream("localhost", running.port, options,
                                                         alpn_protocols=["http/1.1"])
            conn = h11.Connection(h11.CLIENT)
            response, body = await h11_get(stream, conn, f"/{name}")
            assert (response.status_code, response.http_version, stream.alpn_protocol) == (200, b"1.0", "http/1.1")
            assert body == content
            assert conn.their_state is h11.MUST_CLOSE
            await stream.aclose()


async def test_connector_against_s_server_rev(pki: PKI) -> None:
    """``s_server -rev`` turns each line around: raw lines through the connector, TLS 1.2 and 1.3."""
    for version in ("1.2", "1.3"):
        cmd = [OPENSSL, "s_server", "-accept", f"{LOCALHOST}:0", "-cert", str(pki.server_cert), "-cert_chain",
               str(pki.intermediate_file), "-key", str(pki.server_key), "-rev", "-naccept", "1"]
        options = pki.client_options(tls_target_name_check="host", sec_protocol=f"TLSv1{version[-1]}")
        with _server_process(cmd, "ACCEPT", cwd=None) as running, trio.fail_after(STEP):
            stream = await gtls.open_tls_over_tcp_stream("localhost", running.port, options)
            assert stream.tls_version == f"TLSv{version}"
            await stream.send_all(b"hello gtls\n")
            received = b""
            while not received.endswith(b"\n"):
                chunk = await stream.receive_some()
                assert chunk, received
                received += chunk
            assert received == b"sltg olleh\n"
            await stream.aclose()


PYTHON_HTTP_SERVER = """
import hashlib, http.server, ssl, sys
block = hashlib.sha256(b"gtls http").digest() * 2048
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        size = int(self.path.rsplit("/", 1)[1]) if self.path.startswith("/bytes/") else 0
        body = (block * (size // 65536 + 1))[:size] if size else self.path.encode() + b"\\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(sys.argv[1], sys.argv[2])
context.set_alpn_protocols(["http/1.1"])
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.socket = context.wrap_socket(server.socket, server_side=True)
print("listening on 127.0.0.1:%d" % server.server_address[1], flush=True)
server.serve_forever()
"""


async def test_connector_h11_keep_alive_against_python_http_server(pki: PKI) -> None:
    """Python's ``http.server`` over ``ssl``: three requests on one connection, a 16 MiB response among them."""
    cmd = [sys.executable, "-c", PYTHON_HTTP_SERVER, str(pki.server_cert), str(pki.server_key)]
    options = pki.client_options(tls_target_name_check="host")
    with _server_process(cmd, "listening on ") as running, trio.fail_after(STEP):
        stream = await gtls.open_tls_over_tcp_stream("localhost", running.port, options, alpn_protocols=["http/1.1"])
        assert stream.alpn_protocol == "http/1.1"
        conn = h11.Connection(h11.CLIENT)
        for target, content in (("/a", b"/a\n"), (f"/bytes/{MIB16}", pattern(MIB16)), ("/b", b"/b\n")):
            response, body = await h11_get(stream, conn, target)
            assert (response.status_code, response.http_version) == (200, b"1.1")
            assert body == content
            conn.start_next_cycle()
        await stream.aclose()

